'use strict';
/**
 * The type-check: tsc --checkJs with @types/google-apps-script accepts the
 * add-on, rejects deliberate misuses of Apps Script APIs, and checks the
 * sidebar's browser script against the DOM types.
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

test('the sidebar and settings scripts type-check against the DOM', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ic-client-'));
  const files = [];
  for (const name of ['JavaScript.html', 'Settings.html']) {
    const html = fs.readFileSync(path.join(ADDON, name), 'utf8');
    const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]);
    assert.ok(scripts.length, name + ' has a script');
    const file = path.join(dir, name.replace('.html', '.client.js'));
    // Each file is its own module scope, as each HTML page is.
    fs.writeFileSync(file, scripts.join('\n') + '\nexport {};\n');
    files.push(file);
  }
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { allowJs: true, checkJs: true, noEmit: true, target: 'ES2020', lib: ['ES2020', 'DOM'], types: [], skipLibCheck: true },
    files: [path.join(__dirname, 'fixtures', 'client', 'google-script-client.d.ts'), ...files],
  }));
  const r = tsc(['-p', path.join(dir, 'tsconfig.json')]);
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, r.out);
});
