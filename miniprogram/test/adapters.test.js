/**
 * wxauth-kit's three adapters — wx (native), uni (uni-app), taro (Taro) — against the real
 * server and its emulator on loopback (node --test, Node 20), through fake `wx`, `uni` and
 * `Taro` objects that keep their platforms' conventions (wx-shim.js, fakes.js): single-flight
 * under 20 concurrent calls, one renewal on 401 and never a loop, problem+json and
 * 'request:fail' errors, encrypted data, phone, avatar, sessions, deletion, and the
 * Retry-After window (429 from the real login rate limit, 503 from a stub).
 */
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');

const { createClient, detectPlatform, WxAuthError } = require('../kit');
const { createWx } = require('./wx-shim.js');
const { createUni, createTaro } = require('./fakes.js');
const { startServer, emulatorPost } = require('./server.js');

const PLATFORMS = ['wx', 'uni', 'taro'];
const FAKES = { wx: createWx, uni: createUni, taro: createTaro };
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

let server;
let shortServer; // access tokens live 2 s there
let limited; // two logins per 2 seconds per client address
let counter = 0;

before(async () => {
  [server, shortServer, limited] = await Promise.all([
    startServer(), startServer({ JWT_ACCESS_TOKEN_EXPIRES: '2' }),
    startServer({ LOGIN_RATE_LIMIT: '2 per 2 seconds' })]);
});

after(() => {
  for (const s of [server, shortServer, limited]) if (s) s.stop();
});

/** A fake platform object and a client made on it with createClient({platform, <platform>}). */
function setup(platform, target = server, fakeOptions = {}, baseUrl = target.url) {
  counter += 1;
  const openid = fakeOptions.openid || `o-${platform}-${process.pid}-${counter}`;
  const api = FAKES[platform](Object.assign({ emulatorUrl: target.emulatorUrl }, fakeOptions,
    { openid }));
  const client = createClient({ baseUrl, platform, [platform]: api });
  const sent = (url, method) => api.calls.requests
    .filter((r) => r.url === url && (!method || r.method === method)).length;
  return { api, client, openid, sent };
}

const rejection = (promise) => promise.then((v) => assert.fail(`resolved ${JSON.stringify(v)}`),
  (e) => e);

describe('choosing the platform', () => {
  test('explicitly, from the object passed in, or from the global uni / wx', () => {
    const wxApi = createWx({ emulatorUrl: server.emulatorUrl, openid: 'x' });
    const uniApi = createUni({ emulatorUrl: server.emulatorUrl, openid: 'x' });
    const taroApi = createTaro({ emulatorUrl: server.emulatorUrl, openid: 'x' });
    const base = { baseUrl: server.url };
    assert.equal(createClient(Object.assign({ platform: 'uni', uni: uniApi }, base)).platform, 'uni');
    assert.equal(createClient(Object.assign({ taro: taroApi }, base)).platform, 'taro');
    assert.equal(detectPlatform({ wx: wxApi }), 'wx');
    assert.equal(detectPlatform({}), null);
    assert.throws(() => createClient(base), /no wx or uni here/);
    assert.throws(() => createClient(Object.assign({ platform: 'taro' }, base)), /pass taro/);
    assert.throws(() => createClient(Object.assign({ platform: 'alipay' }, base)), /unknown platform/);
    assert.throws(() => createClient({ wx: wxApi }), /baseUrl/);
    try {
      global.wx = wxApi;
      assert.equal(createClient(base).platform, 'wx');
      global.uni = uniApi; // uni-app on mp-weixin: both globals, uni's conventions win
      assert.equal(createClient(base).platform, 'uni');
      assert.equal(createClient(Object.assign({ platform: 'wx' }, base)).platform, 'wx');
    } finally {
      delete global.wx;
      delete global.uni;
    }
  });
});

for (const platform of PLATFORMS) {
  describe(`${platform}: against the real server`, () => {
    test('20 concurrent calls on a cold start: one login, one POST /auth/login', async () => {
      const { api, client, sent } = setup(platform, server, { language: 'zh_CN' });
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2
        ? client.request({ url: '/profile' }) : client.login().then((body) => body.user))));
      assert.equal(new Set(answers.map((p) => p.id)).size, 1);
      assert.equal(api.calls.login, 1);
      assert.equal(sent('/auth/login'), 1);
      assert.ok(api.getStorageSync('wxauth').accessToken);
      assert.ok(api.calls.requests.every((r) => r.header['Accept-Language'] === 'zh-CN'));
    });

    test('problem+json errors, request:fail, a persistent 401 that does not loop', async () => {
      const { client } = setup(platform, server, { language: 'zh_CN' });
      const invalid = await rejection(client.request({ url: '/profile', method: 'PATCH',
        data: { gender: 9 } }));
      assert.ok(invalid instanceof WxAuthError);
      assert.equal(invalid.code, 'invalid_request');
      assert.equal(invalid.status, 400);
      assert.equal(invalid.body.title, '请求无效');
      assert.equal(invalid.retryAfter, null);

      const closed = setup(platform, server, {}, 'http://127.0.0.1:9'); // nothing listens
      const offline = await rejection(closed.client.request({ url: '/profile' }));
      assert.equal(offline.code, 'network_error');
      assert.equal(offline.status, 0);
      assert.match(offline.detail, /^request:fail /);

      const corrupt = setup(platform, server, { corruptToken: true });
      const refused = await rejection(corrupt.client.request({ url: '/profile' }));
      assert.equal(refused.code, 'token_invalid');
      assert.equal(refused.status, 401);
      assert.equal(corrupt.sent('/profile'), 2); // one retry after one renewal, never a loop
    });

    test('encrypted data, the phone, the avatar, sessions, logout and deletion', async () => {
      const { api, client, openid, sent } = setup(platform);
      await client.prepareForEncryptedData();
      const detail = await emulatorPost(server.emulatorUrl, '/dev/encrypt',
        { openid, data: { nickName: platform, gender: 1 } });
      assert.equal((await client.updateProfile(detail)).nickname, platform);

      const stale = await emulatorPost(server.emulatorUrl, '/dev/encrypt', { openid, data: {} });
      api.expireSession(); // checkSession fails: log in before, and ask again
      const askAgain = await rejection(client.updateProfile(stale));
      assert.equal(askAgain.askAgain, true);
      assert.equal(api.calls.login, 2);

      const { code } = await emulatorPost(server.emulatorUrl, '/dev/phone-code',
        { openid, phone: '13700001111' });
      assert.equal((await client.bindPhone({ code })).pure_phone_number, '13700001111');
      const phoneAtLogin = await emulatorPost(server.emulatorUrl, '/dev/phone-code',
        { openid, phone: '13700002222' });
      const relogin = await client.login({ phoneCode: phoneAtLogin.code });
      assert.deepEqual(relogin.phone, { bound: true });

      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'avatar-')), 'tmp_avatar.png');
      fs.writeFileSync(file, PNG);
      assert.match((await client.uploadAvatar(file)).avatar_url, /\/media\/avatars\//);
      fs.writeFileSync(`${file}.txt`, 'hello');
      assert.equal((await rejection(client.uploadAvatar(`${file}.txt`))).code, 'invalid_image');

      const listed = await client.sessions();
      assert.ok(listed.length >= 2);
      const other = listed.find((s) => !s.current);
      await client.endSession(other.id);
      assert.equal((await rejection(client.endSession(other.id))).code, 'session_not_found');

      await client.logout();
      assert.equal(api.getStorageSync('wxauth'), '');
      await client.deleteAccount(); // logs in, then a fresh code as the confirmation
      assert.equal(api.getStorageSync('wxauth'), '');
      assert.equal(sent('/profile', 'DELETE'), 1);
      assert.equal((await client.login()).is_new_user, false);
    });

    test('the Retry-After window of a 429: no request until the time has passed', async () => {
      const { api, client, sent } = setup(platform, limited);
      let refused = null;
      for (let i = 0; i < 3 && !refused; i += 1) { // the limit is shared with the other platforms
        refused = await client.login().then(() => null, (e) => e);
      }
      assert.ok(refused instanceof WxAuthError, String(refused));
      assert.equal(refused.code, 'rate_limited');
      assert.equal(refused.status, 429);
      assert.ok(refused.retryAfter >= 1 && refused.retryAfter <= 2, String(refused.retryAfter));
      const logins = api.calls.login;
      const posts = sent('/auth/login');
      const started = Date.now();
      const during = await Promise.all(Array.from({ length: 20 }, () => rejection(client.login())));
      for (const e of during) {
        assert.ok(e instanceof WxAuthError);
        assert.equal(e.code, 'rate_limited');
        assert.equal(e.status, 429);
        assert.ok(e.retryAfter >= 1 && e.retryAfter <= refused.retryAfter, String(e.retryAfter));
      }
      assert.ok(Date.now() - started < 500, 'the window answers at once');
      assert.equal(api.calls.login, logins); // no wx.login code spent either
      assert.equal(sent('/auth/login'), posts);
      await new Promise((r) => setTimeout(r, refused.retryAfter * 1000 + 100));
      assert.ok((await client.login()).access_token);
      assert.equal(sent('/auth/login'), posts + 1);
    });
  });
}

describe('the Retry-After window of a 503', () => {
  let stub;
  const hits = [];
  before(async () => {
    stub = http.createServer((req, res) => {
      hits.push(`${req.method} ${req.url}`);
      const json = (status, body, headers) => {
        res.writeHead(status, Object.assign({ 'Content-Type': 'application/json' }, headers));
        res.end(JSON.stringify(body));
      };
      if (req.url === '/auth/login') {
        json(200, { access_token: 'a', refresh_token: 'r', expires_in: 60, token_type: 'Bearer' });
      } else if (req.url.startsWith('/busy')) {
        json(503, { type: 'urn:wxauth:problem:wechat_busy', title: 'WeChat is busy', status: 503,
          detail: 'try later', code: 'wechat_busy' }, { 'Retry-After': '1' });
      } else {
        json(200, { ok: true });
      }
    });
    await new Promise((r) => stub.listen(0, '127.0.0.1', r));
  });
  after(() => { if (stub) stub.close(); });

  test('each platform: the endpoint rejects at once until Retry-After has passed, others go on', async () => {
    const base = `http://127.0.0.1:${stub.address().port}`;
    await Promise.all(PLATFORMS.map(async (platform) => {
      const { client } = setup(platform, server, {}, base);
      const url = `/busy/${platform}`;
      const count = () => hits.filter((h) => h === `GET ${url}`).length;
      const first = await rejection(client.request({ url }));
      assert.equal(first.code, 'wechat_busy');
      assert.equal(first.retryAfter, 1);
      const during = await Promise.all(Array.from({ length: 20 },
        () => rejection(client.request({ url: `${url}?again=1` }))));
      assert.ok(during.every((e) => e.code === 'wechat_busy' && e.status === 503
        && e.retryAfter === 1 && e.detail === 'try later'));
      assert.equal(count(), 1);
      assert.deepEqual(await client.request({ url: '/elsewhere' }), { ok: true });
      await new Promise((r) => setTimeout(r, 1100));
      assert.equal((await rejection(client.request({ url }))).code, 'wechat_busy');
      assert.equal(count(), 2);
    }));
  });
});

describe('renewal', () => {
  test('each platform: 20 concurrent calls with an expired token make one refresh', async () => {
    const clients = PLATFORMS.map((platform) => setup(platform, shortServer));
    await Promise.all(clients.map(({ client }) => client.login()));
    await new Promise((r) => setTimeout(r, 3000));
    await Promise.all(clients.map(async ({ api, client, sent }) => {
      const profiles = await Promise.all(Array.from({ length: 20 },
        () => client.request({ url: '/profile' })));
      assert.equal(new Set(profiles.map((p) => p.id)).size, 1);
      assert.equal(sent('/auth/refresh'), 1);
      assert.equal(api.calls.login, 1);
    }));
  });
});
