/**
 * The served /openapi.json as JavaScript tools (Apifox, YApi, Postman, ajv) read it:
 * - every `pattern` compiles as an ECMAScript RegExp (with the 'u' flag, as ajv compiles
 *   them) and means what the server checks: a control character or a final newline fails;
 * - every schema compiles with ajv in strict mode (OpenAPI's `example` and `nullable` known);
 * - a valid instance of every schema validates: the real requests the server accepted and
 *   its real answers (log in through the emulator, profile, phone, avatar, refresh, errors),
 *   and the document's own error examples;
 * - the kit's generated types (kit/types/server.d.ts: the problem codes, the profile, session
 *   and login-result shapes) are what the document says today.
 */
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { after, before, test } = require('node:test');

const Ajv = require('ajv');
const addFormats = require('ajv-formats');

const { startServer, emulatorPost } = require('./server.js');
const openapiTypes = require('./openapi-types.js');

const REF = '#/components/schemas/';
let server;
let doc;
let ajv;
const validated = new Set(); // component schemas a valid instance was checked against

before(async () => {
  server = await startServer();
  const r = await fetch(`${server.url}/openapi.json`);
  assert.equal(r.status, 200);
  doc = await r.json();
  ajv = new Ajv({ strict: true, allErrors: true });
  addFormats(ajv);
  ajv.addVocabulary(['example']); // OpenAPI's annotation; `nullable` ajv knows itself
  // the component schemas under one id, their $refs pointing there
  const schemas = JSON.parse(JSON.stringify(doc.components.schemas).split(`"${REF}`).join('"doc#/definitions/'));
  ajv.addSchema({ $id: 'doc', definitions: schemas });
});

after(() => {
  if (server) server.stop();
});

function patterns(node, found = []) {
  if (Array.isArray(node)) node.forEach((v) => patterns(v, found));
  else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'pattern' && typeof value === 'string') found.push(value);
      else patterns(value, found);
    }
  }
  return found;
}

/** Validate `instance` against the schema `ref` ({$ref: '#/components/schemas/X'}). */
function check(schema, instance, what) {
  assert.ok(schema && schema.$ref && schema.$ref.startsWith(REF), `${what}: no schema $ref`);
  const name = schema.$ref.slice(REF.length);
  const validate = ajv.getSchema(`doc#/definitions/${name}`);
  assert.ok(validate(instance), `${what} does not match ${name}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(instance)}`);
  validated.add(name);
}

/** The operations of a path item ([method, operation]): not its `parameters` (a path's
 * {…} parameters are documented there). */
function operations(item) {
  return Object.entries(item).filter(([key]) => key !== 'parameters');
}

function operation(method, path) {
  const op = doc.paths[path] && doc.paths[path][method.toLowerCase()];
  assert.ok(op, `${method} ${path} is not documented`);
  return op;
}

/** Send a request; check its JSON body against the documented request schema and the
 * answer against the documented response schema of its status. */
async function call(method, path, { body, token, form, formInstance, template, urlencoded, basic } = {}) {
  const op = operation(method, template || path); // template: the documented path, with {…}
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (basic) headers.Authorization = `Basic ${Buffer.from(basic.join(':')).toString('base64')}`;
  let payload;
  if (urlencoded) { // a form-encoded body (URLSearchParams sets its Content-Type)
    payload = new URLSearchParams(urlencoded);
    check(op.requestBody.content['application/x-www-form-urlencoded'].schema, urlencoded, `${method} ${path} request`);
  } else if (form) {
    payload = form;
    check(op.requestBody.content['multipart/form-data'].schema, formInstance, `${method} ${path} request`);
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const r = await fetch(server.url + path, { method, headers, body: payload });
  const response = op.responses[String(r.status)];
  assert.ok(response, `${method} ${path}: status ${r.status} is not documented`);
  if (body !== undefined && r.status < 400) {
    check(op.requestBody.content['application/json'].schema, body, `${method} ${path} request`);
  }
  if (r.status === 204) return { status: r.status };
  const type = r.headers.get('content-type').split(';')[0];
  const data = await r.json();
  check(response.content[type].schema, data, `${method} ${path} ${r.status} answer`);
  return { status: r.status, data };
}

test('every pattern compiles as a JavaScript RegExp and means what the server checks', () => {
  const found = patterns(doc);
  assert.ok(found.length >= 8, `only ${found.length} patterns`);
  for (const source of new Set(found)) {
    const re = new RegExp(source, 'u'); // throws on Python-only syntax such as (?P<…>)
    assert.equal(re.test('小明 Xiao Ming'), true, source);
    assert.equal(re.test('text\n'), false, `${source} accepts a final newline`);
    assert.equal(re.test('a\u0000b'), false, `${source} accepts NUL`);
    assert.equal(re.test('Z'), true, `${source} refuses "Z" (read \\Z as a literal?)`);
  }
});

test('every schema compiles with ajv (strict)', () => {
  for (const name of Object.keys(doc.components.schemas)) {
    assert.ok(ajv.getSchema(`doc#/definitions/${name}`), name);
  }
});

test('the document has servers and an operationId per operation', () => {
  assert.deepEqual(doc.servers, [{ url: server.url }]);
  const ids = [];
  for (const item of Object.values(doc.paths)) {
    for (const [, op] of operations(item)) ids.push(op.operationId);
  }
  assert.ok(ids.every((id) => /^[a-z][A-Za-z]+$/.test(id)), ids.join());
  assert.equal(new Set(ids).size, ids.length);
});

test('the error examples validate against their schema', () => {
  let count = 0;
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of operations(item)) {
      for (const [status, response] of Object.entries(op.responses)) {
        if (Number(status) < 400) continue;
        const media = response.content['application/problem+json'];
        const examples = Object.entries(media.examples || {});
        assert.ok(examples.length > 0, `${method} ${path} ${status}: no example`);
        for (const [code, example] of examples) {
          check(media.schema, example.value, `${method} ${path} ${status} example ${code}`);
          assert.equal(example.value.code, code);
          assert.equal(example.value.status, Number(status));
          count += 1;
        }
      }
    }
  }
  assert.ok(count >= 40, `${count} examples`);
});

test('real requests and answers validate against their schemas, every schema once at least', async () => {
  const openid = `o-openapi-${process.pid}`;
  const { code } = await emulatorPost(server.emulatorUrl, '/dev/code', { openid });
  const login = await call('POST', '/auth/login', { body: { code } });
  assert.equal(login.status, 200);
  const token = login.data.access_token;

  assert.equal((await call('GET', '/profile', { token })).status, 200);
  assert.equal((await call('GET', '/auth/session', { token })).status, 200);
  assert.equal((await call('GET', '/healthz')).status, 200);
  const patched = await call('PATCH', '/profile', {
    token, body: { nickname: '小明', gender: 1, city: 'Hangzhou', country: null } });
  assert.equal(patched.status, 200);
  const detail = await emulatorPost(server.emulatorUrl, '/dev/encrypt',
    { openid, data: { nickName: 'Node', gender: 1 } });
  assert.equal((await call('POST', '/profile', { token, body: detail })).status, 200);
  const phone = await emulatorPost(server.emulatorUrl, '/dev/phone-code', { openid });
  assert.equal((await call('POST', '/profile/phone', { token, body: { code: phone.code } })).status, 200);

  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
  const form = new FormData();
  form.append('file', new Blob([png], { type: 'image/png' }), 'tmp_avatar.png');
  const avatar = await call('POST', '/profile/avatar', { token, form, formInstance: { file: png.toString('latin1') } });
  assert.equal(avatar.status, 200);

  // problems: documented statuses, problem+json bodies matching the Problem schema
  assert.equal((await call('PATCH', '/profile', { token, body: { gender: 9 } })).status, 400);
  assert.equal((await call('POST', '/auth/login', { body: { code: 'used-or-never-minted' } })).status, 400);
  assert.equal((await call('GET', '/profile', { token: 'not-a-jwt' })).status, 401);

  // sessions: a second login of the same person (another device), listed, then ended
  const { code: second } = await emulatorPost(server.emulatorUrl, '/dev/code', { openid });
  assert.equal((await call('POST', '/auth/login', { body: { code: second } })).status, 200);
  const listed = await call('GET', '/auth/sessions', { token });
  assert.equal(listed.status, 200);
  assert.equal(listed.data.sessions.length, 2);
  for (const s of listed.data.sessions) check({ $ref: `${REF}LoginSession` }, s, 'a listed session');
  const other = listed.data.sessions.find((s) => !s.current).id;
  const template = '/auth/sessions/{session_id}';
  assert.equal((await call('DELETE', `/auth/sessions/${other}`, { token, template })).status, 204);
  assert.equal((await call('DELETE', `/auth/sessions/${other}`, { token, template })).status, 404);

  const refreshed = await call('POST', '/auth/refresh', { token: login.data.refresh_token });
  assert.equal(refreshed.status, 200);
  assert.equal((await call('POST', '/auth/logout', { token: refreshed.data.access_token })).status, 204);

  // the phone at login, the export (its parts are schemas of their own), the deletion
  const phoneCode = (await emulatorPost(server.emulatorUrl, '/dev/phone-code', { openid })).code;
  const again = await call('POST', '/auth/login', {
    body: { code: (await emulatorPost(server.emulatorUrl, '/dev/code', { openid })).code, phone_code: phoneCode } });
  assert.equal(again.status, 200);
  check({ $ref: `${REF}PhoneBinding` }, again.data.phone, 'POST /auth/login phone');
  const exported = await call('GET', '/profile/export', { token: again.data.access_token });
  assert.equal(exported.status, 200);
  for (const [name, part] of [['ExportAccount', exported.data.account], ['ExportUser', exported.data.users[0]],
    ['ExportSession', exported.data.sessions[0]], ['ExportLoginEvent', exported.data.login_events[0]]]) {
    check({ $ref: `${REF}${name}` }, part, `GET /profile/export ${name}`);
  }
  // a service client introspects a live token and a logged-out one (RFC 7662), and fails
  const added = server.flask('clients', 'add', `svc-${process.pid}`, '--scope', 'introspect');
  const client = [/^client_id\s+(\S+)$/m, /^secret\s+(\S+)$/m].map((re) => added.match(re)[1]);
  const live = await call('POST', '/oauth/introspect', {
    basic: client, urlencoded: { token: again.data.access_token, token_type_hint: 'access_token' } });
  assert.equal(live.status, 200);
  assert.equal(live.data.active, true);
  const dead = await call('POST', '/oauth/introspect', { basic: client, urlencoded: { token: token } });
  assert.deepEqual(dead.data, { active: false });
  assert.equal((await call('POST', '/oauth/introspect', {
    basic: [client[0], 'wrong'], urlencoded: { token } })).status, 401);

  // a service client with scope wechat_token gets the server's WeChat access_token
  const pusher = server.flask('clients', 'add', `push-${process.pid}`, '--scope', 'wechat_token');
  const pusherCredentials = [/^client_id\s+(\S+)$/m, /^secret\s+(\S+)$/m].map((re) => pusher.match(re)[1]);
  const wechatToken = await call('GET', '/oauth/wechat/access_token', { basic: pusherCredentials });
  assert.equal(wechatToken.status, 200);
  assert.ok(wechatToken.data.expires_in > 0);
  assert.equal((await call('GET', '/oauth/wechat/access_token', { basic: client })).status, 401);

  // the discovery document and the key set, public, for the team's other services
  const discovery = await call('GET', '/.well-known/openid-configuration');
  assert.equal(discovery.status, 200);
  const jwks = await call('GET', '/.well-known/jwks.json');
  assert.equal(jwks.status, 200);
  assert.ok(jwks.data.keys.length >= 1);
  for (const key of jwks.data.keys) check({ $ref: `${REF}Jwk` }, key, 'a published key');

  const confirm = (await emulatorPost(server.emulatorUrl, '/dev/code', { openid })).code;
  assert.equal((await call('DELETE', '/profile', { token: again.data.access_token, body: { code: confirm } })).status, 204);

  assert.deepEqual([...validated].sort(), Object.keys(doc.components.schemas).sort());
});

test("the kit's types are the document's: problem codes and shapes (kit/types/server.d.ts)", () => {
  const expected = openapiTypes.render(doc);
  const actual = fs.readFileSync(openapiTypes.TARGET, 'utf8');
  assert.ok(actual === expected, 'miniprogram/kit/types/server.d.ts differs from the OpenAPI '
    + 'document (a problem code or a shape changed): run node miniprogram/test/openapi-types.js --write');
  assert.ok(doc.components.schemas.Problem.properties.code.enum.every(
    (code) => actual.includes(`| '${code}'`)));
});
