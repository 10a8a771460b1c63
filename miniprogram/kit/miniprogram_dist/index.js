/**
 * wxauth-kit — the mini-program side of wxauth for native mini-programs (wx), uni-app (uni)
 * and Taro (taro): one core (core.js), three adapters (adapters.js).
 *
 *   const { createClient } = require('wxauth-kit');
 *   const auth = createClient({ baseUrl: 'https://api.example.com' });       // wx or uni: found
 *   const auth = createClient({ baseUrl, platform: 'uni' });                  // said
 *   const auth = createClient({ baseUrl, platform: 'taro', taro: Taro });     // Taro, passed in
 *   const { createClient } = require('wxauth-kit/taro');                      // Taro, imported
 *   const profile = await auth.request({ url: '/profile' });
 *
 * What it gets right for you:
 * - login() is single-flight: however many callers need a login at once, there is one
 *   wx.login and one POST /auth/login (every wx.login may rotate the session_key and break
 *   encrypted data fetched in parallel); renewal (refresh) is single-flight too;
 * - request() adds `Authorization: Bearer …`, and on 401 token_expired / token_invalid /
 *   token_revoked / user_not_found renews the login state once (refresh token first, else a
 *   new login) and retries once — never in a loop;
 * - after a 429 or 503 with Retry-After, calls to that endpoint reject at once (same `code`,
 *   `retryAfter` the seconds left) and send nothing until the time has passed;
 * - updateProfile() / bindPhone() check the session before sending encrypted data, and on
 *   decrypt_failed log in again and tell you to ask the user again (err.askAgain) instead of
 *   resending data encrypted under a stale session_key.
 *
 * Language: requests say the user's WeChat language (`Accept-Language`, from
 * getAppBaseInfo().language: zh_CN → zh-CN), so problem titles and details come back in
 * Chinese for Chinese users; `code` never changes.
 *
 * Errors: every rejection is a WxAuthError with `code` (the server's problem+json code, or
 * 'network_error' / 'bad_response' / 'wx_login_failed'), `status` (HTTP status, 0 when the
 * request never got an answer), `detail`, `body` and `retryAfter`.
 *
 * ES2015 CommonJS with no dependencies: WeChat DevTools' "build npm" copies this folder
 * (package.json "miniprogram": "miniprogram_dist") and the base library runs it as it is.
 */
'use strict';

const errors = require('./errors.js');
const core = require('./core.js');
const adapters = require('./adapters.js');

const PLATFORMS = ['wx', 'uni', 'taro'];

/**
 * The platform of the runtime: an API object passed in (wx, uni, taro), else the global
 * `uni` (uni-app, also on mp-weixin, where `wx` exists too), else the global `wx`.
 * @param {object} [options] createClient's options
 * @returns {'wx'|'uni'|'taro'|null} null when none is found
 */
function detectPlatform(options) {
  const o = options || {};
  if (o.wx) return 'wx';
  if (o.uni) return 'uni';
  if (o.taro) return 'taro';
  if (typeof uni !== 'undefined' && uni && typeof uni.request === 'function') return 'uni'; // eslint-disable-line no-undef
  if (typeof wx !== 'undefined' && wx && typeof wx.request === 'function') return 'wx'; // eslint-disable-line no-undef
  return null;
}

/**
 * The user's WeChat language as a BCP 47 tag for Accept-Language: getAppBaseInfo()
 * (base library 2.20.1+), else getSystemInfoSync(), say 'zh_CN', 'zh_TW', 'en'…
 * @param {object} api the wx (or uni, Taro) object
 * @returns {string|undefined} e.g. 'zh-CN', 'en'; undefined when the platform does not say
 */
function userLanguage(api) {
  let language;
  try {
    language = typeof api.getAppBaseInfo === 'function'
      ? api.getAppBaseInfo().language
      : api.getSystemInfoSync().language;
  } catch (e) {
    language = undefined;
  }
  return core.languageTag(language);
}

/**
 * Create a client for one wxauth server.
 *
 * @param {object} options
 * @param {string} options.baseUrl      e.g. 'https://api.example.com' (an HTTPS "request legal domain")
 * @param {'wx'|'uni'|'taro'} [options.platform] default: detectPlatform(options)
 * @param {object} [options.wx]         the wx object (default: the global one)
 * @param {object} [options.uni]        the uni object (default: the global one)
 * @param {object} [options.taro]       Taro (`import Taro from '@tarojs/taro'`); required for
 *                                      'taro' here ('wxauth-kit/taro' imports it itself)
 * @param {string} [options.appid]      this mini-program's appid, when the server serves several
 *                                      (default: getAccountInfoSync().miniProgram.appId)
 * @param {string} [options.storageKey] storage key of the login state (default 'wxauth')
 * @param {string} [options.language]   Accept-Language to send, e.g. 'zh-CN' (default: the
 *                                      user's WeChat language, see userLanguage)
 * @returns {object} the client: login, request, logout, sessions, endSession,
 *   prepareForEncryptedData, updateProfile, bindPhone, uploadAvatar, deleteAccount, platform
 * @throws {Error} without baseUrl, with an unknown platform, or when the platform's API
 *   object is not there
 */
function createClient(options) {
  const o = options || {};
  const platform = o.platform || detectPlatform(o);
  if (!platform) {
    throw new Error('createClient: no wx or uni here: say platform (and pass taro for Taro)');
  }
  if (PLATFORMS.indexOf(platform) < 0) {
    throw new Error(`createClient: unknown platform '${platform}' (wx, uni or taro)`);
  }
  let api;
  if (platform === 'wx') api = o.wx || (typeof wx !== 'undefined' ? wx : null); // eslint-disable-line no-undef
  else if (platform === 'uni') api = o.uni || (typeof uni !== 'undefined' ? uni : null); // eslint-disable-line no-undef
  else api = o.taro || null;
  if (!api) {
    throw new Error(platform === 'taro'
      ? "createClient: pass taro (import Taro from '@tarojs/taro'), or createClient of wxauth-kit/taro"
      : `createClient: the ${platform} object is not there`);
  }
  const adapter = platform === 'wx' ? adapters.wxAdapter(api)
    : platform === 'uni' ? adapters.uniAdapter(api) : adapters.taroAdapter(api);
  return core.createCore(adapter, o);
}

module.exports = {
  createClient,
  detectPlatform,
  userLanguage,
  WxAuthError: errors.WxAuthError,
};
