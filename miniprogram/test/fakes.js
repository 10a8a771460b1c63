/**
 * Fake `uni` and `Taro` objects for the kit's tests, on the same loopback network as the `wx`
 * shim (wx-shim.js): a real code from the emulator for login, real HTTP for request and
 * uploadFile. They follow their platforms' calling conventions:
 * - uni (uni-app, Vue 3): callbacks (success/fail/complete), or a promise when none is given;
 *   uni.login needs provider 'weixin' in a WeChat mini-program; getAppBaseInfo says WeChat's
 *   language as hostLanguage (language is the app's own, e.g. 'zh-Hans');
 * - Taro: every call answers a promise (and calls callbacks too, when given);
 * - both: failures are {errMsg: '<api>:fail …'}, getStorageSync answers '' for a missing key,
 *   answers carry errMsg '<api>:ok'.
 * `calls` records what was called, for assertions.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');

/** The network side every fake shares. */
function backend({ emulatorUrl, openid, corruptToken = false }) {
  const calls = { login: 0, requests: [], uploads: 0, checkSession: 0 };
  let sessionAlive = false;
  const headersOf = (header) => {
    const headers = Object.assign({}, header);
    if (corruptToken && headers.Authorization) headers.Authorization = 'Bearer not.a.token';
    return headers;
  };
  return {
    calls,
    expireSession() { sessionAlive = false; },
    login() {
      calls.login += 1;
      return fetch(`${emulatorUrl}/dev/code`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ openid }),
      }).then((r) => r.json()).then((body) => { sessionAlive = true; return { code: body.code }; });
    },
    request({ url, method = 'GET', data, header }) {
      calls.requests.push({ url: new URL(url).pathname, method, header: Object.assign({}, header) });
      const init = { method, headers: headersOf(header) };
      if (data !== undefined && method !== 'GET') init.body = JSON.stringify(data);
      return fetch(url, init).then(async (r) => {
        const text = await r.text();
        let body = text;
        try { body = text ? JSON.parse(text) : ''; } catch (e) { body = text; }
        return { statusCode: r.status, data: body, header: Object.fromEntries(r.headers) };
      });
    },
    uploadFile({ url, filePath, name, header }) {
      calls.uploads += 1;
      const form = new FormData();
      form.append(name, new Blob([fs.readFileSync(filePath)]), path.basename(filePath));
      return fetch(url, { method: 'POST', headers: headersOf(header), body: form })
        .then(async (r) => ({ statusCode: r.status, data: await r.text(),
          header: Object.fromEntries(r.headers) }));
    },
    checkSession() {
      calls.checkSession += 1;
      return new Promise((resolve, reject) => setImmediate(() => (sessionAlive ? resolve({})
        : reject(new Error('session time out')))));
    },
  };
}

/**
 * One API of a platform: `run(options)` a promise of the answer; its failures become
 * {errMsg: '<name>:fail …'}. `promises`: 'always' (Taro), or 'without-callbacks' (uni).
 */
function platformApi(name, run, promises) {
  return (options = {}) => {
    const { success, fail, complete } = options;
    const answer = Promise.resolve().then(() => run(options)).then(
      (res) => Object.assign({ errMsg: `${name}:ok` }, res),
      (error) => { throw { errMsg: `${name}:fail ${error.message}` }; }); // eslint-disable-line no-throw-literal
    answer.then((res) => { if (success) success(res); if (complete) complete(res); },
      (err) => { if (fail) fail(err); if (complete) complete(err); });
    const withCallbacks = Boolean(success || fail || complete);
    if (promises === 'always' || !withCallbacks) return answer;
    answer.catch(() => {}); // reported to `fail`
    return name === 'request' || name === 'uploadFile' ? { abort() {} } : undefined; // a task
  };
}

function storageApis(storage) {
  return {
    getStorageSync(key) { return storage.has(key) ? storage.get(key) : ''; },
    setStorageSync(key, value) { storage.set(key, value); },
    removeStorageSync(key) { storage.delete(key); },
  };
}

function createPlatform(kind, options) {
  const net = backend(options);
  const storage = new Map();
  const promises = kind === 'taro' ? 'always' : 'without-callbacks';
  const api = Object.assign({
    calls: net.calls,
    storage,
    expireSession: net.expireSession,
    login: platformApi('login', (o) => {
      if (kind === 'uni' && o.provider !== 'weixin') {
        throw new Error(`provider ${o.provider} is not weixin`);
      }
      return net.login();
    }, promises),
    request: platformApi('request', net.request, promises),
    uploadFile: platformApi('uploadFile', net.uploadFile, promises),
    checkSession: platformApi('checkSession', net.checkSession, promises),
    getAccountInfoSync: () => ({ miniProgram: { appId: options.appid || '' } }),
  }, storageApis(storage));
  if (options.language) {
    api.getAppBaseInfo = kind === 'uni'
      ? () => ({ hostLanguage: options.language, language: 'zh-Hans', SDKVersion: '3.0.0' })
      : () => ({ language: options.language, SDKVersion: '3.0.0' });
  }
  return api;
}

/** A fake `uni` (uni-app). */
function createUni(options) { return createPlatform('uni', options); }

/** A fake `Taro` (the default export of @tarojs/taro). */
function createTaro(options) { return createPlatform('taro', options); }

module.exports = { createUni, createTaro };
