/**
 * The platform adapters of wxauth-kit: each turns one runtime's API object into the adapter
 * the core talks to (core.js lists its methods).
 * - wx:   native WeChat mini-programs, `wx.*` with success/fail callbacks;
 * - uni:  uni-app, `uni.login({provider: 'weixin'})`, `uni.request`… with callbacks;
 * - taro: Taro, `Taro.login()`, `Taro.request()`… as promises.
 * Failures are the platforms' own `{errMsg: 'request:fail …'}` objects; the core turns them
 * into WxAuthError. getStorageSync answers '' for a missing key on all three.
 * ES2015 CommonJS, no build step.
 */
'use strict';

/** `api[name](options)` with success/fail callbacks, as a promise. */
function viaCallbacks(api, name, options) {
  return new Promise((resolve, reject) => {
    api[name](Object.assign({}, options, { success: resolve, fail: reject }));
  });
}

/** `api[name](options)` of an API that answers a promise (Taro): the promise. */
function viaPromise(api, name, options) {
  return Promise.resolve(api[name](Object.assign({}, options)));
}

function language(api) {
  if (typeof api.getAppBaseInfo === 'function') {
    const info = api.getAppBaseInfo() || {};
    return info.hostLanguage || info.language; // uni-app: hostLanguage is WeChat's
  }
  return typeof api.getSystemInfoSync === 'function' ? api.getSystemInfoSync().language : undefined;
}

function appid(api) {
  return typeof api.getAccountInfoSync === 'function'
    ? api.getAccountInfoSync().miniProgram.appId : undefined;
}

function answer(res) {
  return { statusCode: res.statusCode, data: res.data, header: res.header || {} };
}

/**
 * An adapter over `api` (wx, uni or Taro).
 * @param {'wx'|'uni'|'taro'} platform
 * @param {object} api the runtime's API object
 * @param {object} how {call: viaCallbacks | viaPromise, loginOptions: what login() is given}
 */
function adapterOver(platform, api, how) {
  const call = how.call;
  return {
    platform,
    login() {
      return call(api, 'login', how.loginOptions).then((res) => res && res.code);
    },
    request(options) {
      return call(api, 'request', {
        url: options.url, method: options.method, data: options.data, header: options.header,
        dataType: 'json',
      }).then(answer);
    },
    uploadFile(options) {
      return call(api, 'uploadFile', {
        url: options.url, filePath: options.filePath, name: options.name, header: options.header,
      }).then(answer);
    },
    checkSession() {
      return call(api, 'checkSession', {}).then(() => true, () => false);
    },
    getStorage(key) { return api.getStorageSync(key); },
    setStorage(key, value) { api.setStorageSync(key, value); },
    removeStorage(key) { api.removeStorageSync(key); },
    language() { return language(api); },
    appid() { return appid(api); },
  };
}

/** Native mini-programs: `wx`. */
function wxAdapter(wxApi) {
  return adapterOver('wx', wxApi, { call: viaCallbacks, loginOptions: {} });
}

/** uni-app: `uni`, logging in with the weixin provider. */
function uniAdapter(uniApi) {
  return adapterOver('uni', uniApi, { call: viaCallbacks, loginOptions: { provider: 'weixin' } });
}

/** Taro: the `Taro` object of `@tarojs/taro` (its default export). */
function taroAdapter(taro) {
  return adapterOver('taro', taro, { call: viaPromise, loginOptions: {} });
}

module.exports = { wxAdapter, uniAdapter, taroAdapter };
