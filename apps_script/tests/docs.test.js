'use strict';
/**
 * docs/addon.md, run: the guide's commands that can run here, without Google,
 * Docker or a public address. Blocks are found by the `<!-- test:NAME -->`
 * line before them. `sudo` is dropped (the tests are the server's root), and
 * https://invoices.example.com becomes the local server.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { REPO_ROOT, API_ROOT, startGmailEmulator } = require('./support/api_server');

const GUIDE = path.join(REPO_ROOT, 'docs', 'addon.md');
const ADDON = path.resolve(__dirname, '..');
const VENV_BIN = path.join(REPO_ROOT, '.venv', 'bin');
const CLASP = path.join(ADDON, 'node_modules', '.bin', 'clasp');
const PUBLIC = 'https://invoices.example.com';

/** The body of the fenced block after `<!-- test:NAME -->`. */
function block(name) {
  const m = new RegExp('<!-- test:' + name + ' -->\\n```[a-z]*\\n([\\s\\S]*?)\\n```').exec(fs.readFileSync(GUIDE, 'utf8'));
  assert.ok(m, 'docs/addon.md has a block marked test:' + name);
  return m[1];
}

/** Runs a guide block with bash; returns stdout. */
function sh(script, cwd, env) {
  const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script.replace(/\bsudo /g, '')], { cwd, env: Object.assign({}, process.env, env || {}), encoding: 'utf8' });
  assert.equal(r.status, 0, 'guide command failed:\n' + script + '\n' + r.stdout + r.stderr);
  return r.stdout;
}

function readEnvFile(file) {
  return Object.fromEntries(fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

function psql(sql, db) {
  return spawnSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', db || 'postgres', '-tAc', sql], { encoding: 'utf8' });
}

function unavailable(t, why) {
  if (process.env.CI === 'true') assert.fail(why);
  console.warn('\n*** SKIPPED: ' + why + ' ***\n');
  t.skip(why);
}

test('step 1.3\'s settings start the API as the container does: PostgreSQL ledger, Gmail drafts without GMAIL_SENDER, step 1.5\'s checks pass', async (t) => {
  if (psql('select 1').status !== 0) return unavailable(t, 'no PostgreSQL on 127.0.0.1:5432 for the guide\'s ledger');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ic-guide-'));
  sh(block('env'), tmp);
  const env = readEnvFile(path.join(tmp, '.env'));
  assert.equal((fs.statSync(path.join(tmp, '.env')).mode & 0o777).toString(8), '600');
  assert.match(env.API_KEYS, /^[0-9a-f]{64},[0-9a-f]{64}$/, 'two random keys');
  assert.equal(env.DRAFTS_BACKEND, 'gmail');
  assert.equal('GMAIL_SENDER' in env, false, 'no server-wide sender');
  const url = new URL(env.DATABASE_URL);
  assert.deepEqual([url.protocol, url.username, url.host, url.pathname], ['postgresql:', 'invoices', 'db:5432', '/invoices']);
  assert.equal(decodeURIComponent(url.password), env.POSTGRES_PASSWORD);

  // The database compose.yaml makes, here on the local PostgreSQL.
  const db = 'ic_guide_' + process.pid;
  assert.equal(psql("DO $$ BEGIN CREATE ROLE invoices LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; ALTER ROLE invoices PASSWORD '" + env.POSTGRES_PASSWORD + "'").status, 0);
  assert.equal(psql('CREATE DATABASE ' + db + ' OWNER invoices').status, 0);
  const gmail = await startGmailEmulator(['ya29.token-of-bookkeeper']);
  const port = 20000 + (process.pid % 20000);
  // The Dockerfile's CMD: the Procfile's web line, with the .env the container gets.
  const child = spawn('sh', ['-c', 'eval "exec $(sed -n \'s/^web: //p\' Procfile)"'], {
    cwd: API_ROOT,
    env: Object.assign({}, process.env, env, {
      DATABASE_URL: env.DATABASE_URL.replace('@db:5432/invoices', '@127.0.0.1:5432/' + db),
      PORT: String(port), PATH: VENV_BIN + path.delimiter + process.env.PATH,
      PYTHONPATH: API_ROOT, GMAIL_API_ENDPOINT: gmail.url, // Google itself is out of reach here
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  try {
    const base = 'http://127.0.0.1:' + port;
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) assert.fail('the API exited at start:\n' + log);
      try { if ((await fetch(base + '/healthz')).ok) break; } catch (ignored) { /* starting */ }
      if (i > 200) assert.fail('the API did not start:\n' + log);
      await new Promise((r) => setTimeout(r, 150));
    }
    const local = (script) => script.split(PUBLIC).join(base);
    const start = block('start').split('\n').filter((l) => l.startsWith('curl'));
    assert.equal(sh(local(start.join('\n')), tmp).trim(), '{"status":"ok"}');
    assert.equal(sh(local(block('check-key')), tmp).trim(), '200');
    // A bookkeeper's first draft: in their own mailbox, with their own token.
    const key = env.API_KEYS.split(',')[1];
    const res = await fetch(base + '/v1/drafts', {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json', 'X-Google-Access-Token': 'ya29.token-of-bookkeeper' },
      body: JSON.stringify({ today: '2026-11-24', timezone: 'Europe/London', scope: 'guide', invoices: [
        { row: 2, invoice_id: 'INV-1', client_name: 'Northwind', client_email: 'ap@northwind.example.com', amount: 1250, due_date: '2026-11-16' },
      ] }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body) + '\n' + log.slice(-3000));
    assert.equal(body.rows[0].action, 'draft', JSON.stringify(body.rows[0]));
    assert.equal((await gmail.state()).drafts, 1, 'the draft is in the mailbox the token opens');
    assert.equal(psql('select count(*) from draft_ledger', db).stdout.trim(), '1', 'the ledger is in PostgreSQL');
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
    await gmail.stop();
    psql('DROP DATABASE IF EXISTS ' + db + ' WITH (FORCE)');
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('step 1.4\'s services: PostgreSQL with a volume, the API built from deploy/Dockerfile on port 8000, Caddy on 443 for the domain', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ic-guide-'));
  try {
    sh(block('compose'), tmp);
    const py = spawnSync(path.join(VENV_BIN, 'python'), ['-c', 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', path.join(tmp, 'compose.yaml')], { encoding: 'utf8' });
    assert.equal(py.status, 0, py.stderr);
    const compose = JSON.parse(py.stdout);
    assert.deepEqual(Object.keys(compose.services), ['db', 'api', 'caddy']);
    const { db, api, caddy } = compose.services;
    assert.match(db.image, /^postgres:/);
    assert.ok(db.volumes.some((v) => v.endsWith(':/var/lib/postgresql/data')), 'the ledger survives restarts');
    assert.equal(db.environment.POSTGRES_PASSWORD, '${POSTGRES_PASSWORD}');
    assert.deepEqual(api.build, { context: '.', dockerfile: 'deploy/Dockerfile' });
    assert.equal(api.env_file, '.env');
    assert.equal(api.depends_on.db.condition, 'service_healthy');
    const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'deploy', 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /PORT=8000/, 'the image serves on 8000');
    assert.match(dockerfile, /Procfile/, 'the image serves the Procfile\'s way');
    assert.match(fs.readFileSync(path.join(REPO_ROOT, 'Procfile'), 'utf8'), /--bind 0\.0\.0\.0:\$\{PORT:-8000\}/);
    assert.ok(caddy.ports.includes('443:443') && caddy.ports.includes('80:80'));
    assert.equal(caddy.environment.DOMAIN, '${DOMAIN}');
    const caddyfile = fs.readFileSync(path.join(tmp, 'Caddyfile'), 'utf8');
    assert.match(caddyfile, /^\{\$DOMAIN\} \{\n\treverse_proxy api:8000\n\}\n$/);
    // What compose fills in comes from step 1.3's .env.
    sh(block('env'), tmp);
    const env = readEnvFile(path.join(tmp, '.env'));
    assert.equal(env.DOMAIN, 'invoices.example.com');
    assert.ok(env.POSTGRES_PASSWORD.length >= 32);
    assert.match(fs.readFileSync(path.join(REPO_ROOT, 'gunicorn.conf.py'), 'utf8'), /^timeout = 60$/m, 'the guide says 60 s');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('steps 2.3–2.5: the whitelist command edits the manifest, and clasp pushes exactly the add-on\'s files', (t) => {
  if (!fs.existsSync(CLASP)) return unavailable(t, 'no clasp in node_modules (npm ci)');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ic-guide-'));
  try {
    fs.cpSync(ADDON, tmp, { recursive: true, filter: (src) => !src.includes('node_modules') });
    // What `clasp create --parentId … --rootDir .` writes (clasp 2.4.2's saveProject).
    const create = block('clasp-create');
    assert.match(create, /clasp create --title "Invoice Collector" --parentId "[^"]+" --rootDir \.$/m);
    fs.writeFileSync(path.join(tmp, '.clasp.json'), JSON.stringify({ scriptId: '1ScriptIdOfTheNewProject0123456789abcdefghijklmnopqrstu', rootDir: '.', parentId: ['1AbC...xyz'] }));
    sh(block('whitelist'), tmp);
    const manifest = JSON.parse(fs.readFileSync(path.join(tmp, 'appsscript.json'), 'utf8'));
    assert.deepEqual(manifest.urlFetchWhitelist, [PUBLIC + '/']);
    assert.deepEqual(manifest.oauthScopes, JSON.parse(fs.readFileSync(path.join(ADDON, 'appsscript.json'), 'utf8')).oauthScopes);
    assert.match(block('push'), /^clasp status\nclasp push --force$/);
    const status = spawnSync(CLASP, ['status', '--json'], { cwd: tmp, encoding: 'utf8', env: Object.assign({}, process.env, { HOME: tmp }) });
    assert.equal(status.status, 0, status.stdout + status.stderr);
    const pushed = JSON.parse(status.stdout).filesToPush.sort();
    assert.deepEqual(block('files').split(/\s+/).filter(Boolean).sort(), pushed, 'the guide lists what clasp pushes');
    assert.deepEqual(pushed, ['Api.js', 'Code.js', 'Currency.js', 'Run.js', 'Settings.html', 'Sheet.js', 'Sidebar.html', 'SidebarModel.html', 'SidebarView.html', 'Stylesheet.html', 'Trigger.js', 'WriteBack.js', 'appsscript.json']);
    const served = JSON.parse(fs.readFileSync(path.join(ADDON, 'tsconfig.json'), 'utf8')).files;
    assert.ok(served.every((f) => pushed.includes(f)), 'every server file the tests load is pushed');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
