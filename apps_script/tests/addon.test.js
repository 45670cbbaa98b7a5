'use strict';
/**
 * The add-on without the API: menu, authorisation modes, templates, settings,
 * the daily trigger, the sheet helpers, and plain-words errors.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const { createAddonEnv, FakeSpreadsheet, formatDate, parseDate } = require('./support/gas_fakes');
const { exampleSpreadsheet } = require('./support/sheets');

const NOW = '2026-11-24T12:00:00Z';
const configured = { IC_API_URL: 'http://127.0.0.1:9', IC_API_KEY: 'k' };

/** Starts the scripted server in its own process; resolves {url, stop}. */
function canned(routes) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'support', 'canned_server.js'), JSON.stringify(routes)], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.on('error', reject);
    readline.createInterface({ input: child.stdout }).once('line', (port) => resolve({
      url: 'http://127.0.0.1:' + port.trim(),
      stop: () => new Promise((r) => { child.once('exit', r); child.kill(); }),
    }));
  });
}

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
  assert.match(content, /ssl\.gstatic\.com\/docs\/script\/css\/add-ons1\.css/);
  assert.match(content, /<style>/);
  assert.match(content, /google\.script\.run/);
  assert.match(content, /data-auto-start="generate"/);
  assert.doesNotMatch(content, /<\?/, 'no scriptlet left unevaluated');
  context.showSettings();
  assert.match(env.ui.dialogs[0].html.getContent(), /Test connection/);
});

test('settings keep the key in user properties and refuse plain http addresses', () => {
  const { env, call } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC') });
  assert.throws(() => call('saveSettings', { apiUrl: 'http://invoices.example.com', apiKey: 'x' }), /https:\/\//);
  assert.deepEqual(call('saveSettings', { apiUrl: 'https://invoices.example.com/', apiKey: ' secret ' }), { apiUrl: 'https://invoices.example.com', hasKey: true });
  assert.equal(env.stores.user.get('IC_API_KEY'), 'secret');
  // An empty key field keeps the saved key; the key never goes back to the browser.
  assert.deepEqual(call('saveSettings', { apiUrl: 'https://other.example.com', apiKey: '' }), { apiUrl: 'https://other.example.com', hasKey: true });
  assert.equal(env.stores.user.get('IC_API_KEY'), 'secret');
  assert.equal(JSON.stringify(call('getSettings')).includes('secret'), false);
});

test('installing the daily trigger twice leaves exactly one time-driven trigger in the spreadsheet timezone', () => {
  const ss = exampleSpreadsheet('Pacific/Auckland');
  const { env, call } = createAddonEnv({ spreadsheet: ss, now: NOW });
  assert.equal(call('installDailyTrigger').installed, true);
  const again = call('installDailyTrigger');
  assert.equal(again.installed, false);
  assert.match(again.message, /already installed/);
  assert.equal(env.triggers.length, 1);
  assert.deepEqual({ h: env.triggers[0].handler, d: env.triggers[0].everyDays, tz: env.triggers[0].timezone }, { h: 'runDailyGeneration', d: 1, tz: 'Pacific/Auckland' });
  assert.equal(call('getSidebarState').dailyTrigger, true);
});

test('a server that cannot be reached is reported in plain words', () => {
  const { call } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW, userProperties: configured });
  const run = call('beginRun', 'preview');
  assert.throws(() => call('runChunk', run, 0), /Can't reach the Invoice Collector server at http:\/\/127\.0\.0\.1:9\. Check the address in Settings/);
  const result = call('testConnection', { apiUrl: 'http://127.0.0.1:9', apiKey: 'k' });
  assert.equal(result.ok, false);
  assert.match(result.message, /Can't reach/);
});

test('an address outside the manifest urlFetchWhitelist is explained', () => {
  const { call } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW, userProperties: configured, urlFetchWhitelist: ['https://invoice-collector.example.com/'] });
  assert.match(call('testConnection', { apiUrl: 'http://127.0.0.1:9' }).message, /urlFetchWhitelist in appsscript\.json/);
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
    const { call, spreadsheet } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW, userProperties: { IC_API_URL: server.url, IC_API_KEY: 'k' } });
    const preview = call('beginRun', 'preview');
    assert.throws(() => call('runChunk', preview, 0), /busy right now/);
    const generate = call('beginRun', 'generate');
    const chunk = call('runChunk', generate, 0);
    assert.equal(chunk.stopped, 'gmail_unauthorized');
    assert.match(chunk.stoppedMessage, /Gmail permission is missing/);
    // Rows the API refused are marked, with the reason, next to the row.
    const status = spreadsheet.getSheetByName('Invoices').value(2, 14);
    assert.match(String(status), /^Not drafted on 2026-11-24: Gmail refused the token\./);
    assert.match(call('testConnection', { apiUrl: server.url }).message, /not with Invoice Collector data/);
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
  sheet.getRange(3, 5).setRichTextValues([[new (require('./support/gas_fakes').FakeRichTextValue)('Drafted stage 7', [{ start: 0, end: 15, url: 'https://mail.google.com/x' }])]]);
  const { context } = createAddonEnv({ spreadsheet: ss, now: NOW });
  ss.log.length = 0;
  const layout = context.readLayout_(sheet);
  const writes = context.planWrites_([
    { row: 2, action: 'draft', reason: 'due', draft_url: 'https://mail.google.com/a', writeback: { last_stage_sent: 14, last_sent_at: '2026-11-24', reminder_status: 'Drafted stage 14' } },
    { row: 3, action: 'skip', reason: 'stage_already_drafted' },
    { row: 4, action: 'error', reason: 'invalid_row', message: 'amount: is required' },
  ], 'UTC', '2026-11-24', '');
  context.writeResults_(sheet, layout, writes);
  const ops = ss.writes().map((w) => w.op + '@' + w.column + 'x' + w.numColumns + ':' + w.row + '+' + w.numRows);
  assert.deepEqual(ops, ['setValues@3x2:2+3', 'setRichTextValues@5x1:2+3']);
  assert.equal(sheet.value(2, 3), 14);
  assert.equal(sheet.value(2, 4).toISOString(), '2026-11-24T00:00:00.000Z');
  assert.equal(sheet.value(3, 3), 7, 'skipped row keeps its stage');
  assert.equal(sheet.value(3, 4).toISOString(), '2026-11-01T00:00:00.000Z');
  assert.equal(sheet._peek(3, 5).links[0].url, 'https://mail.google.com/x', 'skipped row keeps its link');
  assert.equal(sheet.value(4, 3), '', 'error row gets no stage');
  assert.equal(sheet.value(4, 5), 'Not drafted on 2026-11-24: amount: is required');
  assert.deepEqual(sheet.value(2, 2), 'n1');
});
