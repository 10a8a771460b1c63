/**
 * The kit (wxauth-kit, wx adapter): login with a phone code and deleteAccount(), against
 * the real server and its emulator on loopback (node --test, Node 20).
 */
'use strict';

const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');

const { createClient } = require('../kit');
const { createWx } = require('./wx-shim.js');
const { startServer, emulatorPost } = require('./server.js');

let server;
let counter = 0;

before(async () => { server = await startServer(); });
after(() => { if (server) server.stop(); });

function setup(openid) {
  counter += 1;
  const id = openid || `o-rights-${process.pid}-${counter}`;
  const wx = createWx({ emulatorUrl: server.emulatorUrl, openid: id });
  return { wx, client: createClient({ baseUrl: server.url, wx }), openid: id };
}

function phoneCode(openid, phone) {
  return emulatorPost(server.emulatorUrl, '/dev/phone-code', { openid, phone })
    .then((body) => body.code);
}

describe('login with a phone code', () => {
  test('logs in and binds the phone in one request', async () => {
    const { client, wx, openid } = setup();
    const code = await phoneCode(openid, '13600001234');
    const body = await client.login({ phoneCode: code });
    assert.deepEqual(body.phone, { bound: true });
    assert.equal(body.user.pure_phone_number, '13600001234');
    const sent = wx.calls.requests.filter((r) => r.url === '/auth/login');
    assert.equal(sent.length, 1);
    assert.equal((await client.request({ url: '/profile' })).pure_phone_number, '13600001234');
  });

  test('a used phone code does not undo the login', async () => {
    const { client, openid } = setup();
    const code = await phoneCode(openid, '13600005678');
    await client.login({ phoneCode: code });
    const again = await client.login({ phoneCode: code });
    assert.equal(again.phone.bound, false);
    assert.equal(again.phone.code, 'invalid_code');
    assert.ok(again.access_token);
    assert.ok((await client.request({ url: '/profile' })).id);
  });

  test('a phone login is not swallowed by a plain login in flight', async () => {
    const { client, wx, openid } = setup();
    const code = await phoneCode(openid, '13600009999');
    const [plain, withPhone] = await Promise.all([client.login(), client.login({ phoneCode: code })]);
    assert.equal(plain.phone, undefined);
    assert.deepEqual(withPhone.phone, { bound: true });
    assert.equal(wx.calls.login, 2);
  });
});

describe('deleteAccount', () => {
  test('deletes the account and forgets the login state', async () => {
    const { client, wx } = setup();
    const first = await client.login();
    assert.equal(first.is_new_user, true);
    const { accessToken } = wx.getStorageSync('wxauth');
    await client.deleteAccount();
    assert.equal(wx.getStorageSync('wxauth'), '');
    const old = await fetch(`${server.url}/profile`, { headers: { Authorization: `Bearer ${accessToken}` } });
    assert.equal(old.status, 401);
    const back = await client.login(); // the person comes back: not new
    assert.equal(back.is_new_user, false);
    assert.equal(back.is_new_account, false);
  });

  test('logs in first when there is no login state', async () => {
    const { client, wx } = setup();
    await client.deleteAccount();
    assert.equal(wx.calls.login, 2); // one for the login, one for the confirmation code
    const deletes = wx.calls.requests.filter((r) => r.url === '/profile' && r.method === 'DELETE');
    assert.equal(deletes.length, 1);
  });

  test("another user's confirmation is refused and nothing is lost", async () => {
    const ann = setup();
    await ann.client.login();
    const mallory = setup(); // a device whose wx.login is someone else's
    mallory.wx.setStorageSync('wxauth', ann.wx.getStorageSync('wxauth'));
    await assert.rejects(mallory.client.deleteAccount(),
      (err) => err.code === 'confirmation_mismatch' && err.status === 403);
    assert.ok(mallory.wx.getStorageSync('wxauth').accessToken); // state kept
    assert.ok((await ann.client.request({ url: '/profile' })).id); // account kept
  });
});
