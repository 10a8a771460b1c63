// The example mini-program. This folder (miniprogram/) is its root: the kit (kit/, the npm
// package wxauth-kit) is the one the node tests exercise, required in place from its
// miniprogram_dist (a project of yours: npm install, DevTools' "build npm", require('wxauth-kit')),
// and the example's pages live in example/.
const { createClient } = require('./kit/miniprogram_dist/index.js');
const { baseUrl } = require('./example/config.js');

App({
  // Requests carry the user's WeChat language (Accept-Language), so the server's error
  // titles and details (err.detail) are Chinese for Chinese users.
  auth: createClient({ baseUrl }),

  onLaunch() {
    // Log in once at launch; every auth.request() waits for this same login (single-flight).
    this.auth.login().catch((err) => console.error('登录失败', err.code, err.detail));
  },
});
