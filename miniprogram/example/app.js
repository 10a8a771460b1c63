// utils/wxauth.js is a copy of ../wxauth.js (`make miniprogram-example` copies it):
// a mini-program cannot require files outside its own folder.
const { createClient } = require('./utils/wxauth.js');
const { baseUrl } = require('./config.js');

App({
  auth: createClient({ baseUrl }),

  onLaunch() {
    // Log in once at launch; every auth.request() waits for this same login (single-flight).
    this.auth.login().catch((err) => console.error('login failed', err.code, err.detail));
  },
});
