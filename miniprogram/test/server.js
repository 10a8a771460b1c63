/**
 * Starts the real wxauth development server (built-in WeChat emulator at /_wechat) on a free
 * loopback port, in a temporary instance folder, for the mini-program tests.
 */
'use strict';

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

function python() {
  if (process.env.WXAUTH_PYTHON) return process.env.WXAUTH_PYTHON;
  const venv = path.join(ROOT, '.venv', 'bin', 'python');
  return fs.existsSync(venv) ? venv : 'python3';
}

async function startServer(extraEnv = {}) {
  const port = await freePort();
  const instance = fs.mkdtempSync(path.join(os.tmpdir(), 'wxauth-mp-'));
  const env = Object.assign({}, process.env, {
    FLASK_DEBUG: '1', WECHAT_APPID: '', WECHAT_SECRET: '', WECHAT_APPS: '', DATABASE_URL: '',
    JWT_SECRET_KEY: '', SESSION_KEY_ENCRYPTION_KEY: '', REDIS_URL: '',
    WXAUTH_INSTANCE_PATH: instance, LOG_LEVEL: 'WARNING',
  }, extraEnv);
  const py = python();
  await new Promise((resolve, reject) => {
    const up = spawn(py, ['-m', 'flask', '--app', 'wsgi', 'db', 'upgrade'], { cwd: ROOT, env, stdio: 'pipe' });
    let err = '';
    up.stderr.on('data', (d) => { err += d; });
    up.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`db upgrade failed: ${err}`))));
  });
  const child = spawn(py, ['-m', 'flask', '--app', 'wsgi', 'run', '--host', '127.0.0.1',
    '--port', String(port), '--no-reload', '--no-debugger'], { cwd: ROOT, env, stdio: 'pipe', detached: true });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.status === 200) break;
    } catch (e) { /* not up yet */ }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`server did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return {
    url,
    emulatorUrl: `${url}/_wechat`,
    output: () => output,
    /** Run `flask --app wsgi …args` on the server's instance (database); its stdout. */
    flask(...args) {
      const run = spawnSync(py, ['-m', 'flask', '--app', 'wsgi', ...args], { cwd: ROOT, env, encoding: 'utf8' });
      if (run.status !== 0) throw new Error(`flask ${args.join(' ')}: ${run.stderr}`);
      return run.stdout;
    },
    stop() {
      try { process.kill(-child.pid, 'SIGTERM'); } catch (e) { /* gone */ }
      fs.rmSync(instance, { recursive: true, force: true });
    },
  };
}

async function emulatorPost(emulatorUrl, pathname, body) {
  const r = await fetch(`${emulatorUrl}${pathname}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${pathname}: HTTP ${r.status}`);
  return r.json();
}

module.exports = { startServer, emulatorPost };
