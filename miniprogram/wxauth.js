/**
 * wxauth.js — the mini-program side of wxauth. Plain CommonJS, no build step: copy this file
 * into your mini-program (e.g. utils/wxauth.js) and
 *
 *   const { createClient } = require('./utils/wxauth.js');
 *   const auth = createClient({ baseUrl: 'https://api.example.com' });
 *   const profile = await auth.request({ url: '/profile' });
 *
 * What it gets right for you:
 * - login() is single-flight: however many callers need a login at once, there is one
 *   wx.login and one POST /auth/login (every wx.login may rotate the session_key and break
 *   encrypted data fetched in parallel);
 * - request() adds `Authorization: Bearer …`, and on 401 token_expired / token_invalid /
 *   token_revoked / user_not_found renews the login state once (refresh token first, else a
 *   new login) and retries once — never in a loop;
 * - updateProfile() / bindPhone() check the session before sending encrypted data, and on
 *   decrypt_failed log in again and tell you to ask the user again (err.askAgain) instead of
 *   resending data encrypted under a stale session_key.
 *
 * Language: requests say the user's WeChat language (`Accept-Language`, from
 * wx.getAppBaseInfo().language: zh_CN → zh-CN), so problem titles and details come back in
 * Chinese for Chinese users; `code` never changes.
 *
 * Errors: every rejection is a WxAuthError with `code` (the server's problem+json code, or
 * 'network_error' / 'bad_response' / 'wx_login_failed'), `status` (HTTP status, 0 when the
 * request never got an answer), `detail` and `body`.
 */
'use strict';

const RENEWABLE = ['token_expired', 'token_invalid', 'token_revoked', 'user_not_found'];

class WxAuthError extends Error {
  /**
   * @param {string} code    stable machine code (problem+json `code`)
   * @param {number} status  HTTP status, 0 when there was no answer
   * @param {string} detail  human-readable explanation
   * @param {object} [body]  the full problem+json body, when there was one
   * @param {number|null} [retryAfter] seconds from the answer's Retry-After header (429 and
   *   503 answers: rate_limited, wechat_busy, wechat_unavailable, database_unavailable…), the
   *   earliest moment worth trying again; null when the server did not say
   */
  constructor(code, status, detail, body, retryAfter) {
    super(detail || code);
    this.name = 'WxAuthError';
    this.code = code;
    this.status = status;
    this.detail = detail || code;
    this.body = body || null;
    this.retryAfter = retryAfter == null ? null : retryAfter;
    this.askAgain = false; // true: ask the user for the data again (new encryptedData)
  }
}

/**
 * The Retry-After header of a wx.request answer, in whole seconds.
 * @param {object} [header] the answer's headers (any letter case)
 * @returns {number|null} seconds, null when absent or not a number of seconds
 */
function retryAfterOf(header) {
  if (!header || typeof header !== 'object') return null;
  const name = Object.keys(header).find((key) => key.toLowerCase() === 'retry-after');
  const seconds = name === undefined ? NaN : Number(header[name]);
  return Number.isInteger(seconds) && seconds >= 0 ? seconds : null;
}

/**
 * The user's WeChat language as a BCP 47 tag for Accept-Language: wx.getAppBaseInfo()
 * (base library 2.20.1+), else wx.getSystemInfoSync(), say 'zh_CN', 'zh_TW', 'en'…
 * @param {object} wxApi the wx object
 * @returns {string|undefined} e.g. 'zh-CN', 'en'; undefined when WeChat does not say
 */
function userLanguage(wxApi) {
  let language;
  try {
    language = typeof wxApi.getAppBaseInfo === 'function'
      ? wxApi.getAppBaseInfo().language
      : wxApi.getSystemInfoSync().language;
  } catch (e) {
    language = undefined;
  }
  return typeof language === 'string' && /^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*$/.test(language)
    ? language.replace(/_/g, '-') : undefined;
}

function promisify(api, options) {
  return new Promise((resolve, reject) => {
    api(Object.assign({}, options, { success: resolve, fail: reject }));
  });
}

/**
 * Create a client for one wxauth server.
 *
 * @param {object} options
 * @param {string} options.baseUrl      e.g. 'https://api.example.com' (an HTTPS "request legal domain")
 * @param {string} [options.appid]      this mini-program's appid, when the server serves several
 *                                      (default: wx.getAccountInfoSync().miniProgram.appId if available)
 * @param {string} [options.storageKey] storage key of the login state (default 'wxauth')
 * @param {string} [options.language]   Accept-Language to send, e.g. 'zh-CN' (default: the
 *                                      user's WeChat language, see userLanguage)
 * @param {object} [options.wx]         the wx object (default: the global one; tests pass a shim)
 */
function createClient(options) {
  const baseUrl = String(options.baseUrl || '').replace(/\/+$/, '');
  const storageKey = options.storageKey || 'wxauth';
  const wxApi = options.wx || (typeof wx !== 'undefined' ? wx : null); // eslint-disable-line no-undef
  if (!baseUrl || !wxApi) throw new Error('createClient needs baseUrl (and a wx object)');
  let appid = options.appid;
  if (!appid && typeof wxApi.getAccountInfoSync === 'function') {
    try { appid = wxApi.getAccountInfoSync().miniProgram.appId; } catch (e) { appid = undefined; }
  }
  let loginInFlight = null;
  const language = options.language || userLanguage(wxApi);

  function readState() {
    const state = wxApi.getStorageSync(storageKey);
    return state && typeof state === 'object' ? state : null;
  }

  function writeState(state) {
    wxApi.setStorageSync(storageKey, state || '');
  }

  function toError(res) {
    const body = res && res.data && typeof res.data === 'object' ? res.data : null;
    const status = res ? res.statusCode : 0;
    if (body && typeof body.code === 'string') {
      return new WxAuthError(body.code, status, body.detail, body, retryAfterOf(res.header));
    }
    return new WxAuthError('bad_response', status, `HTTP ${status} without a problem+json body`);
  }

  function send(method, url, data, token) {
    const header = { 'Content-Type': 'application/json' };
    if (token) header.Authorization = `Bearer ${token}`;
    if (language) header['Accept-Language'] = language;
    return promisify(wxApi.request, {
      url: /^https?:\/\//.test(url) ? url : baseUrl + url,
      method,
      data,
      header,
    }).catch((err) => {
      throw new WxAuthError('network_error', 0, (err && err.errMsg) || 'request failed');
    });
  }

  function saveLogin(body) {
    const state = {
      accessToken: body.access_token,
      refreshToken: body.refresh_token || null,
      expiresAt: Date.now() + (body.expires_in || 0) * 1000,
    };
    writeState(state);
    return state;
  }

  /** wx.login's code (a WxAuthError 'wx_login_failed' when it fails). */
  function wxLoginCode() {
    return promisify(wxApi.login, {})
      .catch((err) => {
        throw new WxAuthError('wx_login_failed', 0, (err && err.errMsg) || 'wx.login failed');
      })
      .then(({ code }) => code);
  }

  /**
   * Log in: wx.login → POST /auth/login. Concurrent callers share one attempt.
   * @param {object} [options]
   * @param {string} [options.phoneCode] e.detail.code of <button open-type="getPhoneNumber">,
   *   when the app asks for the number at login: the phone is bound in the same request. A
   *   login with a phone code is never merged into one already in flight (it runs after it).
   * @returns {Promise<object>} the login answer: {access_token, refresh_token, expires_in,
   *   is_new_user, is_new_account, user}, and with a phoneCode `phone`: {bound: true}, or
   *   {bound: false, code, detail} (the login stands; ask for the number again later)
   * @throws {WxAuthError} 'wx_login_failed', 'network_error', or the server's code
   *   (invalid_code, wechat_busy, rate_limited, …)
   */
  function login(options) {
    const phoneCode = options && options.phoneCode;
    if (loginInFlight && !phoneCode) return loginInFlight;
    const before = loginInFlight ? loginInFlight.catch(() => {}) : Promise.resolve();
    const attempt = before
      .then(wxLoginCode)
      .then((code) => {
        const body = { code };
        if (appid) body.appid = appid;
        if (phoneCode) body.phone_code = phoneCode;
        return send('POST', '/auth/login', body);
      })
      .then((res) => {
        if (res.statusCode !== 200) throw toError(res);
        saveLogin(res.data);
        return res.data;
      });
    loginInFlight = attempt;
    attempt.finally(() => { if (loginInFlight === attempt) loginInFlight = null; })
      .catch(() => {});
    return attempt;
  }

  let renewInFlight = null;

  /** A fresh login state after a 401: refresh token first, else a new login (single-flight). */
  function renew(failedToken) {
    const state = readState();
    if (state && state.accessToken && state.accessToken !== failedToken) {
      return Promise.resolve(state); // someone renewed while our call was in flight
    }
    if (renewInFlight) return renewInFlight;
    const viaRefresh = state && state.refreshToken
      ? send('POST', '/auth/refresh', undefined, state.refreshToken).then((res) => {
        if (res.statusCode !== 200) throw toError(res);
        return saveLogin(res.data);
      })
      : Promise.reject(new WxAuthError('token_invalid', 401, 'no refresh token'));
    renewInFlight = viaRefresh
      .catch(() => login().then(readState))
      .finally(() => { renewInFlight = null; });
    return renewInFlight;
  }

  async function ensureState() {
    const state = readState();
    if (state && state.accessToken) return state;
    await login();
    return readState();
  }

  /**
   * An authenticated request.
   * @param {object} opts {url: path like '/profile' or an absolute URL, method='GET', data}
   * @returns {Promise<any>} the answer body on 2xx (undefined for 204)
   * @throws {WxAuthError} the server's problem code and status; 'network_error'. A 401 is
   *   renewed and retried once; a second 401 rejects.
   */
  async function request(opts) {
    const method = (opts.method || 'GET').toUpperCase();
    const res = await authorized((token) => send(method, opts.url, opts.data, token));
    return res.statusCode === 204 ? undefined : res.data;
  }

  /**
   * Make `call(accessToken)` (a promise of a wx.request-like answer: statusCode, data,
   * header) with the stored login state; on a renewable 401 renew once and call again.
   * @returns {Promise<object>} the 2xx answer
   * @throws {WxAuthError} the server's problem (a second 401 too), or what `call` throws
   */
  async function authorized(call) {
    let state = await ensureState();
    for (let attempt = 0; ; attempt += 1) {
      const res = await call(state.accessToken);
      if (res.statusCode >= 200 && res.statusCode < 300) return res;
      const error = toError(res);
      if (attempt === 0 && res.statusCode === 401 && RENEWABLE.includes(error.code)) {
        state = await renew(state.accessToken);
        continue;
      }
      throw error;
    }
  }

  /**
   * Log out: revokes this login's tokens on the server and forgets them here.
   * @returns {Promise<void>} (also when the server could not be reached: the state is gone)
   */
  async function logout() {
    const state = readState();
    writeState(null);
    if (state && state.accessToken) {
      await send('POST', '/auth/logout', undefined, state.accessToken).catch(() => {});
    }
  }

  /** Whether wx.checkSession passes (the session_key behind encrypted data is current). */
  function sessionIsCurrent() {
    return promisify(wxApi.checkSession, {}).then(() => true, () => false);
  }

  /**
   * Call before asking the user for encrypted data (getUserProfile, old-style phone button):
   * logs in again when the session is stale or there is no login state yet.
   * @returns {Promise<void>}
   */
  async function prepareForEncryptedData() {
    if (!readState() || !(await sessionIsCurrent())) await login();
  }

  async function sendEncrypted(url, detail) {
    if (!detail || !detail.encryptedData || !detail.iv) {
      throw new WxAuthError('invalid_request', 0, 'e.detail has no encryptedData/iv (user declined?)');
    }
    if (!readState() || !(await sessionIsCurrent())) {
      await login(); // the data was made under a session that is gone
      const stale = new WxAuthError('decrypt_failed', 0,
        'The session changed before the data was sent: ask the user again');
      stale.askAgain = true;
      throw stale;
    }
    try {
      return await request({ url, method: 'POST', data: detail });
    } catch (error) {
      if (error.code === 'decrypt_failed') {
        await login().catch(() => {});
        error.askAgain = true;
      }
      throw error;
    }
  }

  /**
   * Send getUserProfile/getUserInfo e.detail (old style, encrypted) to POST /profile.
   * Call prepareForEncryptedData() before asking the user.
   * @param {object} detail e.detail as WeChat gives it
   * @returns {Promise<object>} the updated profile
   * @throws {WxAuthError} decrypt_failed with askAgain=true (logged in again: ask the user
   *   again), watermark_expired, signature_mismatch, 401 codes, network_error
   */
  function updateProfile(detail) {
    return sendEncrypted('/profile', detail);
  }

  /**
   * Bind the phone number from <button open-type="getPhoneNumber">: e.detail.code (base
   * library ≥ 2.21.2), or old-style encryptedData/iv.
   * @param {object} detail e.detail
   * @returns {Promise<object>} the updated profile (phone_number, pure_phone_number, country_code)
   * @throws {WxAuthError} invalid_code (a used or expired phone code: ask again),
   *   decrypt_failed with askAgain=true, wechat_* codes, 401 codes, network_error
   */
  function bindPhone(detail) {
    if (detail && detail.code) {
      return request({ url: '/profile/phone', method: 'POST', data: { code: detail.code } });
    }
    return sendEncrypted('/profile/phone', detail);
  }

  /**
   * Upload the chooseAvatar temporary file (e.detail.avatarUrl) as the user's avatar.
   * @param {string} tempFilePath
   * @returns {Promise<object>} the updated profile (avatar_url: the stored image's URL)
   * @throws {WxAuthError} invalid_image, payload_too_large, 401 codes, network_error
   */
  async function uploadAvatar(tempFilePath) {
    const res = await authorized(async (token) => {
      const header = { Authorization: `Bearer ${token}` };
      if (language) header['Accept-Language'] = language;
      const answer = await promisify(wxApi.uploadFile, {
        url: `${baseUrl}/profile/avatar`,
        filePath: tempFilePath,
        name: 'file',
        header,
      }).catch((err) => {
        throw new WxAuthError('network_error', 0, (err && err.errMsg) || 'upload failed');
      });
      let data = answer.data;
      try { data = typeof data === 'string' ? JSON.parse(data) : data; } catch (e) { data = null; }
      return { statusCode: answer.statusCode, data, header: answer.header };
    });
    return res.data;
  }

  /**
   * Delete the user's account (DELETE /profile): the person, in every mini-program of the
   * server. Gets a fresh wx.login code itself (the confirmation), sends it, and forgets the
   * stored login state. Ask the user to confirm before calling it.
   * @returns {Promise<void>}
   * @throws {WxAuthError} confirmation_mismatch, code_used / invalid_code, wechat_* codes,
   *   401 codes (after one renewal), 'wx_login_failed', network_error; the account and the
   *   stored state are kept then
   */
  async function deleteAccount() {
    // a fresh code for each try: codes are single-use
    await authorized(async (token) => send('DELETE', '/profile', { code: await wxLoginCode() },
      token));
    writeState(null);
  }

  /**
   * The user's live sessions in this mini-program: one per login, i.e. per device, newest first.
   * @returns {Promise<object[]>} [{id, appid, created_at, last_used_at, client_address,
   *   user_agent, current}] — `current` marks this device's
   * @throws {WxAuthError} user_disabled (403), 401 codes, network_error
   */
  async function sessions() {
    return (await request({ url: '/auth/sessions' })).sessions;
  }

  /**
   * End one session (e.g. a lost phone's): its tokens are refused from its next request on.
   * To end this device's own session, call logout().
   * @param {string} id a session's `id` from sessions()
   * @returns {Promise<void>}
   * @throws {WxAuthError} session_not_found (404: ended already, or not this user's),
   *   user_disabled, 401 codes, network_error
   */
  async function endSession(id) {
    await request({ url: `/auth/sessions/${encodeURIComponent(id)}`, method: 'DELETE' });
  }

  return {
    login, request, logout, updateProfile, bindPhone, uploadAvatar, prepareForEncryptedData,
    deleteAccount, sessions, endSession,
  };
}

module.exports = { createClient, WxAuthError, userLanguage };
