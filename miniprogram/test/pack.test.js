/**
 * wxauth-kit the way a user gets it (node --test, Node 20): `npm pack` of miniprogram/kit,
 * `npm install` of the tarball into a temporary project, and then, from that project,
 * - the package: main, types, files, "miniprogram": "miniprogram_dist", no dependencies, and
 *   shipped JavaScript that parses as ES2015 (what WeChat's base library runs without a
 *   build step) with no newer built-ins;
 * - it runs: require('wxauth-kit') logs in against the real server (fake wx), and
 *   require('wxauth-kit/taro') finds Taro through '@tarojs/taro';
 * - it type-checks: one `tsc -b` over three projects, each strict and noEmit — native
 *   (types/wx.ts, against miniprogram-api-typings), uni-app (the README's
 *   `<script setup lang="ts">`, against @dcloudio/types and vue) and Taro (the README's React
 *   page and types/taro-entry.ts, against @tarojs/taro, @tarojs/components and @types/react),
 *   with the versions of miniprogram/test/package-lock.json.
 */
'use strict';

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const { after, before, test } = require('node:test');

const acorn = require('acorn');

const { createWx } = require('./wx-shim.js');
const { createTaro } = require('./fakes.js');
const { startServer } = require('./server.js');

const KIT = path.resolve(__dirname, '..', 'kit');
const README = path.resolve(__dirname, '..', '..', 'README.md');
const TSC = path.join(__dirname, 'node_modules', 'typescript', 'bin', 'tsc');
let project; // the temporary project, inside miniprogram/test so that the typings resolve
let tarball;
let installed; // require() from the temporary project

before(() => {
  project = fs.mkdtempSync(path.join(__dirname, '.pack-'));
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', project],
    { cwd: KIT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  tarball = packed[0];
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'a-mini-program', private: true }));
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error',
    path.join(project, tarball.filename)], { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] });
  installed = createRequire(path.join(project, 'package.json'));
});

after(() => {
  if (project) fs.rmSync(project, { recursive: true, force: true });
});

test('the tarball: package.json fields, the files, no dependencies', () => {
  const files = tarball.files.map((f) => f.path).sort();
  assert.deepEqual(files, ['miniprogram_dist/adapters.js', 'miniprogram_dist/core.js',
    'miniprogram_dist/errors.js', 'miniprogram_dist/index.js', 'package.json', 'README.md', 'taro.d.ts',
    'taro.js', 'types/index.d.ts', 'types/server.d.ts'].sort());
  const pkg = JSON.parse(fs.readFileSync(path.join(project, 'node_modules', 'wxauth-kit', 'package.json'), 'utf8'));
  assert.equal(pkg.main, 'miniprogram_dist/index.js');
  assert.equal(pkg.types, 'types/index.d.ts');
  assert.equal(pkg.miniprogram, 'miniprogram_dist');
  assert.ok(Array.isArray(pkg.files));
  assert.equal(pkg.dependencies, undefined);
  assert.deepEqual(pkg.peerDependenciesMeta, { '@tarojs/taro': { optional: true } });
  assert.deepEqual(fs.readdirSync(path.join(project, 'node_modules')).filter((n) => !n.startsWith('.')),
    ['wxauth-kit']); // nothing else came with it
});

test('the shipped JavaScript is ES2015 with no newer built-ins', () => {
  const root = path.join(project, 'node_modules', 'wxauth-kit');
  const shipped = ['taro.js', ...fs.readdirSync(path.join(root, 'miniprogram_dist'))
    .map((f) => `miniprogram_dist/${f}`)];
  for (const file of shipped) {
    const source = fs.readFileSync(path.join(root, file), 'utf8');
    acorn.parse(source, { ecmaVersion: 2015, sourceType: 'script' }); // throws on async, `?.`, `**`…
    assert.doesNotMatch(source, /\.(finally|includes|padStart|padEnd|flat|flatMap)\(|Object\.(entries|values|fromEntries)\(/,
      `${file} uses a built-in newer than ES2015`);
  }
});

test('require("wxauth-kit") from the project logs in against the real server', async () => {
  const server = await startServer();
  try {
    const { createClient, WxAuthError } = installed('wxauth-kit');
    const wx = createWx({ emulatorUrl: server.emulatorUrl, openid: `o-pack-${process.pid}` });
    const auth = createClient({ baseUrl: server.url, wx });
    assert.equal((await auth.login()).is_new_user, true);
    assert.ok((await auth.request({ url: '/profile' })).id);
    await assert.rejects(auth.request({ url: '/nope' }),
      (e) => e instanceof WxAuthError && e.code === 'not_found');

    // wxauth-kit/taro imports '@tarojs/taro'; Taro's runtime needs its bundler, so the
    // module it resolves to is given a fake Taro here, as the bundler would give the real one
    const taroEntry = installed.resolve('wxauth-kit/taro');
    const taroModule = createRequire(taroEntry).resolve('@tarojs/taro');
    assert.match(taroModule, /node_modules[\\/]@tarojs[\\/]taro[\\/]/);
    const Taro = createTaro({ emulatorUrl: server.emulatorUrl, openid: `o-pack-taro-${process.pid}` });
    require.cache[taroModule] = { id: taroModule, filename: taroModule, loaded: true,
      exports: { default: Taro } };
    try {
      const viaTaro = installed('wxauth-kit/taro').createClient({ baseUrl: server.url });
      assert.equal(viaTaro.platform, 'taro');
      assert.ok((await viaTaro.request({ url: '/profile' })).id);
      assert.equal(Taro.calls.login, 1);
    } finally {
      delete require.cache[taroModule];
    }
  } finally {
    server.stop();
  }
});

/** The fenced block of `lang` after the README's `<!-- type-checked: name … -->` marker. */
function readmeExample(name, lang) {
  const readme = fs.readFileSync(README, 'utf8');
  const match = readme.match(new RegExp(`<!-- type-checked: ${name} [^\\n]*-->\\n\`\`\`${lang}\\n([\\s\\S]*?)\`\`\`\\n`));
  assert.ok(match, `README: no ${lang} example marked type-checked: ${name}`);
  return match[1];
}

test('tsc --strict --noEmit: native, uni-app (README) and Taro (README) against their typings', () => {
  const vue = readmeExample('uni', 'vue');
  const script = vue.match(/<script setup lang="ts">\n([\s\S]*?)<\/script>/);
  assert.ok(script, 'the uni-app example has no <script setup lang="ts">');
  const common = { strict: true, noEmit: true, target: 'es2020', module: 'esnext',
    moduleResolution: 'bundler', forceConsistentCasingInFileNames: true };
  const projects = {
    // a native TypeScript mini-program: only WeChat's typings, and the kit's own .d.ts checked too
    wx: { options: { lib: ['es2020'], types: ['miniprogram-api-typings'], noUnusedLocals: true },
      files: { 'wx.ts': fs.readFileSync(path.join(__dirname, 'types', 'wx.ts'), 'utf8') } },
    // uni-app's Vue 3 template: the dom lib and @dcloudio/types
    uni: { options: { lib: ['es2020', 'dom'], types: ['@dcloudio/types'] },
      files: { 'page.ts': script[1] } },
    // Taro's React template: react-jsx, skipLibCheck (Taro's typings name its build tools)
    taro: { options: { lib: ['es2020', 'dom'], types: [], jsx: 'react-jsx', skipLibCheck: true },
      files: { 'page.tsx': readmeExample('taro', 'tsx'),
        'entry.ts': fs.readFileSync(path.join(__dirname, 'types', 'taro-entry.ts'), 'utf8') } },
  };
  for (const [name, { options, files }] of Object.entries(projects)) {
    const dir = path.join(project, name);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: Object.assign({}, common, options), include: Object.keys(files) }, null, 1));
    for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, file), text);
  }
  try {
    execFileSync(process.execPath, [TSC, '-b', '--force', ...Object.keys(projects)],
      { cwd: project, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    assert.fail(`tsc found errors:\n${error.stdout}${error.stderr}`);
  }
});
