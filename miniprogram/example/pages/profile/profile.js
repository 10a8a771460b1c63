const { auth } = getApp();

Page({
  data: { profile: {}, error: '' },

  async onShow() {
    try {
      // Bearer header, renewal after 401 and one retry are the helper's job.
      this.setData({ profile: await auth.request({ url: '/profile' }), error: '' });
    } catch (err) {
      this.setData({ error: `${err.code}: ${err.detail}` });
    }
  },

  async logout() {
    await auth.logout();
    wx.reLaunch({ url: '/pages/login/login' });
  },
});
