'use strict';
/**
 * Write-back against the real API while people work in the sheet: a sort, a
 * row deleted, an id pasted twice — between the read and the write of a chunk
 * (the UrlFetchApp fake's duringFetch runs while the script waits on
 * /v1/drafts). Every result lands on its own invoice's row or is reported;
 * none lands on a foreign row. Also: duplicated ids, formulas, euros from the
 * cell format, two clicks at once (two threads, one document lock) and two
 * editors installing the daily run at once.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { createAddonEnv, FakeSpreadsheet } = require('./support/gas_fakes');
const { exampleSpreadsheet, dateCell } = require('./support/sheets');
const { startApi, needRoute } = require('./support/api_server');
const { driveRun } = require('./support/drive');
const { runAtOnce } = require('./support/executions');

const NOW = '2026-11-24T12:00:00Z';
const TODAY = '2026-11-24';
let api;

test.before(async () => { api = await startApi(); });
test.after(async () => { if (api) await api.stop(); });

function addon(spreadsheet, extra) {
  return createAddonEnv(Object.assign({
    spreadsheet, now: NOW, userProperties: { IC_API_URL: api.origin, IC_API_KEY: api.apiKey }, network: api.network,
  }, extra || {}));
}

/** Column number (1-based) of a header. */
function col(sheet, name) {
  const i = sheet.snapshot()[0].map((c) => c.value).indexOf(name);
  assert.ok(i >= 0, 'column ' + name);
  return i + 1;
}

/** Runs fn once, during the first /v1/drafts call. */
function duringFirstDrafts(fn) {
  let done = false;
  return (request) => {
    if (!done && request.url.endsWith('/v1/drafts')) { done = true; fn(); }
  };
}

/**
 * Every row whose status links to a draft made by this run: the draft must be
 * its own invoice's. Returns the rows that got another invoice's result.
 */
function foreignWrites(sheet, rows) {
  const urlOf = new Map(rows.filter((r) => r.draft_url).map((r) => [r.draft_url, r]));
  const cId = col(sheet, 'invoice_id');
  const cStage = col(sheet, 'last_stage_sent');
  const cStatus = col(sheet, 'reminder_status');
  const foreign = [];
  for (let row = 2; row <= sheet.getLastRow(); row++) {
    for (const link of sheet._peek(row, cStatus).links) {
      const owner = urlOf.get(link.url);
      if (!owner) continue;
      const id = sheet.value(row, cId);
      if (owner.invoice_id !== id || sheet.value(row, cStage) !== owner.stage) foreign.push({ row, id, got: owner.invoice_id });
    }
  }
  return foreign;
}

test('a sort while /v1/drafts runs: each result is written on its own invoice\'s row, none on a foreign one', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = exampleSpreadsheet('UTC', { id: 'sorted-mid-run' });
  const sheet = ss.getSheetByName('Invoices');
  const { call } = addon(ss, { duringFetch: duringFirstDrafts(() => sheet.sort(col(sheet, 'client_name'), false)) });
  const { rows, unwritten } = driveRun(call, 'generate');
  assert.ok(ss.log.some((e) => e.op === 'sort'), 'the sheet was sorted during the call');
  const drafted = rows.filter((r) => r.action === 'draft' && r.draft_url);
  assert.ok(drafted.length >= 5);
  assert.deepEqual(foreignWrites(sheet, rows), [], 'no result on another invoice\'s row');
  for (const r of drafted) {
    const now = sheet.rowOf(col(sheet, 'invoice_id'), r.invoice_id);
    assert.equal(sheet.value(now, col(sheet, 'last_stage_sent')), r.stage, r.invoice_id + ' stage on its row');
    assert.match(sheet.value(now, col(sheet, 'reminder_status')), new RegExp('stage ' + r.stage));
  }
  assert.deepEqual(unwritten, [], 'a sort moves rows; nothing is lost');
  // Both copies of the duplicated id say why, wherever the sort put them.
  const dupRows = [];
  for (let row = 2; row <= sheet.getLastRow(); row++) if (sheet.value(row, 1) === 'INV-1022') dupRows.push(row);
  assert.equal(dupRows.length, 2);
  for (const row of dupRows) {
    assert.match(String(sheet.value(row, col(sheet, 'reminder_status'))), /^Not drafted on 2026-11-24: Invoice ID INV-1022 is used on rows/);
  }
});

test('a row deleted while /v1/drafts runs is reported, not written elsewhere, and the next Generate writes it', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = exampleSpreadsheet('UTC', { id: 'deleted-mid-run' });
  const sheet = ss.getSheetByName('Invoices');
  const width = sheet.getLastColumn();
  let saved = null;
  const { call } = addon(ss, {
    duringFetch: duringFirstDrafts(() => {
      const row = sheet.rowOf(1, 'INV-1001');
      saved = sheet.getRange(row, 1, 1, width).getValues()[0];
      sheet.deleteRow(row);
      sheet.sort(col(sheet, 'amount'), true);
    }),
  });
  const draftsBefore = api.drafts().length;
  const first = driveRun(call, 'generate');
  const lost = first.rows.find((r) => r.invoice_id === 'INV-1001');
  assert.equal(lost.action, 'draft');
  assert.ok(lost.draft_url, 'its draft was made');
  assert.deepEqual(foreignWrites(sheet, first.rows), []);
  assert.deepEqual(first.unwritten.map((u) => u.message),
    ['INV-1001 moved or was deleted: its draft exists, the sheet was not updated — Generate again to write it back.']);
  // The bookkeeper undoes the deletion (the row comes back at the end) and runs Generate again.
  const back = sheet.getLastRow() + 1;
  sheet.getRange(back, 1, 1, width).setValues([saved]);
  const draftsAfterFirst = api.drafts().length;
  const second = driveRun(call, 'generate');
  assert.equal(api.drafts().length, draftsAfterFirst, 'no second draft for INV-1001');
  assert.ok(draftsAfterFirst > draftsBefore);
  const again = second.rows.find((r) => r.invoice_id === 'INV-1001');
  assert.equal(again.draft_url, lost.draft_url, 'the existing draft is written back');
  assert.equal(sheet.value(back, col(sheet, 'last_stage_sent')), 7);
  assert.deepEqual(sheet._peek(back, col(sheet, 'reminder_status')).links.map((l) => l.url), [lost.draft_url]);
  assert.deepEqual(second.unwritten, []);
});

test('an invoice id pasted on a second row while /v1/drafts runs is written on neither, and the sidebar says so', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = exampleSpreadsheet('UTC', { id: 'doubled-mid-run' });
  const sheet = ss.getSheetByName('Invoices');
  const width = sheet.getLastColumn();
  const { call } = addon(ss, {
    duringFetch: duringFirstDrafts(() => {
      const cells = sheet.getRange(sheet.rowOf(1, 'INV-1003'), 1, 1, width).getValues();
      sheet.getRange(sheet.getLastRow() + 1, 1, 1, width).setValues(cells);
    }),
  });
  const { rows, unwritten } = driveRun(call, 'generate');
  assert.equal(rows.find((r) => r.invoice_id === 'INV-1003').action, 'draft');
  assert.equal(unwritten.length, 1);
  assert.match(unwritten[0].message, /^INV-1003 is now on rows \d+ and \d+: its draft exists, the sheet was not updated/);
  for (let row = 2; row <= sheet.getLastRow(); row++) {
    if (sheet.value(row, 1) === 'INV-1003') assert.equal(sheet.value(row, col(sheet, 'last_stage_sent')), 14, 'unchanged');
  }
  assert.deepEqual(foreignWrites(sheet, rows), []);
});

test('formulas in rows the run did not change are kept as formulas, also when the rows around them are written', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = exampleSpreadsheet('UTC', { id: 'formulas-kept' });
  const sheet = ss.getSheetByName('Invoices');
  const cStage = col(sheet, 'last_stage_sent');
  // Skipped invoices (not due, closed) whose stage cell is a formula.
  const skipped = ['INV-1009', 'INV-1010', 'INV-1011', 'INV-1012', 'INV-1013', 'INV-1014', 'INV-1015'];
  const formulaOf = {};
  for (const id of skipped) {
    const row = sheet.rowOf(1, id);
    formulaOf[id] = '=IF(H' + row + '="Paid","",0)';
    sheet.getRange(row, cStage).setFormula(formulaOf[id]);
  }
  const { call } = addon(ss, { duringFetch: duringFirstDrafts(() => sheet.sort(col(sheet, 'due_date'), true)) });
  const { rows } = driveRun(call, 'generate');
  const written = rows.filter((r) => r.draft_url || r.action === 'error').map((r) => sheet.rowOf(1, r.invoice_id));
  const inside = skipped.filter((id) => { const row = sheet.rowOf(1, id); return Math.min(...written) < row && row < Math.max(...written); });
  assert.ok(inside.length >= 2, 'formula rows inside the written span: ' + inside);
  for (const id of skipped) assert.equal(sheet._peek(sheet.rowOf(1, id), cStage).formula, formulaOf[id], id + ': still a formula, not its value');
});

test('an amount formatted in euros in a sheet with no currency column is drafted in euros', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = new FakeSpreadsheet({ id: 'euro-formats', timeZone: 'Europe/Berlin', sheets: { Rechnungen: [
    ['Invoice ID', 'Client name', 'Client email', 'Amount', 'Due date'],
    ['EU-1', 'Orion Logistik GmbH', 'rechnung@orion.example.de', 1250, dateCell('2026-11-16', 'Europe/Berlin')],
    ['EU-2', 'Kestrel Design Ltd', 'accounts@kestrel.example.co.uk', 3400, dateCell('2026-11-16', 'Europe/Berlin')],
    ['EU-3', 'Zürich Print AG', 'ap@zuerichprint.example.ch', 780.5, dateCell('2026-11-16', 'Europe/Berlin')],
    ['EU-4', 'Northwind Traders', 'ap@northwind.example.com', 640, dateCell('2026-11-16', 'Europe/Berlin')],
  ] } });
  const sheet = ss.getSheetByName('Rechnungen');
  sheet.getRange(2, 4).setNumberFormat('[$€]#,##0.00');
  sheet.getRange(3, 4).setNumberFormat('£#,##0.00');
  sheet.getRange(4, 4).setNumberFormat('[$CHF] #,##0.00');
  // EU-4 has no format: the default currency from Settings.
  const { call, env } = addon(ss);
  call('saveSettings', { apiUrl: api.origin, defaultCurrency: 'cad' });
  const before = new Set(api.drafts());
  const { rows } = driveRun(call, 'generate');
  const sent = env.fetches.find((f) => f.url.endsWith('/v1/drafts')).body.invoices;
  assert.deepEqual(sent.map((i) => [i['Invoice ID'], i.Amount, i.currency]),
    [['EU-1', 1250, 'EUR'], ['EU-2', 3400, 'GBP'], ['EU-3', 780.5, 'CHF'], ['EU-4', 640, 'CAD']], 'amounts leave as numbers, with their currency');
  assert.deepEqual(rows.map((r) => [r.invoice_id, r.action, r.currency]),
    [['EU-1', 'draft', 'EUR'], ['EU-2', 'draft', 'GBP'], ['EU-3', 'draft', 'CHF'], ['EU-4', 'draft', 'CAD']]);
  const mail = api.drafts().filter((f) => !before.has(f)).map((f) => fs.readFileSync(f, 'utf8')).join('\n');
  assert.match(decodeMime(mail), /€1,250\.00/, 'the email says euros');
  assert.doesNotMatch(decodeMime(mail), /\$1,250\.00/);
});

/** The text of a MIME message whatever its transfer encoding (quoted-printable or base64). */
function decodeMime(text) {
  const qp = text.replace(/=\r?\n/g, '').replace(/((?:=[0-9A-F]{2})+)/g, (m) => Buffer.from(m.split('=').slice(1).map((h) => parseInt(h, 16))).toString('utf8'));
  const b64 = (text.match(/\r?\n\r?\n([A-Za-z0-9+/=\r\n]{40,})/g) || []).map((b) => Buffer.from(b.replace(/\s/g, ''), 'base64').toString('utf8'));
  return qp + '\n' + b64.join('\n');
}

test('two clicks on Generate at once: one waits for the other\'s lock, every invoice is drafted once and written', async (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = exampleSpreadsheet('UTC', { id: 'two-clicks' });
  const sheet = ss.getSheetByName('Invoices');
  const draftsBefore = api.drafts().length;
  const spec = (user) => ({
    job: 'generate', user, now: NOW, network: api.network, meetAfterFetch: true, sheetsLatencyMs: 15,
    userProperties: { IC_API_URL: api.origin, IC_API_KEY: api.apiKey },
  });
  const [a, b] = await runAtOnce(ss, [spec('alice@example.com'), spec('bob@example.com')]);
  const waited = Math.max(...a.lockWaits, ...b.lockWaits);
  assert.ok(waited >= 30, 'one execution waited for the other to release the lock (' + waited + ' ms)');
  const drafted = new Set([...a.result.rows, ...b.result.rows].filter((r) => r.action === 'draft' && r.draft_url).map((r) => r.invoice_id));
  assert.ok(drafted.size >= 5);
  assert.equal(api.drafts().length - draftsBefore, drafted.size, 'one draft per invoice, not two');
  for (const id of drafted) {
    const row = sheet.rowOf(1, id);
    assert.ok(sheet.value(row, col(sheet, 'last_stage_sent')) > 0, id + ' written');
  }
  // Each user's own Google token went with their own request.
  assert.equal(a.fetches.find((f) => f.url.endsWith('/v1/drafts')).headers['X-Google-Access-Token'], 'ya29.token-of-alice');
  assert.equal(b.fetches.find((f) => f.url.endsWith('/v1/drafts')).headers['X-Google-Access-Token'], 'ya29.token-of-bob');
});

test('two editors installing the daily run at once leave one trigger', async () => {
  const ss = exampleSpreadsheet('UTC', { id: 'two-editors' });
  const spec = (user) => ({ job: 'installDailyTrigger', user, now: NOW, meetBeforeStart: true, sheetsLatencyMs: 5 });
  const results = await runAtOnce(ss, [spec('alice@example.com'), spec('bob@example.com')]);
  assert.equal(ss.project.triggers.length, 1, 'one trigger in the document');
  assert.deepEqual(results.map((r) => r.result.installed).sort(), [false, true]);
  assert.match(results.find((r) => !r.result.installed).result.message, /Another editor installed the daily run/);
});
