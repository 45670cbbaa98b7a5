'use strict';
/**
 * Starts the real Invoice Collector API (gunicorn, Maildir drafts, SQLite
 * ledger — or Gmail drafts against the repository's Gmail emulator) on
 * 127.0.0.1 for a test file, and stops it afterwards.
 *
 * The add-on only accepts https addresses, as Apps Script can only reach
 * public ones; tests give it API_ORIGIN and tell the UrlFetchApp fake which
 * local port answers for it (`network`).
 *
 * IC_API_ROOT runs the API from another checkout (cwd and PYTHONPATH set to
 * it; the repository's .venv still provides gunicorn), e.g. while the one in
 * this working tree is half-edited: `git worktree add /tmp/wt-api HEAD`.
 */
const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const readline = require('node:readline');
const { spawn } = require('node:child_process');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const API_ROOT = process.env.IC_API_ROOT ? path.resolve(process.env.IC_API_ROOT) : REPO_ROOT;
const VENV_BIN = path.join(REPO_ROOT, '.venv', 'bin');
const GUNICORN = path.join(VENV_BIN, 'gunicorn');
const API_KEY = 'testkey';
/** The address the add-on is given: what the API would be behind HTTPS. */
const API_ORIGIN = 'https://api.invoice-collector.test';

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

function pythonEnv(extra) {
  const env = Object.assign({}, process.env, extra || {});
  if (API_ROOT !== REPO_ROOT) env.PYTHONPATH = API_ROOT + (env.PYTHONPATH ? path.delimiter + env.PYTHONPATH : '');
  return env;
}

/**
 * The Gmail API emulator of the Python tests (tests/emulators/gmail.py) in a
 * process of its own; `tokens` are the access tokens it accepts.
 * @param {string[]} tokens
 * @return {Promise<{url: string, state: () => Promise<any>, stop: () => Promise<void>}>}
 */
async function startGmailEmulator(tokens) {
  const port = await freePort();
  const args = ['-m', 'tests.emulators.gmail', '--port', String(port), '--user', 'bookkeeper@example.com'];
  tokens.forEach((t) => args.push('--token', t));
  const child = spawn(path.join(VENV_BIN, 'python'), args, { cwd: API_ROOT, env: pythonEnv(), stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error('the Gmail emulator exited (' + code + ')')));
    readline.createInterface({ input: child.stdout }).once('line', resolve);
  });
  const url = 'http://127.0.0.1:' + port;
  return {
    url,
    state: async () => (await fetch(url + '/_emulator/state')).json(),
    stop: () => new Promise((resolve) => { if (child.exitCode !== null) return resolve(); child.once('exit', resolve); child.kill('SIGTERM'); }),
  };
}

/**
 * @param {{env?: Object<string,string>}} [options]
 * @return {Promise<{url: string, origin: string, network: Object<string,string>, apiKey: string, tmp: string,
 *   maildir: string, drafts: () => string[], routes: {plan: boolean, drafts: boolean, templates: boolean, budget: boolean},
 *   stop: () => Promise<void>, log: () => string}>}
 */
async function startApi(options) {
  if (!fs.existsSync(GUNICORN)) throw new Error('No API to test against: ' + GUNICORN + ' is missing (run the repo setup first).');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ic-addon-api-'));
  const maildir = path.join(tmp, 'Maildir');
  const port = await freePort();
  const logFile = path.join(tmp, 'gunicorn.log');
  const out = fs.openSync(logFile, 'a');
  // gunicorn.conf.py (read from the working directory) sets the worker timeout.
  const child = spawn(GUNICORN, ['-b', '127.0.0.1:' + port, '-w', '2', 'service.api.app:create_app()'], {
    cwd: API_ROOT,
    env: pythonEnv(Object.assign({
      API_KEYS: API_KEY, DRAFTS_BACKEND: 'maildir', MAILDIR_PATH: maildir,
      DATABASE_URL: 'sqlite:///' + path.join(tmp, 'ledger.db'), TIMEZONE: 'UTC',
    }, (options && options.env) || {})),
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
  const probe = async (method, p) => {
    const res = await fetch(url + p, {
      // An empty sheet: nothing is drafted, whatever the token.
      method, headers: { Authorization: 'Bearer ' + API_KEY, 'Content-Type': 'application/json', 'X-Google-Access-Token': 'probe' },
      body: method === 'POST' ? JSON.stringify({ today: '2026-01-01', timezone: 'UTC', scope: 'probe', invoices: [] }) : undefined,
    });
    return { exists: res.status !== 404 && res.status !== 405, body: await res.json().catch(() => null) };
  };
  const drafts = await probe('POST', '/v1/drafts');
  const routes = {
    plan: (await probe('POST', '/v1/plan')).exists,
    drafts: drafts.exists,
    templates: (await probe('GET', '/v1/templates')).exists,
    // The time budget of /v1/drafts: its answer says how many rows remain.
    budget: !!drafts.body && typeof drafts.body.remaining === 'number',
  };
  const cleanup = () => fs.rmSync(tmp, { recursive: true, force: true });
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null) { cleanup(); return resolve(); }
    child.once('exit', () => { cleanup(); resolve(); });
    child.kill('SIGTERM');
  });
  return {
    url, origin: API_ORIGIN, network: { [API_ORIGIN]: url }, apiKey: API_KEY, tmp, maildir,
    drafts: () => maildirMessages(maildir), routes, stop, log,
  };
}

const WHAT = {
  plan: 'POST /v1/plan', drafts: 'POST /v1/drafts', templates: 'GET /v1/templates',
  budget: 'time budget on /v1/drafts (no "remaining" count in its answer)',
};

/**
 * Skips a test loudly when the API lacks what it needs — and fails it under
 * CI=true, where a missing route is a broken build, not work in progress.
 */
function needRoute(t, api, route) {
  if (api.routes[route]) return true;
  const why = 'the API has no ' + WHAT[route] + ' — this test needs it.';
  if (process.env.CI === 'true') assert.fail('MISSING under CI: ' + why);
  console.warn('\n*** SKIPPED: ' + why + ' ***\n');
  t.skip(why);
  return false;
}

const assert = require('node:assert/strict');

module.exports = { startApi, startGmailEmulator, needRoute, REPO_ROOT, API_ROOT, API_KEY, API_ORIGIN };
