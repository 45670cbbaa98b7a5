'use strict';
/**
 * The add-on without the real API: menu, authorisation, settings, which tab,
 * currencies from cell formats, where the Google token goes, the time-budget
 * loop, the daily run, plain-words errors and the write-back details. A
 * scripted server in a child process gives the answers the real API cannot be
 * made to give on demand, and records every request it gets.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const { createAddonEnv, FakeSpreadsheet, FakeRichTextValue, formatDate, parseDate, manifestScopes } = require('./support/gas_fakes');
const { exampleSpreadsheet, allDueSpreadsheet, dateCell } = require('./support/sheets');
const { driveRun } = require('./support/drive');

const NOW = '2026-11-24T12:00:00Z';
const TODAY = '2026-11-24';
const CANNED = 'https://canned.invoice-collector.test';
const nowhere = { IC_API_URL: 'https://down.invoice-collector.test', IC_API_KEY: 'k' };
const closedPort = { 'https://down.invoice-collector.test': 'http://127.0.0.1:9' };

/**
 * Starts the scripted server in its own process; resolves {network, requests, stop}.
 * `requests` fills with every request the server got (method, url, headers, body).
 */
function canned(routes) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'support', 'canned_server.js'), JSON.stringify(routes)], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.on('error', reject);
    const requests = [];
    let port = null;
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (port !== null) { requests.push(JSON.parse(line)); return; }
      port = line.trim();
      resolve({
        network: { [CANNED]: 'http://127.0.0.1:' + port },
        requests,
        settings: { IC_API_URL: CANNED, IC_API_KEY: 'k' },
        // Lines arrive asynchronously; give them a moment after the last call.
        settle: () => new Promise((r) => setTimeout(r, 100)),
        stop: () => new Promise((r) => { child.once('exit', r); child.kill(); }),
      });
    });
  });
}

const plan = (rows) => ({ status: 200, body: { today: TODAY, timezone: 'UTC', summary: {}, totals: [], rows } });

test('the fake Utilities formats and parses dates in a zone like Apps Script', () => {
  const d = new Date('2026-11-24T12:00:00Z');
  assert.equal(formatDate(d, 'Pacific/Auckland', 'yyyy-MM-dd HH:mm'), '2026-11-25 01:00');
  assert.equal(formatDate(d, 'America/Los_Angeles', 'yyyy-MM-dd HH:mm Z'), '2026-11-24 04:00 -0800');
  assert.equal(parseDate('2026-11-25', 'Pacific/Auckland', 'yyyy-MM-dd').toISOString(), '2026-11-24T11:00:00.000Z');
  assert.equal(parseDate('2026-07-01', 'Pacific/Auckland', 'yyyy-MM-dd').toISOString(), '2026-06-30T12:00:00.000Z');
});

test('onOpen in AuthMode.NONE builds the Invoice Collector menu and touches nothing that needs authorisation', () => {
  const { env, context } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), authMode: 'NONE' });
  // The fakes throw for properties, the sheet, the network and triggers in NONE.
  context.onOpen({ authMode: 'NONE' });
  context.onInstall({ authMode: 'NONE' });
  assert.equal(env.ui.menus.length, 2);
  const captions = env.ui.menus[0].items.filter((i) => !i.separator).map((i) => i.caption);
  assert.deepEqual(captions, ['Open sidebar', 'Preview today', 'Generate today\'s drafts', 'Settings', 'Install daily trigger']);
  for (const item of env.ui.menus[0].items.filter((i) => !i.separator)) {
    assert.equal(typeof context[item.fn], 'function', item.fn + ' must exist');
  }
  assert.equal(env.fetches.length, 0);
});

test('the sidebar is 300 px wide, titled, and inlines its stylesheet and script', () => {
  const { env, context } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW });
  context.menuGenerateToday();
  const html = env.ui.sidebars[0];
  assert.equal(html.getWidth(), 300);
  assert.equal(html.getTitle(), 'Invoice Collector');
  const content = html.getContent();
  assert.match(content, /<link rel="stylesheet" href="https:\/\/ssl\.gstatic\.com\/docs\/script\/css\/add-ons1\.css">/);
  assert.match(content, /<style>/);
  assert.match(content, /google\.script\.run/);
  // SidebarModel.html before SidebarView.html, which uses it.
  assert.ok(content.indexOf('var SidebarModel =') > 0 && content.indexOf('var SidebarModel =') < content.indexOf('var M = SidebarModel;'), 'the model is inlined before the view');
  assert.match(content, /data-auto-start="generate"/);
  assert.doesNotMatch(content, /<\?/, 'no scriptlet left unevaluated');
  context.showSettings();
  assert.match(env.ui.dialogs[0].html.getContent(), /Test connection/);
});

test('Settings keep each user\'s key in their user properties, the sheet\'s tab and currency in the document, and refuse anything but https', () => {
  const ss = exampleSpreadsheet('UTC');
  const alice = createAddonEnv({ spreadsheet: ss, user: 'alice@example.com' });
  for (const bad of ['http://invoices.example.com', 'http://localhost:8000', 'http://127.0.0.1:8000', 'invoices.example.com']) {
    assert.throws(() => alice.call('saveSettings', { apiUrl: bad, apiKey: 'x' }), /must start with https:\/\//, bad);
  }
  const saved = alice.call('saveSettings', { apiUrl: 'https://invoices.example.com/', apiKey: ' secret ', defaultCurrency: 'eur' });
  assert.deepEqual([saved.apiUrl, saved.hasKey, saved.defaultCurrency], ['https://invoices.example.com', true, 'EUR']);
  assert.equal(alice.env.stores.user.get('IC_API_KEY'), 'secret');
  // An empty key field keeps the saved key; the key never goes back to the browser.
  alice.call('saveSettings', { apiUrl: 'https://other.example.com', apiKey: '', defaultCurrency: 'EUR' });
  assert.equal(alice.env.stores.user.get('IC_API_KEY'), 'secret');
  assert.equal(JSON.stringify(alice.call('getSettings')).includes('secret'), false);
  assert.throws(() => alice.call('saveSettings', { apiUrl: 'https://x.example.com', defaultCurrency: 'euro' }), /three-letter code/);
  // Another editor of the same sheet: their own (empty) key, the sheet's currency.
  const bob = createAddonEnv({ spreadsheet: ss, user: 'bob@example.com' });
  const theirs = bob.call('getSettings');
  assert.deepEqual([theirs.apiUrl, theirs.hasKey, theirs.defaultCurrency], ['', false, 'EUR']);
  assert.equal(bob.call('getSidebarState').configured, false);
  assert.equal(alice.call('getSidebarState').configured, true);
});

test('the active tab wins when it has the invoice headers; else the tab chosen in Settings; the sidebar names it', () => {
  const header = ['invoice_id', 'client_name', 'client_email', 'amount', 'due_date'];
  const ss = new FakeSpreadsheet({ id: 'two-years', timeZone: 'UTC', sheets: {
    2025: [header, ['A-1', 'Old Client', 'old@example.com', 10, dateCell('2025-06-01', 'UTC')]],
    2026: [header, ['B-1', 'New Client', 'new@example.com', 20, dateCell('2026-11-10', 'UTC')]],
    Notes: [['anything']],
  } });
  const { call } = createAddonEnv({ spreadsheet: ss, now: NOW, userProperties: nowhere });
  ss.getSheetByName('2025').activate();
  assert.equal(call('beginRun', 'preview').sheetName, '2025');
  // Working on 2025 once does not make it win over the tab the person is on now.
  ss.getSheetByName('2026').activate();
  assert.equal(call('beginRun', 'preview').sheetName, '2026');
  assert.equal(call('getSidebarState').sheetName, '2026');
  // From a tab without the headers: two candidates, so the person must choose.
  ss.getSheetByName('Notes').activate();
  assert.throws(() => call('beginRun', 'preview'), /2 tabs do \(“2025”, “2026”\)\. Open the tab to work on, or choose it in Invoice Collector › Settings/);
  assert.match(call('getSidebarState').sheetProblem, /choose it in Invoice Collector › Settings/);
  const settings = call('getSettings');
  assert.deepEqual(settings.tabs.map((t) => t.name), ['2025', '2026']);
  call('saveSettings', { apiUrl: nowhere.IC_API_URL, sheetId: settings.tabs[1].id });
  assert.equal(call('beginRun', 'preview').sheetName, '2026');
  // A rename does not lose the choice: it is kept by sheet id.
  ss.getSheetByName('2026').setName('Invoices 2026');
  assert.equal(call('getSidebarState').sheetName, 'Invoices 2026');
});

test('a cell\'s number format tells its currency: [$€], £, [$CHF], [$¥-411], quoted signs; none gives ""', () => {
  const { context } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC') });
  const cases = {
    '[$€]#,##0.00': 'EUR', '#,##0.00 [$€]': 'EUR', '[$€-407] #,##0.00': 'EUR', '"€"#,##0.00': 'EUR', '\\€#,##0': 'EUR',
    '£#,##0.00': 'GBP', '[$CHF] #,##0.00': 'CHF', '[$¥-411]#,##0': 'JPY', '[$¥-804]#,##0.00': 'CNY', '[$R$] #,##0.00': 'BRL',
    '"$"#,##0.00': 'USD', '[$$-C09]#,##0.00': 'AUD', '$#,##0.00_);($#,##0.00)': 'USD', '[$kr-41D] #,##0': 'SEK',
    '0.###############': '', '#,##0.00': '', '0.00%': '', '[$-409]mmmm d, yyyy': '', 'yyyy-mm-dd': '',
  };
  for (const [format, code] of Object.entries(cases)) assert.equal(context.currencyOfFormat_(format), code, format);
  assert.equal(context.currencyOfText_('$2,480.00'), 'USD');
  assert.equal(context.currencyOfText_('1.250,00 €'), 'EUR');
  assert.equal(context.currencyOfText_('1,234.50 EUR'), 'EUR');
  assert.equal(context.currencyOfText_('1,234.50'), '');
});

test('the Google token goes to /v1/drafts only: not to Test connection, not to Preview (every request\'s headers recorded)', async () => {
  const server = await canned({
    'GET /healthz': { status: 200, body: { status: 'ok' } },
    'GET /v1/templates': { status: 200, body: { stages: [{ stage: 7 }, { stage: 14 }] } },
    'POST /v1/plan': { status: 200, body: { summary: {}, totals: [] }, echoRows: { action: 'skip', reason: 'not_due' } },
    'POST /v1/drafts': { status: 200, body: { summary: {}, totals: [], remaining: 0 }, echoRows: { action: 'skip', reason: 'not_due' } },
  });
  try {
    const { call } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW, userProperties: server.settings, network: server.network });
    assert.equal(call('testConnection', { apiUrl: CANNED }).ok, true);
    driveRun(call, 'preview');
    driveRun(call, 'generate');
    await server.settle();
    const seen = server.requests.map((r) => [r.method + ' ' + r.url, r.headers['x-google-access-token'] || null]);
    assert.deepEqual(seen, [
      ['GET /healthz', null], ['GET /v1/templates', null], ['POST /v1/plan', null],
      ['POST /v1/drafts', 'ya29.token-of-owner'],
    ]);
    assert.ok(server.requests.slice(1).every((r) => r.headers.authorization === 'Bearer k'), 'the API key goes with every /v1 call');
  } finally {
    await server.stop();
  }
});

test('Generate asks for a missing Gmail permission first: the menu shows Google\'s prompt, the sidebar says where it is', () => {
  const noGmail = manifestScopes().filter((s) => !s.endsWith('/gmail.compose'));
  const { env, call } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW, userProperties: nowhere, user: { email: 'carol@example.com', scopes: noGmail } });
  assert.throws(() => call('beginRun', 'generate'), /^Error: Invoice Collector may not create Gmail drafts for you yet\. Choose Extensions › Invoice Collector › Generate today's drafts: Google asks for permission — allow "Manage drafts and send emails"/);
  assert.throws(() => call('menuGenerateToday'), /Authorization is required/);
  assert.deepEqual(env.authPrompts.at(-1), ['https://www.googleapis.com/auth/gmail.compose'], 'the prompt asks for what is missing');
  assert.equal(env.ui.sidebars.length, 0, 'nothing runs before permission');
  assert.equal(call('beginRun', 'preview').mode, 'preview', 'a preview needs no Gmail');
});

test('a chunk the server had no time for is sent again until nothing remains, and every row is written once it is drafted', async () => {
  const ss = allDueSpreadsheet(5, 'UTC', TODAY, 'budget-canned');
  const server = await canned({
    'POST /v1/drafts': [
      { status: 200, body: { summary: {}, totals: [], remaining: 3 }, echoRows: {}, draftFirst: 2, today: TODAY },
      { status: 200, body: { summary: {}, totals: [], remaining: 1 }, echoRows: {}, draftFirst: 4, today: TODAY },
      { status: 200, body: { summary: {}, totals: [], remaining: 0 }, echoRows: {}, draftFirst: 5, today: TODAY },
    ],
  });
  try {
    const { call } = createAddonEnv({ spreadsheet: ss, now: NOW, userProperties: server.settings, network: server.network });
    const { passes, rows } = driveRun(call, 'generate');
    assert.deepEqual(passes.map((p) => p.remaining), [3, 1, 0]);
    assert.deepEqual(passes[0].rows.map((r) => r.reason), ['drafted', 'drafted', 'time_budget', 'time_budget', 'time_budget']);
    assert.ok(rows.every((r) => r.action === 'draft' && r.draft_url));
    const sheet = ss.getSheetByName('Invoices');
    for (let row = 2; row <= 6; row++) assert.equal(sheet.value(row, 7), 7, 'row ' + row + ' written');
    // Rows not attempted yet are left alone in the sheet.
    assert.equal(passes[0].written, 2);
  } finally {
    await server.stop();
  }
});

test('an answer without "remaining" (a server from before the time budget) is one pass', async () => {
  const server = await canned({ 'POST /v1/drafts': { status: 200, body: { summary: {}, totals: [] }, echoRows: {}, draftFirst: 99, today: TODAY } });
  try {
    const { call } = createAddonEnv({ spreadsheet: allDueSpreadsheet(3, 'UTC', TODAY), now: NOW, userProperties: server.settings, network: server.network });
    assert.deepEqual(driveRun(call, 'generate').passes.map((p) => p.remaining), [0]);
  } finally {
    await server.stop();
  }
});

test('the daily run: one per document whoever installs it, a Remove any editor can use, and a removed trigger retires itself', () => {
  const ss = exampleSpreadsheet('Pacific/Auckland', { id: 'daily-owners' });
  const alice = createAddonEnv({ spreadsheet: ss, now: NOW, user: 'alice@example.com', userProperties: nowhere, network: closedPort });
  const bob = createAddonEnv({ spreadsheet: ss, now: NOW, user: 'bob@example.com', userProperties: nowhere, network: closedPort });
  assert.equal(alice.call('installDailyTrigger').installed, true);
  assert.match(alice.call('installDailyTrigger').message, /already installed/);
  const second = bob.call('installDailyTrigger');
  assert.equal(second.installed, false);
  assert.match(second.message, /Another editor installed the daily run on 2026-11-25 \(tab “Invoices”\); it runs as them/);
  assert.equal(ss.project.triggers.length, 1);
  const [t] = ss.project.triggers;
  assert.deepEqual({ h: t.handler, d: t.everyDays, hour: t.atHour, tz: t.timezone, owner: t.owner },
    { h: 'runDailyGeneration', d: 1, hour: 7, tz: 'Pacific/Auckland', owner: 'alice@example.com' });
  assert.equal(bob.call('getSidebarState').daily.installed, true);
  assert.equal(bob.call('getSidebarState').daily.mine, false);
  assert.equal(alice.call('getSidebarState').daily.mine, true);
  // Bob removes it: he cannot delete Alice's trigger, but it stands down when it fires.
  assert.match(bob.call('removeDailyTrigger').message, /installed by another editor: it stops at its next start/);
  assert.equal(bob.call('getSidebarState').daily.installed, false);
  const retired = alice.call('runDailyGeneration', { triggerUid: t.id });
  assert.match(retired.message, /no longer the daily run/);
  assert.equal(alice.env.fetches.length, 0, 'a retired trigger drafts nothing');
  assert.equal(ss.project.triggers.length, 0);
  // Bob installs his own; Alice's Remove deletes the record, Bob's trigger retires.
  assert.equal(bob.call('installDailyTrigger').installed, true);
  assert.equal(ss.project.triggersOf('bob@example.com').length, 1);
  assert.match(bob.call('removeDailyTrigger').message, /^Removed\. No more daily runs\.$/);
  assert.equal(ss.project.triggers.length, 0, 'the owner\'s Remove deletes the trigger at once');
});

test('a failing daily run records its error for the sidebar, then throws so Google emails the owner', async () => {
  const server = await canned({ 'POST /v1/drafts': { status: 503, body: { error: { code: 'unavailable', message: 'down' } } } });
  try {
    const ss = exampleSpreadsheet('UTC', { id: 'daily-fails' });
    const { call } = createAddonEnv({ spreadsheet: ss, now: NOW, userProperties: server.settings, network: server.network });
    call('installDailyTrigger');
    const [t] = ss.project.triggers;
    assert.throws(() => call('runDailyGeneration', { triggerUid: t.id }), /^Error: Invoice Collector daily run failed: The server had a problem \(HTTP 503\)/);
    const last = JSON.parse(ss.project.docGet('IC_LAST_DAILY_RUN'));
    assert.equal(last.failed, true);
    assert.match(last.message, /HTTP 503/);
    assert.match(call('getSidebarState').daily.lastRun.message, /HTTP 503/);
  } finally {
    await server.stop();
  }
});

test('a daily run whose server never finishes a chunk fails instead of looping, and Gmail refusing fails it too', async () => {
  const server = await canned({
    'POST /v1/drafts': { status: 200, body: { summary: {}, totals: [], remaining: 5 }, echoRows: {}, draftFirst: 0, today: TODAY },
  });
  const refused = await canned({
    'POST /v1/drafts': { status: 200, body: { summary: {}, totals: [], stopped: 'gmail_unauthorized' }, echoRows: { action: 'error', reason: 'gmail_unauthorized', message: 'Gmail refused the token.', retryable: true } },
  });
  try {
    const ss = allDueSpreadsheet(5, 'UTC', TODAY, 'daily-stuck');
    const { call } = createAddonEnv({ spreadsheet: ss, now: NOW, userProperties: server.settings, network: server.network });
    call('installDailyTrigger');
    assert.throws(() => call('runDailyGeneration', { triggerUid: ss.project.triggers[0].id }), /kept answering that 5 drafts remain/);
    const other = allDueSpreadsheet(5, 'UTC', TODAY, 'daily-refused');
    const env2 = createAddonEnv({ spreadsheet: other, now: NOW, userProperties: refused.settings, network: refused.network });
    env2.call('installDailyTrigger');
    assert.throws(() => env2.call('runDailyGeneration', { triggerUid: other.project.triggers[0].id }), /daily run failed: Gmail did not accept your permission/);
    assert.equal(JSON.parse(other.project.docGet('IC_LAST_DAILY_RUN')).failed, true);
  } finally {
    await server.stop();
    await refused.stop();
  }
});

test('a server that cannot be reached is reported in plain words', () => {
  const { call } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW, userProperties: nowhere, network: closedPort });
  const run = call('beginRun', 'preview');
  assert.throws(() => call('runChunk', run, 0), /Can't reach the Invoice Collector server at https:\/\/down\.invoice-collector\.test\. Check the address in Settings/);
  const result = call('testConnection', { apiUrl: nowhere.IC_API_URL, apiKey: 'k' });
  assert.equal(result.ok, false);
  assert.match(result.message, /Can't reach/);
});

test('an address outside the manifest urlFetchWhitelist is explained', () => {
  const { call } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW, userProperties: nowhere, urlFetchWhitelist: ['https://invoice-collector.example.com/'] });
  assert.match(call('testConnection', { apiUrl: nowhere.IC_API_URL }).message, /urlFetchWhitelist in appsscript\.json/);
});

test('running before Settings are filled in says what to do', () => {
  const { call } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW });
  assert.throws(() => call('beginRun', 'generate'), /open Invoice Collector › Settings/);
  assert.equal(call('getSidebarState').configured, false);
});

test('server answers the API cannot be made to give on demand become plain words', async () => {
  const busy = { error: { code: 'rate_limited', message: 'slow down' } };
  const server = await canned({
    'POST /v1/plan': { status: 429, body: busy },
    'POST /v1/drafts': { status: 200, body: { summary: {}, totals: [], stopped: 'gmail_unauthorized' }, echoRows: { action: 'error', reason: 'gmail_unauthorized', message: 'Gmail refused the token.' } },
    'GET /healthz': { status: 200, body: '<html>a login page</html>' },
  });
  try {
    const { call, spreadsheet } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW, userProperties: server.settings, network: server.network });
    const preview = call('beginRun', 'preview');
    assert.throws(() => call('runChunk', preview, 0), /busy right now/);
    const generate = call('beginRun', 'generate');
    const chunk = call('runChunk', generate, 0);
    assert.equal(chunk.stopped, 'gmail_unauthorized');
    assert.match(chunk.stoppedMessage, /Gmail did not accept your permission/);
    // Rows the API refused are marked, with the reason, next to the row.
    const status = spreadsheet.getSheetByName('Invoices').value(2, 14);
    assert.match(String(status), /^Not drafted on 2026-11-24: Gmail refused the token\./);
    assert.match(call('testConnection', { apiUrl: CANNED }).message, /not with Invoice Collector data/);
  } finally {
    await server.stop();
  }
});

test('HTTP error codes are explained without jargon', () => {
  const { context } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC') });
  assert.match(context.httpErrorMessage_(401, null, 'u'), /did not accept the API key/);
  assert.match(context.httpErrorMessage_(413, { error: { message: 'too many rows' } }, 'u'), /too large\. The server said: too many rows/);
  assert.match(context.httpErrorMessage_(503, null, 'u'), /never made twice/);
  assert.match(context.httpErrorMessage_(422, { error: { message: 'bad today' } }, 'u'), /could not read .* bad today/);
});

test('write-back keeps formulas and links of rows that did not change, with one write per column block', () => {
  const ss = new FakeSpreadsheet({ timeZone: 'UTC', sheets: { Invoices: [
    ['invoice_id', 'notes', 'last_stage_sent', 'last_sent_at', 'reminder_status'],
    ['A', 'n1', '', '', ''],
    ['B', 'n2', 7, new Date('2026-11-01T00:00:00Z'), 'Drafted stage 7'],
    ['C', 'n3', '', '', ''],
  ] } });
  const sheet = ss.getSheetByName('Invoices');
  sheet.getRange(3, 5).setRichTextValues([[new FakeRichTextValue('Drafted stage 7', [{ start: 0, end: 15, url: 'https://mail.google.com/x' }])]]);
  sheet.getRange(3, 3).setFormula('=7');
  const { context } = createAddonEnv({ spreadsheet: ss, now: NOW });
  ss.log.length = 0;
  const writes = context.planWrites_([
    { row: 2, invoice_id: 'A', action: 'draft', reason: 'drafted', draft_id: 'd', draft_url: 'https://mail.google.com/a', writeback: { last_stage_sent: 14, last_sent_at: '2026-11-24', reminder_status: 'Drafted stage 14' } },
    { row: 3, invoice_id: 'B', action: 'skip', reason: 'stage_already_drafted' },
    { row: 4, invoice_id: 'C', action: 'error', reason: 'invalid_row', message: 'amount: is required' },
  ], 'UTC', '2026-11-24', '', {});
  const outcome = context.writeBack_(sheet, writes, 'UTC');
  assert.deepEqual(JSON.parse(JSON.stringify(outcome)), { written: 2, unwritten: [] });
  const ops = ss.writes().map((w) => w.op + '@' + w.column + 'x' + w.numColumns + ':' + w.row + '+' + w.numRows);
  assert.deepEqual(ops, ['setValues@3x2:2+3', 'setRichTextValues@5x1:2+3']);
  assert.equal(sheet.value(2, 3), 14);
  assert.equal(sheet.value(2, 4).toISOString(), '2026-11-24T00:00:00.000Z');
  assert.equal(sheet._peek(3, 3).formula, '=7', 'skipped row keeps its formula');
  assert.equal(sheet.value(3, 4).toISOString(), '2026-11-01T00:00:00.000Z');
  assert.equal(sheet._peek(3, 5).links[0].url, 'https://mail.google.com/x', 'skipped row keeps its link');
  assert.equal(sheet.value(4, 3), '', 'error row gets no stage');
  assert.equal(sheet.value(4, 5), 'Not drafted on 2026-11-24: amount: is required');
  assert.deepEqual(sheet.value(2, 2), 'n1');
});

test('a row without an invoice id is written where it was only if it is still the same row', () => {
  const ss = new FakeSpreadsheet({ timeZone: 'UTC', sheets: { Invoices: [
    ['invoice_id', 'client_name', 'client_email', 'amount', 'due_date', 'last_stage_sent', 'last_sent_at', 'reminder_status'],
    ['', 'No Id Ltd', 'a@example.com', 5, '2026-11-01'],
    ['', 'Other Ltd', 'b@example.com', 6, '2026-11-01'],
  ] } });
  const sheet = ss.getSheetByName('Invoices');
  const { context } = createAddonEnv({ spreadsheet: ss, now: NOW });
  const read = context.readInvoices_(sheet, context.readLayout_(sheet), 2, 2, 'UTC', 'USD');
  const fingerprints = Object.fromEntries(read.map((r) => [r.row, r.fingerprint]));
  const writes = context.planWrites_([
    { row: 2, action: 'error', reason: 'invalid_row', message: 'invoice_id: is required' },
    { row: 3, action: 'error', reason: 'invalid_row', message: 'invoice_id: is required' },
  ], 'UTC', TODAY, '', fingerprints);
  sheet.sort(2, true); // "No Id Ltd" and "Other Ltd" keep their order...
  sheet.getRange(3, 2).setValue('Other Ltd (renamed)'); // ...but row 3 changed.
  const outcome = context.writeBack_(sheet, writes, 'UTC');
  assert.equal(outcome.written, 1);
  assert.match(sheet.value(2, 8), /invoice_id: is required/);
  assert.equal(sheet.value(3, 8), '');
  assert.deepEqual(JSON.parse(JSON.stringify(outcome.unwritten)).map((u) => u.message), ['Row 3 changed while this ran: its row was not updated.']);
});
