'use strict';
/**
 * Starts the real Invoice Collector API (gunicorn, Maildir drafts, SQLite
 * ledger) on 127.0.0.1 for a test file, and stops it afterwards.
 */
const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const GUNICORN = path.join(REPO_ROOT, '.venv', 'bin', 'gunicorn');
const API_KEY = 'testkey';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

/** Files in the Maildir (new/ and cur/): one per draft. */
function maildirMessages(dir) {
  return ['new', 'cur'].flatMap((sub) => {
    const d = path.join(dir, sub);
    return fs.existsSync(d) ? fs.readdirSync(d).map((f) => path.join(d, f)) : [];
  });
}

/**
 * @param {{env?: Object<string,string>}} [options]
 * @return {Promise<{url: string, apiKey: string, tmp: string, maildir: string, drafts: () => string[],
 *   routes: {plan: boolean, drafts: boolean, templates: boolean}, stop: () => Promise<void>, log: () => string}>}
 */
async function startApi(options) {
  if (!fs.existsSync(GUNICORN)) throw new Error('No API to test against: ' + GUNICORN + ' is missing (run the repo setup first).');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ic-addon-api-'));
  const maildir = path.join(tmp, 'Maildir');
  const port = await freePort();
  const logFile = path.join(tmp, 'gunicorn.log');
  const out = fs.openSync(logFile, 'a');
  const child = spawn(GUNICORN, ['-b', '127.0.0.1:' + port, '-w', '2', '--timeout', '120', 'service.api.app:create_app()'], {
    cwd: REPO_ROOT,
    env: Object.assign({}, process.env, {
      API_KEYS: API_KEY, DRAFTS_BACKEND: 'maildir', MAILDIR_PATH: maildir,
      DATABASE_URL: 'sqlite:///' + path.join(tmp, 'ledger.db'), TIMEZONE: 'UTC',
    }, (options && options.env) || {}),
    stdio: ['ignore', out, out],
  });
  const url = 'http://127.0.0.1:' + port;
  const log = () => fs.readFileSync(logFile, 'utf8');
  const deadline = Date.now() + 30000;
  for (;;) {
    if (child.exitCode !== null) throw new Error('The API exited while starting:\n' + log());
    try {
      const res = await fetch(url + '/healthz');
      if (res.ok) break;
    } catch (ignored) { /* not up yet */ }
    if (Date.now() > deadline) { child.kill('SIGTERM'); throw new Error('The API did not answer /healthz within 30 s:\n' + log()); }
    await new Promise((r) => setTimeout(r, 150));
  }
  const exists = async (method, p) => {
    const res = await fetch(url + p, {
      method, headers: { Authorization: 'Bearer ' + API_KEY, 'Content-Type': 'application/json' },
      body: method === 'POST' ? JSON.stringify({ today: '2026-01-01', timezone: 'UTC', scope: 'probe', invoices: [] }) : undefined,
    });
    return res.status !== 404 && res.status !== 405;
  };
  const routes = { plan: await exists('POST', '/v1/plan'), drafts: await exists('POST', '/v1/drafts'), templates: await exists('GET', '/v1/templates') };
  const cleanup = () => fs.rmSync(tmp, { recursive: true, force: true });
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null) { cleanup(); return resolve(); }
    child.once('exit', () => { cleanup(); resolve(); });
    child.kill('SIGTERM');
  });
  return { url, apiKey: API_KEY, tmp, maildir, drafts: () => maildirMessages(maildir), routes, stop, log };
}

/** Skips a test loudly when the API route it needs is not there yet. */
function needRoute(t, api, route) {
  if (api.routes[route]) return true;
  const why = 'SKIPPED: the API has no /v1/' + route + ' route yet — this test needs the real endpoint.';
  console.warn('\n*** ' + why + ' ***\n');
  t.skip(why);
  return false;
}

module.exports = { startApi, needRoute, REPO_ROOT, API_KEY };
