'use strict';
/**
 * The type-check: tsc --checkJs with @types/google-apps-script accepts the
 * add-on, rejects deliberate misuses of Apps Script APIs, and checks the
 * sidebar's and the Settings dialog's browser scripts against the DOM types
 * (and the sidebar's model without them).
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ADDON = path.resolve(__dirname, '..');
const TSC = path.join(ADDON, 'node_modules', 'typescript', 'bin', 'tsc');

function tsc(args) {
  const r = spawnSync(process.execPath, [TSC, ...args], { cwd: ADDON, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

test('the add-on type-checks against @types/google-apps-script', () => {
  const r = tsc(['--noEmit', '-p', 'tsconfig.json']);
  assert.equal(r.status, 0, r.out);
});

test('misusing an Apps Script API fails the type-check, at each misuse', () => {
  const fixture = path.join('tests', 'fixtures', 'misuse');
  const r = tsc(['--noEmit', '-p', path.join(fixture, 'tsconfig.json')]);
  assert.notEqual(r.status, 0, 'tsc must reject the misuse fixture');
  const lines = fs.readFileSync(path.join(ADDON, fixture, 'Misuse.js'), 'utf8').split('\n');
  const misuses = lines.map((l, i) => [l, i + 1]).filter(([l]) => l.includes('// MISUSE:'));
  assert.equal(misuses.length, 4);
  for (const [line, number] of misuses) {
    const tag = line.split('// MISUSE:')[1];
    assert.match(r.out, new RegExp('Misuse\\.js\\(' + number + ',\\d+\\): error TS\\d+'), tag + ' (line ' + number + ') must be an error:\n' + r.out);
  }
});

/** The <script> blocks of one of the add-on's HTML files. */
function scriptsOf(name) {
  const html = fs.readFileSync(path.join(ADDON, name), 'utf8');
  return [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]);
}

/** The files Sidebar.html pulls in with <?!= include('Name'); ?>, in page order, that hold a script. */
function sidebarScriptFiles() {
  const html = fs.readFileSync(path.join(ADDON, 'Sidebar.html'), 'utf8');
  const included = [...html.matchAll(/<\?!=\s*include\('([^']+)'\);?\s*\?>/g)].map((m) => m[1] + '.html');
  return included.filter((name) => scriptsOf(name).length);
}

/**
 * Type-checks HTML files that share one page: each file's scripts become one
 * global script (as <script> blocks share a page's global scope), so a later
 * file sees what an earlier one declares and an error names its own file.
 */
function checkPage(names, lib) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ic-client-'));
  try {
    const files = names.map((name) => {
      const scripts = scriptsOf(name);
      assert.ok(scripts.length, name + ' has a script');
      const file = path.join(dir, name.replace('.html', '.client.js'));
      fs.writeFileSync(file, scripts.join('\n'));
      return file;
    });
    const typings = lib.includes('DOM') ? [path.join(__dirname, 'fixtures', 'client', 'google-script-client.d.ts')] : [];
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { allowJs: true, checkJs: true, noEmit: true, target: 'ES2020', lib, types: [], skipLibCheck: true },
      files: [...typings, ...files],
    }));
    return tsc(['-p', path.join(dir, 'tsconfig.json')]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('the sidebar\'s scripts type-check against the DOM, together as the one page they make', () => {
  const names = sidebarScriptFiles();
  assert.deepEqual(names, ['SidebarModel.html', 'SidebarView.html'], 'Sidebar.html includes the model, then the view');
  const r = checkPage(names, ['ES2020', 'DOM']);
  assert.equal(r.status, 0, r.out);
});

test('the sidebar\'s model type-checks with no DOM and no google.script', () => {
  const r = checkPage(['SidebarModel.html'], ['ES2020']);
  assert.equal(r.status, 0, r.out);
});

test('the settings dialog\'s script type-checks against the DOM', () => {
  const r = checkPage(['Settings.html'], ['ES2020', 'DOM']);
  assert.equal(r.status, 0, r.out);
});

test('every HTML file with a script is type-checked', () => {
  const withScripts = fs.readdirSync(ADDON).filter((f) => f.endsWith('.html') && scriptsOf(f).length).sort();
  const checked = [...sidebarScriptFiles(), 'Settings.html'].sort();
  assert.deepEqual(withScripts, checked);
});
