const { auth } = getApp();

Page({
  data: { profile: {}, error: '' },

  async onShow() {
    try {
      // Bearer header, renewal after 401 and one retry are the helper's job.
      this.setData({ profile: await auth.request({ url: '/profile' }), error: '' });
    } catch (err) {
      console.error(err.code, err.detail);
      this.setData({ error: err.detail });
    }
  },

  async logout() {
    await auth.logout();
    wx.reLaunch({ url: '/example/pages/login/login' });
  },
});
