/**
 * The platform-free core of wxauth-kit: login, renewal, requests, encrypted data, sessions,
 * account deletion, avatar upload. It talks to the platform only through an adapter
 * (adapters.js):
 *
 *   {
 *     platform: 'wx' | 'uni' | 'taro',
 *     login(): Promise<string>                  the wx.login code; rejects {errMsg}
 *     request({url, method, data, header}): Promise<{statusCode, data, header}>; rejects {errMsg}
 *     uploadFile({url, filePath, name, header}): Promise<{statusCode, data, header}>
 *     checkSession(): Promise<boolean>          whether the session_key is current
 *     getStorage(key): any                      '' (or null) when missing
 *     setStorage(key, value), removeStorage(key)
 *     language(): string | undefined            WeChat's spelling: 'zh_CN', 'en'…
 *     appid(): string | undefined               this mini-program's appid
 *   }
 *
 * ES2015 CommonJS (no async/await, no `?.`, no Promise#finally): WeChat's base library runs it
 * as it is, with no build step of the user's.
 */
'use strict';

const errors = require('./errors.js');

const WxAuthError = errors.WxAuthError;
const retryAfterOf = errors.retryAfterOf;
const errMsgOf = errors.errMsgOf;

const RENEWABLE = ['token_expired', 'token_invalid', 'token_revoked', 'user_not_found'];
const WINDOW_STATUSES = [429, 503]; // answers whose Retry-After opens a window

/**
 * The user's language as a BCP 47 tag for Accept-Language.
 * @param {string} [language] WeChat's spelling, e.g. 'zh_CN', 'zh_TW', 'en'
 * @returns {string|undefined} e.g. 'zh-CN', 'en'; undefined when it is not a language tag
 */
function languageTag(language) {
  return typeof language === 'string' && /^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*$/.test(language)
    ? language.replace(/_/g, '-') : undefined;
}

/** `p`, then `fn()` whether it fulfilled or rejected, then p's outcome (Promise#finally). */
function always(p, fn) {
  return p.then((value) => { fn(); return value; }, (error) => { fn(); throw error; });
}

/**
 * The endpoint of a request, as the Retry-After window counts them: its method and URL
 * without query or fragment, 'POST https://api.example.com/auth/login'.
 */
function endpointOf(method, url) {
  return `${method.toUpperCase()} ${String(url).split(/[?#]/)[0]}`;
}

/**
 * The client for one wxauth server on one platform.
 * @param {object} adapter see the top of this file
 * @param {object} options createClient's options (baseUrl, appid, storageKey, language)
 * @returns {object} the client (index.d.ts: WxAuthClient)
 */
function createCore(adapter, options) {
  const baseUrl = String(options.baseUrl || '').replace(/\/+$/, '');
  if (!baseUrl) throw new Error('createClient needs baseUrl');
  const storageKey = options.storageKey || 'wxauth';
  let appid = options.appid;
  if (!appid) {
    try { appid = adapter.appid(); } catch (e) { appid = undefined; }
  }
  let language = options.language;
  if (!language) {
    try { language = languageTag(adapter.language()); } catch (e) { language = undefined; }
  }
  let loginInFlight = null;
  let renewInFlight = null;
  const closedUntil = {}; // endpoint → {until: ms, error: WxAuthError} (Retry-After windows)

  function readState() {
    const state = adapter.getStorage(storageKey);
    return state && typeof state === 'object' ? state : null;
  }

  function writeState(state) {
    if (state) adapter.setStorage(storageKey, state);
    else adapter.removeStorage(storageKey);
  }

  function toError(res) {
    const body = res && res.data && typeof res.data === 'object' ? res.data : null;
    const status = res ? res.statusCode : 0;
    if (body && typeof body.code === 'string') {
      return new WxAuthError(body.code, status, body.detail, body, retryAfterOf(res.header));
    }
    return new WxAuthError('bad_response', status, `HTTP ${status} without a problem+json body`);
  }

  /**
   * The refusal for `endpoint` while its Retry-After window is open, else null: the same
   * code, status, detail and body, retryAfter the whole seconds still to wait.
   */
  function refusal(endpoint) {
    const closed = closedUntil[endpoint];
    if (!closed) return null;
    const left = closed.until - Date.now();
    if (left <= 0) {
      delete closedUntil[endpoint];
      return null;
    }
    const e = closed.error;
    return new WxAuthError(e.code, e.status, e.detail, e.body, Math.ceil(left / 1000));
  }

  /** Open the window of `endpoint` when `res` is a 429/503 with Retry-After. */
  function remember(endpoint, res) {
    if (WINDOW_STATUSES.indexOf(res.statusCode) < 0) return;
    const seconds = retryAfterOf(res.header);
    if (!seconds) return;
    closedUntil[endpoint] = { until: Date.now() + seconds * 1000, error: toError(res) };
  }

  /**
   * One call to the server through the adapter (`call(url)` is adapter.request or
   * adapter.uploadFile), honouring and opening Retry-After windows.
   * @returns {Promise<object>} {statusCode, data, header}
   * @throws {WxAuthError} the open window's refusal, or network_error
   */
  function transmit(method, url, call) {
    const full = absolute(url);
    const endpoint = endpointOf(method, full);
    const refused = refusal(endpoint);
    if (refused) return Promise.reject(refused);
    return call(full).then((res) => {
      remember(endpoint, res);
      return res;
    }, (err) => {
      throw new WxAuthError('network_error', 0, errMsgOf(err, 'request:fail'));
    });
  }

  function absolute(url) {
    return /^https?:\/\//.test(url) ? url : baseUrl + url;
  }

  function headers(token) {
    const header = {};
    if (token) header.Authorization = `Bearer ${token}`;
    if (language) header['Accept-Language'] = language;
    return header;
  }

  function send(method, url, data, token) {
    const header = headers(token);
    header['Content-Type'] = 'application/json';
    return transmit(method, url, (full) => adapter.request({ url: full, method, data, header }));
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

  /** The platform's wx.login code (a WxAuthError 'wx_login_failed' when it fails). */
  function loginCode() {
    return Promise.resolve()
      .then(() => adapter.login())
      .then((code) => {
        if (typeof code !== 'string' || !code) throw { errMsg: 'login:fail no code' };
        return code;
      })
      .catch((err) => {
        throw new WxAuthError('wx_login_failed', 0, errMsgOf(err, 'login:fail'));
      });
  }

  /**
   * Log in: the platform's login → POST /auth/login. Concurrent callers share one attempt.
   * @param {object} [opts]
   * @param {string} [opts.phoneCode] e.detail.code of <button open-type="getPhoneNumber">,
   *   when the app asks for the number at login: the phone is bound in the same request. A
   *   login with a phone code is never merged into one already in flight (it runs after it).
   * @returns {Promise<object>} the login answer (LoginResult): {access_token, refresh_token,
   *   expires_in, token_type, is_new_user, is_new_account, user}, and with a phoneCode
   *   `phone`: {bound: true}, or {bound: false, code, detail}
   * @throws {WxAuthError} 'wx_login_failed', 'network_error', or the server's code
   *   (invalid_code, wechat_busy, rate_limited, …); during a Retry-After window of
   *   POST /auth/login, at once and without calling the platform's login
   */
  function login(opts) {
    const phoneCode = opts && opts.phoneCode;
    if (loginInFlight && !phoneCode) return loginInFlight;
    const before = loginInFlight ? loginInFlight.catch(() => {}) : Promise.resolve();
    const attempt = before
      .then(() => {
        // no code is spent (and no session_key rotated) while the server said to wait
        const refused = refusal(endpointOf('POST', absolute('/auth/login')));
        if (refused) throw refused;
        return loginCode();
      })
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
    always(attempt, () => { if (loginInFlight === attempt) loginInFlight = null; })
      .catch(() => {});
    return attempt;
  }

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
    renewInFlight = always(viaRefresh.catch(() => login().then(readState)), () => {
      renewInFlight = null;
    });
    return renewInFlight;
  }

  function ensureState() {
    const state = readState();
    if (state && state.accessToken) return Promise.resolve(state);
    return login().then(readState);
  }

  /**
   * Make `call(accessToken)` (a promise of an answer: statusCode, data, header) with the
   * stored login state; on a renewable 401 renew once and call again — never a loop.
   * @returns {Promise<object>} the 2xx answer
   * @throws {WxAuthError} the server's problem (a second 401 too), or what `call` throws
   */
  function authorized(call) {
    function attempt(state, first) {
      return call(state.accessToken).then((res) => {
        if (res.statusCode >= 200 && res.statusCode < 300) return res;
        const error = toError(res);
        if (first && res.statusCode === 401 && RENEWABLE.indexOf(error.code) >= 0) {
          return renew(state.accessToken).then((renewed) => attempt(renewed, false));
        }
        throw error;
      });
    }
    return ensureState().then((state) => attempt(state, true));
  }

  /**
   * An authenticated request.
   * @param {object} opts {url: a path like '/profile' or an absolute URL, method='GET', data}
   * @returns {Promise<any>} the answer body on 2xx (undefined for 204)
   * @throws {WxAuthError} the server's problem code and status; 'network_error'. A 401 is
   *   renewed and retried once; a second 401 rejects. During a Retry-After window of the
   *   endpoint: the window's code and retryAfter, at once, with no request sent.
   */
  function request(opts) {
    const method = (opts.method || 'GET').toUpperCase();
    return authorized((token) => send(method, opts.url, opts.data, token))
      .then((res) => (res.statusCode === 204 ? undefined : res.data));
  }

  /**
   * Log out: revokes this login's tokens on the server and forgets them here.
   * @returns {Promise<void>} (also when the server could not be reached: the state is gone)
   */
  function logout() {
    const state = readState();
    writeState(null);
    if (!state || !state.accessToken) return Promise.resolve();
    return send('POST', '/auth/logout', undefined, state.accessToken).then(() => {}, () => {});
  }

  /** Whether the platform's checkSession passes (the session_key behind encrypted data is current). */
  function sessionIsCurrent() {
    return Promise.resolve().then(() => adapter.checkSession()).then((ok) => ok === true, () => false);
  }

  /**
   * Call before asking the user for encrypted data (getUserProfile, old-style phone button):
   * logs in again when the session is stale or there is no login state yet.
   * @returns {Promise<void>}
   */
  function prepareForEncryptedData() {
    if (!readState()) return login().then(() => {});
    return sessionIsCurrent().then((ok) => (ok ? undefined : login().then(() => {})));
  }

  function sendEncrypted(url, detail) {
    if (!detail || !detail.encryptedData || !detail.iv) {
      return Promise.reject(new WxAuthError('invalid_request', 0,
        'e.detail has no encryptedData/iv (user declined?)'));
    }
    const current = readState() ? sessionIsCurrent() : Promise.resolve(false);
    return current.then((ok) => {
      if (!ok) {
        return login().then(() => { // the data was made under a session that is gone
          const stale = new WxAuthError('decrypt_failed', 0,
            'The session changed before the data was sent: ask the user again');
          stale.askAgain = true;
          throw stale;
        });
      }
      return request({ url, method: 'POST', data: detail }).catch((error) => {
        if (error.code !== 'decrypt_failed') throw error;
        return login().catch(() => {}).then(() => {
          error.askAgain = true;
          throw error;
        });
      });
    });
  }

  /**
   * Send getUserProfile/getUserInfo e.detail (old style, encrypted: encryptedData, iv) to
   * POST /profile. Call prepareForEncryptedData() before asking the user.
   * @param {object} detail e.detail as WeChat gives it
   * @returns {Promise<object>} the updated profile (Profile)
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
  function uploadAvatar(tempFilePath) {
    return authorized((token) => transmit('POST', '/profile/avatar', (full) => adapter.uploadFile({
      url: full, filePath: tempFilePath, name: 'file', header: headers(token),
    })).then((answer) => {
      let data = answer.data;
      try { data = typeof data === 'string' ? JSON.parse(data) : data; } catch (e) { data = null; }
      return { statusCode: answer.statusCode, data, header: answer.header };
    })).then((res) => res.data);
  }

  /**
   * Delete the user's account (DELETE /profile): the person, in every mini-program of the
   * server. Gets a fresh login code itself (the confirmation), sends it, and forgets the
   * stored login state. Ask the user to confirm before calling it.
   * @returns {Promise<void>}
   * @throws {WxAuthError} confirmation_mismatch, code_used / invalid_code, wechat_* codes,
   *   401 codes (after one renewal), 'wx_login_failed', network_error; the account and the
   *   stored state are kept then
   */
  function deleteAccount() {
    // a fresh code for each try: codes are single-use
    return authorized((token) => loginCode().then((code) => send('DELETE', '/profile', { code },
      token))).then(() => { writeState(null); });
  }

  /**
   * The user's live sessions in this mini-program: one per login, i.e. per device, newest first.
   * @returns {Promise<object[]>} [{id, appid, created_at, last_used_at, client_address,
   *   user_agent, current}] (LoginSession) — `current` marks this device's
   * @throws {WxAuthError} user_disabled (403), 401 codes, network_error
   */
  function sessions() {
    return request({ url: '/auth/sessions' }).then((body) => body.sessions);
  }

  /**
   * End one session (e.g. a lost phone's): its tokens are refused from its next request on.
   * To end this device's own session, call logout().
   * @param {string} id a session's `id` from sessions()
   * @returns {Promise<void>}
   * @throws {WxAuthError} session_not_found (404: ended already, or not this user's),
   *   user_disabled, 401 codes, network_error
   */
  function endSession(id) {
    return request({ url: `/auth/sessions/${encodeURIComponent(id)}`, method: 'DELETE' })
      .then(() => {});
  }

  return {
    platform: adapter.platform,
    login, request, logout, updateProfile, bindPhone, uploadAvatar, prepareForEncryptedData,
    deleteAccount, sessions, endSession,
  };
}

module.exports = { createCore, languageTag, endpointOf };
