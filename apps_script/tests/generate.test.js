'use strict';
/**
 * The add-on against the real API (gunicorn on 127.0.0.1, Maildir drafts,
 * SQLite ledger), with UrlFetchApp making real HTTP calls.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const { createAddonEnv, parseDate } = require('./support/gas_fakes');
const { exampleSpreadsheet, exampleTable, bigSpreadsheet } = require('./support/sheets');
const { startApi, needRoute } = require('./support/api_server');
const { driveRun } = require('./support/drive');

const NOW = '2026-11-24T12:00:00Z'; // 2026-11-24 in UTC, already 2026-11-25 in Auckland.
let api;

test.before(async () => { api = await startApi(); });
test.after(async () => { if (api) await api.stop(); });

function addon(spreadsheet, extra) {
  return createAddonEnv(Object.assign({
    spreadsheet, now: NOW, userProperties: { IC_API_URL: api.origin, IC_API_KEY: api.apiKey }, network: api.network,
  }, extra || {}));
}

/** Column number (1-based) of a header in the fake sheet. */
function col(sheet, name) {
  const headers = sheet.snapshot()[0].map((c) => c.value);
  const i = headers.indexOf(name);
  assert.ok(i >= 0, 'column ' + name);
  return i + 1;
}

const rowOf = (rows, id) => rows.filter((r) => r.invoice_id === id);

test('preview sends each row keyed by its header, dates as YYYY-MM-DD in the sheet\'s timezone, and writes nothing', (t) => {
  if (!needRoute(t, api, 'plan')) return;
  const ss = exampleSpreadsheet('UTC', { id: 'preview-utc' });
  const { env, call } = addon(ss);
  const { rows } = driveRun(call, 'preview');
  assert.equal(ss.writes().length, 0, 'preview writes no cell');
  const sent = env.fetches.filter((f) => f.url.endsWith('/v1/plan'));
  assert.equal(sent.length, 1);
  const body = sent[0].body;
  assert.deepEqual({ today: body.today, timezone: body.timezone, scope: body.scope }, { today: '2026-11-24', timezone: 'UTC', scope: 'preview-utc' });
  assert.equal(sent[0].headers.Authorization, 'Bearer testkey');
  assert.equal(sent[0].headers['X-Google-Access-Token'], undefined, 'a preview gets no Google token');
  const first = body.invoices.find((i) => i.invoice_id === 'INV-1001');
  assert.equal(first.row, 2);
  assert.equal(first.due_date, '2026-11-16');
  assert.equal(first.amount, 1250, 'numbers leave as numbers');
  assert.equal(first.amount_paid, '', 'blanks leave as ""');
  assert.equal(body.invoices.find((i) => i.invoice_id === 'INV-1002').amount, '$2,480.00');
  assert.equal(body.invoices.find((i) => i.invoice_id === 'INV-1002').last_sent_at, '2026-11-17');
  // Both copies of a duplicated id are errors, found across the whole sheet.
  const dupes = rowOf(rows, 'INV-1022');
  assert.deepEqual(dupes.map((r) => [r.action, r.reason]), [['error', 'duplicate_invoice_id'], ['error', 'duplicate_invoice_id']]);
  assert.equal(body.invoices.some((i) => i.invoice_id === 'INV-1022'), false, 'duplicates are not sent');
  assert.deepEqual(rowOf(rows, 'INV-1001').map((r) => [r.stage, r.days_overdue, r.action]), [[7, 8, 'draft']]);
  assert.equal(rowOf(rows, 'INV-1020')[0].action, 'error');
  assert.match(rowOf(rows, 'INV-1020')[0].message, /email/);
  assert.equal(rows.length, exampleTable().length - 1, 'one result per invoice row');
});

test('a spreadsheet in Pacific/Auckland sends Auckland dates and Auckland\'s today', (t) => {
  if (!needRoute(t, api, 'plan')) return;
  const ss = exampleSpreadsheet('Pacific/Auckland', { id: 'preview-akl' });
  const { env, call } = addon(ss);
  const { rows, run } = driveRun(call, 'preview');
  assert.equal(run.today, '2026-11-25');
  const body = env.fetches[0].body;
  assert.equal(body.today, '2026-11-25');
  assert.equal(body.timezone, 'Pacific/Auckland');
  assert.equal(body.invoices.find((i) => i.invoice_id === 'INV-1001').due_date, '2026-11-16');
  assert.deepEqual(rowOf(rows, 'INV-1001').map((r) => r.days_overdue), [9]);
});

test('a wrong API key is reported in plain words', (t) => {
  if (!needRoute(t, api, 'plan')) return;
  const { call } = createAddonEnv({ spreadsheet: exampleSpreadsheet('UTC'), now: NOW, userProperties: { IC_API_URL: api.origin, IC_API_KEY: 'wrong' }, network: api.network });
  const run = call('beginRun', 'preview');
  assert.throws(() => call('runChunk', run, 0), /did not accept the API key/);
  const check = call('testConnection', { apiUrl: api.origin });
  assert.equal(check.ok, false);
  assert.match(check.message, /did not accept the API key/);
  if (api.routes.templates) assert.equal(call('testConnection', { apiUrl: api.origin, apiKey: api.apiKey }).ok, true);
});

test('Generate drafts due invoices, writes stage, date and a linked status next to each, and touches nothing else', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = exampleSpreadsheet('UTC', { id: 'generate-utc' });
  const sheet = ss.getSheetByName('Invoices');
  const before = sheet.snapshot();
  const { env, call } = addon(ss);
  const draftsBefore = api.drafts().length;
  const { rows } = driveRun(call, 'generate');
  const drafted = rows.filter((r) => r.action === 'draft');
  assert.ok(drafted.length >= 5, 'the example has several invoices due');
  assert.ok(drafted.every((r) => r.draft_url), 'every drafted row links to its draft');
  assert.equal(api.drafts().length - draftsBefore, drafted.length, 'one Maildir draft per drafted row');
  assert.deepEqual(env.fetches.map((f) => f.url.replace(api.origin, '')), ['/v1/drafts']);
  assert.ok(env.fetches[0].headers['Idempotency-Key']);

  const cStage = col(sheet, 'last_stage_sent');
  const cDate = col(sheet, 'last_sent_at');
  const cStatus = col(sheet, 'reminder_status');
  const today = parseDate('2026-11-24', 'UTC', 'yyyy-MM-dd').getTime();
  for (const r of drafted) {
    assert.equal(sheet.value(r.row, cStage), r.stage, r.invoice_id + ' stage');
    const date = sheet.value(r.row, cDate);
    assert.equal(Object.prototype.toString.call(date), '[object Date]', 'last_sent_at is a real date cell');
    assert.equal(date.getTime(), today);
    const status = sheet._peek(r.row, cStatus);
    assert.match(status.value, new RegExp('stage ' + r.stage));
    assert.deepEqual(status.links.map((l) => l.url), [r.draft_url], 'the status links to the draft');
  }
  const after = sheet.snapshot();
  const outputs = new Set([cStage, cDate, cStatus]);
  const changedRows = new Set(rows.filter((r) => r.action !== 'skip').map((r) => r.row));
  for (let r = 0; r < before.length; r++) {
    for (let c = 0; c < before[r].length; c++) {
      const mayChange = outputs.has(c + 1) && changedRows.has(r + 1);
      if (!mayChange) assert.deepEqual(after[r][c], before[r][c], 'cell R' + (r + 1) + 'C' + (c + 1) + ' untouched');
    }
  }
  // Bad rows say why, next to the row.
  const bad = rowOf(rows, 'INV-1021')[0];
  assert.match(sheet.value(bad.row, cStatus), /^Not drafted on 2026-11-24: .*amount/);
  // One write per output column block for the whole chunk.
  assert.deepEqual(ss.writes().map((w) => w.op + ':' + w.column + 'x' + w.numColumns), ['setValues:' + cStage + 'x2', 'setRichTextValues:' + cStatus + 'x1']);
});

test('a second click on Generate drafts nothing', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = exampleSpreadsheet('UTC', { id: 'generate-twice' });
  const { call } = addon(ss);
  const first = driveRun(call, 'generate');
  const draftsAfterFirst = api.drafts().length;
  const cStage = col(ss.getSheetByName('Invoices'), 'last_stage_sent');
  const stagesAfterFirst = ss.getSheetByName('Invoices').snapshot().map((line) => line[cStage - 1].value);
  const second = driveRun(call, 'generate');
  assert.ok(first.rows.filter((r) => r.draft_url).length > 0);
  assert.equal(second.rows.filter((r) => r.action === 'draft').length, 0, 'nothing is due twice');
  assert.equal(api.drafts().length, draftsAfterFirst, 'no new draft in the mailbox');
  for (const r of first.rows.filter((x) => x.action === 'draft')) {
    assert.equal(rowOf(second.rows, r.invoice_id)[0].reason, 'already_drafted_today');
  }
  assert.deepEqual(ss.getSheetByName('Invoices').snapshot().map((line) => line[cStage - 1].value), stagesAfterFirst);
});

test('in Pacific/Auckland the written last_sent_at is Auckland\'s today, as a date cell', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = exampleSpreadsheet('Pacific/Auckland', { id: 'generate-akl' });
  const sheet = ss.getSheetByName('Invoices');
  const { call } = addon(ss);
  const { rows } = driveRun(call, 'generate');
  const r = rowOf(rows, 'INV-1001')[0];
  assert.equal(r.action, 'draft');
  const cell = sheet.value(r.row, col(sheet, 'last_sent_at'));
  assert.equal(cell.toISOString(), '2026-11-24T11:00:00.000Z', 'midnight 2026-11-25 in Auckland');
  assert.match(sheet.value(r.row, col(sheet, 'reminder_status')), /2026-11-25/);
});

test('the daily trigger generates the same drafts and records its outcome in reminder_status', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = exampleSpreadsheet('UTC', { id: 'daily-run' });
  const sheet = ss.getSheetByName('Invoices');
  const { env, call } = addon(ss);
  call('installDailyTrigger');
  const [trigger] = ss.project.triggersOf(env.user.email);
  const outcome = call(trigger.handler, { authMode: 'FULL', triggerUid: trigger.id });
  assert.equal(outcome.finished, true);
  assert.ok(outcome.drafted > 0);
  const row = sheet.snapshot().findIndex((line) => line[0].value === 'INV-1001') + 1;
  assert.match(sheet.value(row, col(sheet, 'reminder_status')), /\(daily run\)$/);
  const record = JSON.parse(ss.project.docGet('IC_LAST_DAILY_RUN'));
  assert.equal(record.drafted, outcome.drafted);
});

test('a 2,000-row sheet goes to the API in chunks of 200 with progress, and gets its output columns appended', (t) => {
  const ss = bigSpreadsheet(2000, 'America/New_York', '2026-11-24');
  const sheet = ss.getSheetByName('Invoices');
  const notesBefore = sheet.snapshot().map((line) => line[7].value);
  const { env, call } = addon(ss);
  const mode = api.routes.drafts ? 'generate' : 'preview';
  if (!needRoute(t, api, 'plan')) return;
  if (mode === 'preview') console.warn('\n*** /v1/drafts missing: the 2,000-row test only previews ***\n');
  const started = Date.now();
  const result = driveRun(call, mode);
  const seconds = (Date.now() - started) / 1000;
  console.log('# 2,000-row ' + mode + ': ' + result.chunks.length + ' chunks in ' + seconds.toFixed(1) + ' s; per-request ms: ' + env.fetches.map((f) => f.ms).join(','));
  assert.equal(result.run.chunkCount, 10);
  assert.equal(env.fetches.length, 10);
  assert.ok(env.fetches.every((f) => f.body.invoices.length === 200), 'every request carries 200 rows');
  assert.deepEqual(result.progress, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
  assert.equal(result.rows.length, 2000);
  assert.deepEqual(new Set(result.rows.map((r) => r.row)).size, 2000);
  if (mode === 'generate') {
    const headers = sheet.snapshot()[0].map((c) => c.value);
    assert.deepEqual(headers.slice(8), ['last_stage_sent', 'last_sent_at', 'reminder_status'], 'appended at the end');
    const drafted = result.rows.filter((r) => r.action === 'draft');
    assert.ok(drafted.length > 1000);
    for (const r of drafted) assert.equal(sheet.value(r.row, 9), r.stage);
    assert.deepEqual(sheet.snapshot().map((line) => line[7].value), notesBefore, 'notes untouched');
    const perChunk = ss.writes().filter((w) => w.op === 'setValues' && w.row > 1).length;
    assert.equal(perChunk, 10, 'one setValues per chunk for the stage/date block');
    // Re-running is safe: nothing new.
    const again = driveRun(call, 'generate');
    assert.equal(again.rows.filter((r) => r.action === 'draft').length, 0);
  }
});
