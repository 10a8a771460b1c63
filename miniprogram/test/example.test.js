/**
 * The example mini-program (miniprogram/app.js, example/pages) run as WeChat would load it —
 * App(), getApp(), Page() and a `wx` whose language is zh_CN — against the real server and
 * its emulator (node --test, Node 20). It requires the helper in place, with no copy.
 */
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, test } = require('node:test');

const { createWx } = require('./wx-shim.js');
const { startServer } = require('./server.js');

const ROOT = path.resolve(__dirname, '..'); // the mini-program's root (project.config.json)
const HAN = /[\u4e00-\u9fff]/;
let server;

before(async () => { server = await startServer(); });
after(() => { if (server) server.stop(); });

/** A page instance as the framework makes one: its definition, own data, setData. */
function instantiate(definition) {
  const page = Object.assign({}, definition, { data: Object.assign({}, definition.data) });
  page.setData = (changes) => Object.assign(page.data, changes);
  return page;
}

test('the example logs in, saves a nickname, shows server errors in Chinese', async () => {
  const wx = createWx({ emulatorUrl: server.emulatorUrl, openid: `o-example-${process.pid}`,
    language: 'zh_CN' });
  const navigations = [];
  wx.showToast = () => {};
  wx.navigateTo = ({ url }) => navigations.push(url);
  wx.reLaunch = ({ url }) => navigations.push(url);
  let app;
  let pageDefinition;
  Object.assign(global, {
    wx, App: (definition) => { app = definition; }, getApp: () => app,
    Page: (definition) => { pageDefinition = definition; },
  });
  require(path.join(ROOT, 'example', 'config.js')).baseUrl = server.url; // the LAN address, in real life
  require(path.join(ROOT, 'app.js'));
  app.onLaunch();
  const pages = JSON.parse(fs.readFileSync(path.join(ROOT, 'app.json'), 'utf8')).pages;

  require(path.join(ROOT, pages[0]));
  const login = instantiate(pageDefinition);
  await login.onLoad();
  assert.equal(login.data.error, '');
  assert.equal(wx.calls.login, 1); // onLaunch's login, shared by the page's request

  await login.onSaveNickname({ detail: { value: { nickname: ' 小明 ' } } });
  assert.equal(login.data.nickname, '小明');

  await login.onChooseAvatar({ detail: { avatarUrl: path.join(ROOT, 'example', 'pages', 'login', 'login.wxml') } });
  assert.match(login.data.error, HAN); // invalid_image, in Chinese
  await login.onChooseAvatar({ detail: { avatarUrl: path.join(ROOT, 'example', 'images', 'default-avatar.png') } });
  assert.equal(login.data.error, '');
  assert.match(login.data.avatarUrl, /\/media\/avatars\//);

  login.goProfile();
  assert.equal(navigations.at(-1), `/${pages[1]}`);
  require(path.join(ROOT, pages[1]));
  const profile = instantiate(pageDefinition);
  await profile.onShow();
  assert.equal(profile.data.profile.nickname, '小明');
  await profile.logout();
  assert.equal(navigations.at(-1), `/${pages[0]}`);
  assert.ok(wx.calls.requests.every((r) => r.header['Accept-Language'] === 'zh-CN'));
});
