'use strict';
/**
 * The collections view against the real API: the aging of a sheet sent in
 * chunks adds up to the aging of the sheet sent at once; pausing a client
 * writes pause_until by invoice id (after a sort, under the document lock)
 * and the next preview says `paused`; a fix selects its cell; one statement
 * draft for a client's invoices; drafts left unsent hold the next stage back;
 * business days and promises say until when; a teammate's draft is named, not
 * linked (two API servers sharing one ledger, Gmail emulator).
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createAddonEnv, FakeRange, formatDate } = require('./support/gas_fakes');
const { exampleSpreadsheet, collectionsSpreadsheet, COLLECTIONS_FIRST_DAY } = require('./support/sheets');
const { startApi, startGmailEmulator, needRoute } = require('./support/api_server');
const { driveRun } = require('./support/drive');
const { loadSidebarModel } = require('./support/sidebar_model');

const M = loadSidebarModel();
const TZ = 'America/New_York';
const NOW = '2026-11-24T15:00:00Z';
let api;

// GROUP_BY_CLIENT: a client's invoices due the same day become one statement draft.
test.before(async () => { api = await startApi({ env: { GROUP_BY_CLIENT: 'true' } }); });
test.after(async () => { if (api) await api.stop(); });

function addon(spreadsheet, now, extra) {
  return createAddonEnv(Object.assign({
    spreadsheet, now: now || NOW, userProperties: { IC_API_URL: api.origin, IC_API_KEY: api.apiKey }, network: api.network,
  }, extra || {}));
}

function col(sheet, name) {
  const i = sheet.snapshot()[0].map((c) => c.value).indexOf(name);
  assert.ok(i >= 0, 'column ' + name);
  return i + 1;
}

/** The run of a preview with another chunk size, as a sheet that many times larger would be sent. */
function chunkAgings(call, chunkSize) {
  const run = call('beginRun', 'preview');
  const small = Object.assign({}, run, { chunkSize, chunkCount: Math.ceil(run.totalRows / chunkSize) });
  const agings = [];
  for (let i = 0; i < small.chunkCount; i++) agings.push(call('runChunk', small, i).aging);
  return agings;
}

const same = (a, b) => M.compareDecimal(a, b) === 0;

test('the aging of a sheet sent in chunks adds up to the aging the API gives for the whole sheet at once', (t) => {
  if (!needRoute(t, api, 'plan')) return;
  const { call } = addon(exampleSpreadsheet('UTC', { id: 'aging-chunks' }));
  const whole = M.combineAging(chunkAgings(call, 200));
  assert.deepEqual(whole.map((a) => a.currency), ['EUR', 'GBP', 'JPY', 'USD']);
  const usd = whole.find((a) => a.currency === 'USD');
  assert.ok(same(usd.open, '30566.25') && !usd.dso_approximate, 'one chunk: the server\'s figures as they are');
  for (const size of [10, 5]) {
    const parts = chunkAgings(call, size);
    assert.ok(parts.length >= 3, parts.length + ' chunks');
    const summed = M.combineAging(parts);
    assert.deepEqual(summed.map((a) => a.currency), whole.map((a) => a.currency));
    for (const a of summed) {
      const w = whole.find((x) => x.currency === a.currency);
      a.buckets.forEach((b, i) => assert.ok(same(b.amount, w.buckets[i].amount), size + ': ' + a.currency + ' ' + b.bucket + ' ' + b.amount + ' = ' + w.buckets[i].amount));
      assert.ok(same(a.open, w.open), a.currency + ' open');
      assert.deepEqual(a.top_clients.map((c) => c.client_name), w.top_clients.map((c) => c.client_name), a.currency + ' top clients, ranked again');
      a.top_clients.forEach((c, i) => assert.ok(same(c.amount, w.top_clients[i].amount)));
    }
    const dso = summed.find((a) => a.currency === 'USD');
    if (size === 10) {
      assert.ok(dso.dso_approximate);
      assert.ok(Math.abs(Number(dso.dso_days) - Number(usd.dso_days)) <= 0.1, 'DSO over chunks ' + dso.dso_days + ' ≈ ' + usd.dso_days);
    } else {
      // Rows 12–16 are all closed: that chunk answers DSO 0.0 and hides what it invoiced.
      assert.equal(dso.dso_days, null, 'no DSO rather than a wrong one');
      assert.match(dso.dso_note, /not available/);
    }
  }
});

test('pausing a client writes pause_until on its open rows by invoice id after a sort, under the lock, and the next preview says paused', (t) => {
  if (!needRoute(t, api, 'plan')) return;
  const ss = collectionsSpreadsheet(TZ, 'pause-client');
  const sheet = ss.getSheetByName('Invoices');
  const { call } = addon(ss);
  const before = driveRun(call, 'preview');
  const brightline = M.pausableClients(before.rows).find((c) => c.client_name === 'Brightline Media');
  assert.deepEqual(brightline.invoice_ids, ['B-301', 'B-302']);
  // Between the preview the sidebar read and the click on Pause, someone sorts the sheet.
  sheet.sort(col(sheet, 'amount'), false);
  const width = sheet.getLastColumn();
  const cells = sheet.snapshot();
  const lockHeld = [];
  const setValues = FakeRange.prototype.setValues;
  FakeRange.prototype.setValues = function (values) {
    lockHeld.push(Atomics.load(ss.project.lockCell, 0) !== 0);
    return setValues.call(this, values);
  };
  let result;
  try {
    result = call('pauseClient', before.run.sheetId, 'Brightline Media', brightline.invoice_ids, '2026-12-15');
  } finally {
    FakeRange.prototype.setValues = setValues;
  }
  assert.equal(result.message, 'Paused Brightline Media until 2026-12-15 (2 invoices).');
  assert.deepEqual(result.unwritten, []);
  assert.ok(lockHeld.length >= 2 && lockHeld.every(Boolean), 'every write under the document lock');
  const cPause = col(sheet, 'pause_until');
  assert.equal(cPause, width + 1, 'added at the end of the header row');
  assert.equal(sheet._peek(2, cPause).format, 'yyyy-mm-dd', 'the new column shows dates');
  for (let r = 2; r <= sheet.getLastRow(); r++) {
    const id = sheet.value(r, 1);
    const v = sheet.value(r, cPause);
    if (id === 'B-301' || id === 'B-302') assert.equal(formatDate(v, TZ, 'yyyy-MM-dd'), '2026-12-15', id + ' paused on its own row');
    else assert.equal(v, '', id + ' untouched');
    for (let c = 1; c <= width; c++) assert.deepEqual(sheet.snapshot()[r - 1][c - 1], cells[r - 1][c - 1], 'row ' + r + ' col ' + c + ' unchanged');
  }
  const after = driveRun(call, 'preview');
  const paused = after.rows.filter((r) => r.client_name === 'Brightline Media');
  assert.deepEqual(paused.map((r) => [r.invoice_id, r.reason, r.pause_until]), [['B-301', 'paused', '2026-12-15'], ['B-302', 'paused', '2026-12-15']]);
  assert.equal(M.outcome(paused[0], 'preview', '2026-11-24').detail, 'until 15 Dec');
  assert.equal(after.rows.filter((r) => r.reason === 'paused').length, 2, 'no other client paused');

  // Resume: the cells are cleared and reminders come back; a day in the past is refused.
  assert.throws(() => call('pauseClient', before.run.sheetId, 'Brightline Media', ['B-301'], '2026-11-24'), /after today/);
  const resumed = call('pauseClient', before.run.sheetId, 'Brightline Media', brightline.invoice_ids.concat(['GONE-1', 'D-1100']), '');
  assert.equal(resumed.written, 2);
  const dup = [];
  for (let r = 2; r <= sheet.getLastRow(); r++) if (sheet.value(r, 1) === 'D-1100') dup.push(r);
  assert.deepEqual(resumed.unwritten, ['GONE-1 moved or was deleted: not changed.',
    'D-1100 is on rows ' + dup.join(' and ') + ': not changed — give each invoice its own ID.'], 'an id on two rows is written on neither');
  for (const r of dup) assert.equal(sheet.value(r, cPause), '');
  for (const id of ['B-301', 'B-302']) assert.equal(sheet.value(sheet.rowOf(1, id), cPause), '', id + ' resumed');
  assert.equal(driveRun(call, 'preview').rows.find((r) => r.invoice_id === 'B-301').reason, 'due');
});

test('a fix selects the cell it is about, in the row that holds the invoice now', (t) => {
  if (!needRoute(t, api, 'plan')) return;
  const ss = collectionsSpreadsheet(TZ, 'fix-cells');
  const sheet = ss.getSheetByName('Invoices');
  const { call } = addon(ss);
  const { rows, run } = driveRun(call, 'preview');
  const groups = M.fixGroups(rows);
  assert.deepEqual(groups.map((g) => [g.fix, g.rows.map((r) => r.invoice_id)]), [
    ['Add the amount in the "amount" column.', ['E-1001', 'E-1002']],
    ['Correct the email address in the "client_email" column: name@example.com, several separated by ;.', ['E-1003']],
    ['D-1100 appears on rows 18 and 19: keep one, or give each invoice its own ID.', ['D-1100', 'D-1100']],
  ]);
  sheet.sort(col(sheet, 'client_name'), true);
  const select = (r) => { call('goToInvoice', run.sheetId, r.invoice_id, r.row, M.fieldOf(r)); return [ss.selection.getRow(), ss.selection.getColumn(), ss.selection.getNumColumns()]; };
  const elm = groups[0].rows[0];
  assert.deepEqual(select(elm), [sheet.rowOf(1, 'E-1001'), col(sheet, 'amount'), 1], 'the amount cell of E-1001, where the sort put it');
  assert.deepEqual(select(groups[1].rows[0]), [sheet.rowOf(1, 'E-1003'), col(sheet, 'client_email'), 1]);
  // Both copies of a duplicated id: each line selects its own row's id cell while the rows stay put.
  sheet.sort(col(sheet, 'invoice_id'), true);
  const dupRows = [];
  for (let r = 2; r <= sheet.getLastRow(); r++) if (sheet.value(r, 1) === 'D-1100') dupRows.push(r);
  assert.deepEqual(dupRows.map((r) => select({ invoice_id: 'D-1100', row: r, errors: { invoice_id: 'duplicate' } })), dupRows.map((r) => [r, 1, 1]));
  // A field the sheet has no column for selects the whole row.
  assert.deepEqual(select({ invoice_id: 'E-1003', row: 0, errors: { draft: 'x' } }), [sheet.rowOf(1, 'E-1003'), 1, sheet.getLastColumn()]);
});

test('a client\'s invoices due together are one statement draft, and drafts left unsent hold the next stage back', (t) => {
  if (!needRoute(t, api, 'drafts')) return;
  const ss = collectionsSpreadsheet(TZ, 'statement-unsent');
  const sheet = ss.getSheetByName('Invoices');
  // Friday the 13th: Northwind's and Harbor's stage 7 drafts are made, and nobody sends them.
  const first = driveRun(addon(ss, COLLECTIONS_FIRST_DAY + 'T15:00:00Z').call, 'generate');
  const firstDrafts = new Map(first.rows.filter((r) => r.draft_url).map((r) => [r.invoice_id, r.draft_url]));
  assert.deepEqual([...firstDrafts.keys()], ['N-101', 'H-102']);
  const filesBefore = api.drafts().length;
  const { rows } = driveRun(addon(ss).call, 'generate');

  const lumen = rows.filter((r) => r.client_name === 'Lumen Studio');
  assert.deepEqual(lumen.map((r) => r.action), ['draft', 'draft', 'draft']);
  assert.equal(new Set(lumen.map((r) => r.draft_id)).size, 1, 'one draft for the three');
  for (const r of lumen) assert.match(r.status, /, in a statement of 3 invoices$/);
  const items = M.arrange(rows);
  const statements = items.filter((i) => i.statement).map((i) => i.statement);
  assert.equal(statements.length, 1);
  assert.deepEqual([statements[0].client_name, statements[0].count, statements[0].stage, statements[0].rows.map((r) => r.invoice_id)],
    ['Lumen Studio', 3, 14, ['L-201', 'L-202', 'L-203']]);
  const cStatus = col(sheet, 'reminder_status');
  for (const id of ['L-201', 'L-202', 'L-203']) {
    const cell = sheet._peek(sheet.rowOf(1, id), cStatus);
    assert.match(cell.value, /in a statement of 3 invoices/, id + ' written back');
    assert.deepEqual(cell.links.map((l) => l.url), [lumen[0].draft_url]);
  }
  const distinct = new Set(rows.filter((r) => r.action === 'draft' && r.draft_url).map((r) => r.draft_id));
  assert.equal(api.drafts().length - filesBefore, distinct.size, 'one file per draft, the statement counted once');

  const waiting = M.unsentDrafts(rows, '2026-11-24');
  assert.deepEqual(waiting.map((w) => [w.rows.map((r) => r.invoice_id).join(), w.since, w.days, w.draft_url]), [
    ['N-101', '2026-11-13', 11, firstDrafts.get('N-101')],
    ['H-102', '2026-11-13', 11, firstDrafts.get('H-102')],
  ]);
  for (const id of ['N-101', 'H-102']) {
    const r = rows.find((x) => x.invoice_id === id);
    assert.deepEqual([r.action, r.reason, r.stage], ['skip', 'previous_unsent', 14], id + ': stage 14 waits');
    assert.equal(sheet.value(sheet.rowOf(1, id), col(sheet, 'last_stage_sent')), 7, id + ': the sheet still says stage 7');
  }
});

test('on a Saturday a due reminder says the business day it will be drafted; a promise says the day promised', (t) => {
  if (!needRoute(t, api, 'plan')) return;
  const ss = collectionsSpreadsheet(TZ, 'saturday');
  const { rows } = driveRun(addon(ss, '2026-11-28T15:00:00Z').call, 'preview');
  const waiting = rows.filter((r) => r.reason === 'not_business_day');
  assert.ok(waiting.length >= 3, waiting.length + ' rows wait for Monday');
  for (const r of waiting) {
    assert.equal(r.draft_on, '2026-11-30');
    assert.equal(M.outcome(r, 'preview', '2026-11-28').detail, 'stage ' + r.stage + ' is due; drafted Mon 30 Nov, the next business day');
  }
  const cedar = rows.find((r) => r.invoice_id === 'C-401');
  assert.deepEqual([cedar.reason, cedar.promised_date], ['promised', '2026-11-30']);
  assert.equal(M.outcome(cedar, 'preview', '2026-11-28').detail, 'the client promised to pay by 30 Nov');
});

test('a stage a teammate drafted is named as theirs — "Drafted by alice@… on …" — with no link, and nothing is drafted twice', async (t) => {
  const gmail = await startGmailEmulator(['ya29.token-of-alice', 'ya29.token-of-bob']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ic-team-'));
  const servers = [];
  try {
    // Alice's and Bob's add-ons reach two servers sharing one ledger; each server's mailbox is its user's.
    const shared = { DRAFTS_BACKEND: 'gmail', GMAIL_API_ENDPOINT: gmail.url, DATABASE_URL: 'sqlite:///' + path.join(dir, 'ledger.db') };
    servers.push(await startApi({ env: Object.assign({ GMAIL_SENDER: 'alice@example.com' }, shared) }));
    servers.push(await startApi({ env: Object.assign({ GMAIL_SENDER: 'bob@example.com' }, shared) }));
    const [alice, bob] = servers;
    if (!needRoute(t, alice, 'drafts')) return;
    // Bob's Generate reads the rows before Alice's write-back lands (they click at the same
    // time): his copy of the sheet — the same spreadsheet id, so the same scope — stands for that.
    const as = (user, server) => createAddonEnv({ spreadsheet: collectionsSpreadsheet(TZ, 'team-sheet'), now: NOW, user,
      network: server.network, userProperties: { IC_API_URL: server.origin, IC_API_KEY: server.apiKey } }).call;
    const mine = driveRun(as('alice@example.com', alice), 'generate').rows.filter((r) => r.action === 'draft' && r.draft_url);
    assert.ok(mine.length >= 5);
    const draftsAfterAlice = (await gmail.state()).drafts;
    const theirs = driveRun(as('bob@example.com', bob), 'generate').rows;
    assert.equal((await gmail.state()).drafts, draftsAfterAlice, 'Bob\'s Generate creates nothing');
    for (const a of mine) {
      const b = theirs.find((r) => r.invoice_id === a.invoice_id);
      assert.deepEqual([b.reason, b.drafted_by, b.draft_url], ['duplicate', 'alice@example.com', ''], a.invoice_id);
      const o = M.outcome(b, 'generate', '2026-11-24');
      assert.deepEqual([o.action, o.detail, o.link], ['Drafted earlier', 'Drafted by alice@example.com on 24 Nov — in their Gmail Drafts', null]);
    }
  } finally {
    for (const s of servers) await s.stop();
    await gmail.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
