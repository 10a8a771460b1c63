/**
 * The kit (wxauth-kit) through its wx adapter against the real server and its emulator on
 * loopback (node --test, Node 20).
 */
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');

const { createClient, WxAuthError, userLanguage } = require('../kit');
const { createWx } = require('./wx-shim.js');
const { startServer, emulatorPost } = require('./server.js');

let server;
let shortServer; // access tokens live 2 s there
let counter = 0;

before(async () => {
  [server, shortServer] = await Promise.all([
    startServer(), startServer({ JWT_ACCESS_TOKEN_EXPIRES: '2' })]);
});

after(() => {
  if (server) server.stop();
  if (shortServer) shortServer.stop();
});

function setup(target = server, shimOptions = {}) {
  counter += 1;
  const openid = `o-node-${process.pid}-${counter}`;
  const wx = createWx(Object.assign({ emulatorUrl: target.emulatorUrl, openid }, shimOptions));
  const client = createClient({ baseUrl: target.url, wx });
  const logins = () => wx.calls.requests.filter((r) => r.url === '/auth/login').length;
  return { wx, client, openid, logins, target };
}

describe('login and requests', () => {
  test('login, then the profile', async () => {
    const { client, wx } = setup();
    const body = await client.login();
    assert.equal(body.is_new_user, true);
    assert.equal(body.token_type, 'Bearer');
    assert.ok(wx.getStorageSync('wxauth').accessToken);
    const profile = await client.request({ url: '/profile' });
    assert.equal(profile.id, body.user.id);
  });

  test('10 concurrent requests on a cold start make exactly one login', async () => {
    const { client, wx, logins } = setup();
    const profiles = await Promise.all(
      Array.from({ length: 10 }, () => client.request({ url: '/profile' })));
    assert.equal(new Set(profiles.map((p) => p.id)).size, 1);
    assert.equal(wx.calls.login, 1);
    assert.equal(logins(), 1);
  });

  test('problem+json errors reach the caller with their code', async () => {
    const { client } = setup();
    await assert.rejects(client.request({ url: '/profile', method: 'PATCH', data: { gender: 9 } }),
      (err) => err instanceof WxAuthError && err.code === 'invalid_request' && err.status === 400
        && err.body.errors.gender !== undefined);
    await assert.rejects(client.request({ url: '/nope' }), (err) => err.code === 'not_found');
  });

  test('an expired token is renewed once and the call succeeds', async () => {
    const { client, wx, logins } = setup(shortServer);
    await client.login();
    await new Promise((r) => setTimeout(r, 3000));
    const profile = await client.request({ url: '/profile' });
    assert.ok(profile.id);
    assert.equal(logins(), 1); // renewed through the refresh token, no new wx.login
    assert.equal(wx.calls.requests.filter((r) => r.url === '/auth/refresh').length, 1);
  });

  test('a revoked token is renewed once and the call succeeds', async () => {
    const { client, wx, logins, target } = setup();
    await client.login();
    const { accessToken } = wx.getStorageSync('wxauth');
    const out = await fetch(`${target.url}/auth/logout`, {
      method: 'POST', headers: { Authorization: `Bearer ${accessToken}` } });
    assert.equal(out.status, 204);
    const profile = await client.request({ url: '/profile' });
    assert.ok(profile.id);
    assert.equal(logins(), 2); // the refresh token was revoked too: a new login
  });

  test('a persistent 401 rejects instead of looping', async () => {
    const { client, wx } = setup(server, { corruptToken: true });
    await assert.rejects(client.request({ url: '/profile' }),
      (err) => err.code === 'token_invalid' && err.status === 401);
    assert.equal(wx.calls.requests.filter((r) => r.url === '/profile').length, 2);
  });

  test('logout forgets the state and revokes the tokens', async () => {
    const { client, wx, target } = setup();
    await client.login();
    const { accessToken } = wx.getStorageSync('wxauth');
    await client.logout();
    assert.equal(wx.getStorageSync('wxauth'), '');
    const r = await fetch(`${target.url}/profile`, { headers: { Authorization: `Bearer ${accessToken}` } });
    assert.equal(r.status, 401);
  });
});

describe('encrypted data, phone, avatar', () => {
  test('updateProfile sends e.detail', async () => {
    const { client, openid } = setup();
    await client.prepareForEncryptedData();
    const detail = await emulatorPost(server.emulatorUrl, '/dev/encrypt',
      { openid, data: { nickName: 'Node', gender: 1 } });
    const profile = await client.updateProfile(detail);
    assert.equal(profile.nickname, 'Node');
  });

  test('decrypt after a session_key rotation asks to ask again', async () => {
    const { client, openid, wx } = setup();
    await client.login();
    const detail = await emulatorPost(server.emulatorUrl, '/dev/encrypt',
      { openid, data: { nickName: 'Stale' } });
    await client.login(); // a second wx.login rotated the session_key
    await assert.rejects(client.updateProfile(detail),
      (err) => err.code === 'decrypt_failed' && err.askAgain === true);
    const fresh = await emulatorPost(server.emulatorUrl, '/dev/encrypt',
      { openid, data: { nickName: 'Fresh' } });
    assert.equal((await client.updateProfile(fresh)).nickname, 'Fresh');
    assert.equal(wx.calls.login, 3); // the helper logged in again after decrypt_failed
  });

  test('an expired WeChat session logs in before sending and asks again', async () => {
    const { client, openid, wx } = setup();
    await client.login();
    const detail = await emulatorPost(server.emulatorUrl, '/dev/encrypt',
      { openid, data: { nickName: 'Old session' } });
    wx.expireSession();
    await assert.rejects(client.updateProfile(detail), (err) => err.askAgain === true);
    assert.equal(wx.calls.login, 2);
  });

  test('bindPhone with the button code', async () => {
    const { client, openid } = setup();
    await client.login();
    const { code } = await emulatorPost(server.emulatorUrl, '/dev/phone-code',
      { openid, phone: '13512345678' });
    const profile = await client.bindPhone({ code, errMsg: 'getPhoneNumber:ok' });
    assert.equal(profile.pure_phone_number, '13512345678');
    await assert.rejects(client.bindPhone({ code }), (err) => err.code === 'invalid_code');
  });

  test('uploadAvatar sends the chooseAvatar file', async () => {
    const { client, wx } = setup();
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'avatar-')), 'tmp_avatar.png');
    fs.writeFileSync(file, Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
      'base64'));
    const profile = await client.uploadAvatar(file);
    assert.match(profile.avatar_url, /\/media\/avatars\/[0-9a-f]+\.png$/);
    assert.equal(wx.calls.uploads, 1);
    const notImage = `${file}.txt`;
    fs.writeFileSync(notImage, 'hello');
    await assert.rejects(client.uploadAvatar(notImage), (err) => err.code === 'invalid_image');
  });
});

describe("the user's language", () => {
  test('WeChat says zh_CN: the helper sends zh-CN and problems come back in Chinese', async () => {
    const { client, wx } = setup(server, { language: 'zh_CN' });
    await assert.rejects(client.request({ url: '/profile', method: 'PATCH', data: { gender: 9 } }),
      (err) => err.code === 'invalid_request' && err.body.title === '请求无效'
        && /[\u4e00-\u9fff]/.test(err.detail) && err.detail.includes('gender'));
    await assert.rejects(client.bindPhone({ code: 'not-a-phone-code' }),
      (err) => err.code === 'invalid_code' && err.body.title === '登录凭证无效'
        && err.detail.includes('获取手机号按钮'));
    assert.ok(wx.calls.requests.length >= 3);
    for (const r of wx.calls.requests) assert.equal(r.header['Accept-Language'], 'zh-CN');
  });

  test('English users keep English; code is the same', async () => {
    const { client } = setup(server, { language: 'en' });
    await assert.rejects(client.request({ url: '/profile', method: 'PATCH', data: { gender: 9 } }),
      (err) => err.code === 'invalid_request' && err.body.title === 'Invalid request');
  });

  test('the language comes from getAppBaseInfo, else getSystemInfoSync, as a BCP 47 tag', () => {
    assert.equal(userLanguage({ getAppBaseInfo: () => ({ language: 'zh_TW' }) }), 'zh-TW');
    assert.equal(userLanguage({ getSystemInfoSync: () => ({ language: 'zh_CN' }) }), 'zh-CN');
    assert.equal(userLanguage({ getAppBaseInfo: () => ({ language: 'en' }) }), 'en');
    assert.equal(userLanguage({}), undefined); // neither API: no header
    assert.equal(userLanguage({ getAppBaseInfo: () => ({ language: 'zh\r\nX: y' }) }), undefined);
  });
});

describe('sessions', () => {
  test('sessions() lists this user\'s devices; endSession() ends another one', async () => {
    const phone = setup();
    const tablet = setup(server, { openid: phone.openid }); // the same person, a second device
    await phone.client.login();
    await tablet.client.login();
    const listed = await phone.client.sessions();
    assert.equal(listed.length, 2);
    assert.deepEqual(listed.map((s) => s.current), [false, true]); // newest first: the tablet
    const tabletId = listed[0].id;
    assert.equal(listed[0].appid, listed[1].appid);

    await phone.client.endSession(tabletId);
    assert.equal((await phone.client.sessions()).length, 1);
    // the tablet's tokens are refused: its next request renews with a new wx.login
    const profile = await tablet.client.request({ url: '/profile' });
    assert.ok(profile.id);
    assert.equal(tablet.wx.calls.login, 2);
    assert.equal(tablet.wx.calls.requests.filter((r) => r.url === '/auth/refresh').length, 1);

    await assert.rejects(phone.client.endSession(tabletId),
      (err) => err instanceof WxAuthError && err.code === 'session_not_found' && err.status === 404);
    assert.equal((await phone.client.sessions()).length, 2); // the tablet's new login
  });
});

describe('retry later', () => {
  let limited; // two logins per minute per client address
  before(async () => { limited = await startServer({ LOGIN_RATE_LIMIT: '2 per minute' }); });
  after(() => { if (limited) limited.stop(); });

  test('a refused login carries Retry-After as retryAfter (seconds)', async () => {
    const { client } = setup(limited);
    await client.login();
    await client.login();
    const error = await client.login().then(() => null, (e) => e);
    assert.ok(error instanceof WxAuthError, String(error));
    assert.equal(error.code, 'rate_limited');
    assert.equal(error.status, 429);
    assert.ok(Number.isInteger(error.retryAfter) && error.retryAfter > 0 && error.retryAfter <= 60,
      `retryAfter ${error.retryAfter}`);
  });

  test('an answer without Retry-After gives null', async () => {
    const { client } = setup();
    const error = await client.request({ url: '/auth/sessions/no-such-session', method: 'DELETE' })
      .then(() => null, (e) => e);
    assert.equal(error.code, 'session_not_found');
    assert.equal(error.retryAfter, null);
  });
});
