const { auth } = getApp();

Page({
  // error: err.detail, in the user's language (the helper sends Accept-Language)
  data: { avatarUrl: '', nickname: '', error: '' },

  async onLoad() {
    try {
      const profile = await auth.request({ url: '/profile' });
      this.setData({ avatarUrl: profile.avatar_url || '', nickname: profile.nickname || '' });
    } catch (err) {
      this.setData({ error: err.detail });
    }
  },

  async onChooseAvatar(e) {
    try {
      const profile = await auth.uploadAvatar(e.detail.avatarUrl);
      this.setData({ avatarUrl: profile.avatar_url, error: '' });
    } catch (err) {
      this.setData({ error: err.detail }); // invalid_image, payload_too_large, network_error…
    }
  },

  async onSaveNickname(e) {
    const nickname = (e.detail.value.nickname || '').trim();
    if (!nickname) return;
    try {
      await auth.request({ url: '/profile', method: 'PATCH', data: { nickname } });
      this.setData({ nickname, error: '' });
    } catch (err) {
      // content_rejected (422) when WECHAT_CONTENT_CHECK is on and WeChat refused the text
      this.setData({ error: err.code === 'content_rejected' ? '这个昵称未通过审核，请换一个' : err.detail });
    }
  },

  async onPhone(e) {
    if (!e.detail.code) return; // the user declined
    try {
      await auth.bindPhone(e.detail);
      wx.showToast({ title: '手机号已保存' });
    } catch (err) {
      // invalid_code: the phone code expired or was used; a new tap gives a new one
      this.setData({ error: err.code === 'invalid_code' ? '请再点一次“使用我的手机号”' : err.detail });
    }
  },

  goProfile() {
    wx.navigateTo({ url: '/example/pages/profile/profile' });
  },
});
