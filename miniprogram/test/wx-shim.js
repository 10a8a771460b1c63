/**
 * A `wx` shim for tests: the APIs the kit (wxauth-kit) uses, on top of a real wxauth server
 * and its built-in WeChat emulator (no network beyond loopback).
 * - wx.login mints a real code from the emulator (POST <server>/_wechat/dev/code);
 * - wx.request / wx.uploadFile are real HTTP through fetch;
 * - wx.getAppBaseInfo().language is `language` (WeChat's spelling: 'zh_CN', 'en'…), when given;
 * - storage is an in-memory map; wx.checkSession passes after a login until expireSession().
 * `calls` records what was called, for assertions.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');

function createWx({ emulatorUrl, openid, corruptToken = false, language }) {
  const storage = new Map();
  const calls = { login: 0, requests: [], uploads: 0 };
  let sessionAlive = false;

  function deliver(promise, success, fail, failPrefix) {
    promise.then((value) => success && success(value),
      (error) => fail && fail({ errMsg: `${failPrefix}:fail ${error.message}` }));
  }

  function headersOf(header) {
    const headers = Object.assign({}, header);
    if (corruptToken && headers.Authorization) headers.Authorization = 'Bearer not.a.token';
    return headers;
  }

  return {
    calls,
    storage,
    expireSession() { sessionAlive = false; },
    login({ success, fail }) {
      calls.login += 1;
      deliver(fetch(`${emulatorUrl}/dev/code`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ openid }),
      }).then((r) => r.json()).then((body) => {
        sessionAlive = true;
        return { code: body.code, errMsg: 'login:ok' };
      }), success, fail, 'login');
    },
    request({ url, method = 'GET', data, header, success, fail }) {
      calls.requests.push({ url: new URL(url).pathname, method, header: Object.assign({}, header) });
      const init = { method, headers: headersOf(header) };
      if (data !== undefined && method !== 'GET') init.body = JSON.stringify(data);
      deliver(fetch(url, init).then(async (r) => {
        const text = await r.text();
        let body = text;
        try { body = text ? JSON.parse(text) : ''; } catch (e) { body = text; }
        return { statusCode: r.status, data: body, header: Object.fromEntries(r.headers) };
      }), success, fail, 'request');
    },
    uploadFile({ url, filePath, name, header, success, fail }) {
      calls.uploads += 1;
      const form = new FormData();
      form.append(name, new Blob([fs.readFileSync(filePath)]), path.basename(filePath));
      deliver(fetch(url, { method: 'POST', headers: headersOf(header), body: form })
        .then(async (r) => ({ statusCode: r.status, data: await r.text() })), success, fail,
      'uploadFile');
    },
    getAppBaseInfo: language ? () => ({ language, SDKVersion: '3.0.0' }) : undefined,
    getStorageSync(key) { return storage.has(key) ? storage.get(key) : ''; },
    setStorageSync(key, value) { storage.set(key, value); },
    removeStorageSync(key) { storage.delete(key); },
    checkSession({ success, fail }) {
      setImmediate(() => (sessionAlive ? success({ errMsg: 'checkSession:ok' })
        : fail({ errMsg: 'checkSession:fail session time out' })));
    },
  };
}

module.exports = { createWx };
