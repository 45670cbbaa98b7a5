'use strict';
/**
 * The sidebar's model (SidebarModel.html), in Node: aging
 * summed over the chunks the sidebar sends, drafts waiting unsent, error rows
 * grouped by fix, a statement's rows as one group, and each row's outcome in
 * the words the bookkeeper reads. The same answers from the real API are
 * checked in collections.test.js; the drawing in sidebar.browser.test.js.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const { loadSidebarModel } = require('./support/sidebar_model');

const M = loadSidebarModel();
const TODAY = '2026-11-24';

/** One currency's aging as /v1/plan answers it for one chunk. */
function aging(currency, buckets, topClients, dso, note) {
  const labels = ['current', '1-30', '31-60', '61-90', '90+'];
  const open = buckets.reduce((sum, b) => M.addDecimal(sum, b), '0');
  return {
    currency,
    buckets: labels.map((bucket, i) => ({ bucket, amount: buckets[i], formatted: '' })),
    open: { amount: open, formatted: '' },
    top_clients: topClients.map(([client_name, amount]) => ({ client_name, amount, formatted: '' })),
    dso_days: dso === undefined ? null : dso,
    dso_note: note === undefined ? null : note,
  };
}

const amounts = (a) => a.buckets.map((b) => b.amount);

test('aging over several chunks adds each currency\'s buckets and open balance exactly, as decimal strings', () => {
  const chunks = [
    [aging('USD', ['0.10', '100', '0', '0', '0'], [], '30.0'), aging('EUR', ['0', '0', '50.5', '0', '0'], [], '10.0')],
    [aging('USD', ['0.2', '0', '0', '0.05', '1999.99'], [], '45.0')],
    undefined, // a chunk not answered yet
  ];
  const out = M.combineAging(chunks);
  assert.deepEqual(out.map((a) => a.currency), ['EUR', 'USD']);
  const usd = out.find((a) => a.currency === 'USD');
  assert.deepEqual(amounts(usd), ['0.30', '100', '0', '0.05', '1999.99'], 'no float drift: 0.10 + 0.2 is 0.30');
  assert.equal(usd.open, '2100.34');
  assert.deepEqual(usd.buckets.map((b) => b.label), ['Not due', '1–30', '31–60', '61–90', '90+']);
  const eur = out.find((a) => a.currency === 'EUR');
  assert.deepEqual(amounts(eur), ['0', '0', '50.5', '0', '0'], 'a currency in one chunk only is that chunk\'s');
});

test('top clients are merged by name across chunks and ranked again, largest first, five at most', () => {
  const out = M.combineAging([
    [aging('USD', ['0', '900', '0', '0', '0'], [['Canyon Solar', '500'], ['Lumen Studio', '400']])],
    [aging('USD', ['0', '1100', '0', '0', '0'], [['Lumen Studio', '300'], ['Atlas', '200'], ['Brightline', '200'], ['Cedar', '150'], ['Delta', '100'], ['Elm', '150']])],
  ]);
  assert.deepEqual(out[0].top_clients.map((c) => [c.client_name, c.amount]),
    [['Lumen Studio', '700'], ['Canyon Solar', '500'], ['Atlas', '200'], ['Brightline', '200'], ['Cedar', '150']],
    'Lumen, second in each chunk, leads the sheet; ties by name');
});

test('DSO: one chunk is the server\'s figure; several give Σopen ÷ Σinvoiced × 90, each chunk\'s invoiced recovered from its DSO', () => {
  const one = M.combineAging([[aging('USD', ['0', '1000', '0', '0', '0'], [], '67.6')]])[0];
  assert.deepEqual([one.dso_days, one.dso_note, one.dso_approximate], ['67.6', null, false]);
  // Chunk A: open 1000 of 2000 invoiced (45 days); chunk B: open 3000 of 1000 invoiced (270 days);
  // chunk C: open 500, no sent dates (invoiced nothing datable). The sheet: 4500 ÷ 3000 × 90 = 135.
  const three = M.combineAging([
    [aging('USD', ['0', '1000', '0', '0', '0'], [], '45.0')],
    [aging('USD', ['0', '0', '3000', '0', '0'], [], '270.0')],
    [aging('USD', ['500', '0', '0', '0', '0'], [], null, 'needs sent_date')],
  ])[0];
  assert.deepEqual([three.dso_days, three.dso_note, three.dso_approximate], ['135.0', null, true]);
});

test('DSO says why when it cannot be given: no sent_date anywhere, nothing invoiced, or a chunk that hides its invoiced amount', () => {
  const noDates = M.combineAging([
    [aging('GBP', ['0', '10', '0', '0', '0'], [], null, 'needs sent_date')],
    [aging('GBP', ['0', '20', '0', '0', '0'], [], null, 'needs sent_date')],
  ])[0];
  assert.deepEqual([noDates.dso_days, noDates.dso_note], [null, 'needs sent_date']);
  const old = M.combineAging([
    [aging('GBP', ['0', '10', '0', '0', '0'], [], null, 'nothing invoiced in the last 90 days')],
    [aging('GBP', ['0', '20', '0', '0', '0'], [], null, 'needs sent_date')],
  ])[0];
  assert.deepEqual([old.dso_days, old.dso_note], [null, 'nothing invoiced in the last 90 days']);
  // Everything in the second chunk is paid: DSO 0.0 there, and its invoiced amount is unknowable.
  const hidden = M.combineAging([
    [aging('GBP', ['0', '10', '0', '0', '0'], [], '30.0')],
    [aging('GBP', ['0', '0', '0', '0', '0'], [], '0.0')],
  ])[0];
  assert.equal(hidden.dso_days, null);
  assert.match(hidden.dso_note, /not available/);
});

const row = (extra) => Object.assign({ row: 2, invoice_id: 'INV-1', client_name: 'Northwind Traders', action: 'skip', reason: 'not_due', stage: null, message: '' }, extra);

test('drafts waiting unsent for two days or more are listed oldest first, one line per draft', () => {
  const rows = [
    row({ invoice_id: 'N-101', reason: 'previous_unsent', waiting_since: '2026-11-13', draft_url: 'u1' }),
    row({ invoice_id: 'Y-1', reason: 'previous_unsent', waiting_since: '2026-11-23', draft_url: 'u2' }), // yesterday: not yet
    row({ invoice_id: 'L-1', reason: 'previous_unsent', waiting_since: '2026-11-20', draft_url: 'u3' }),
    row({ invoice_id: 'L-2', reason: 'previous_unsent', waiting_since: '2026-11-20', draft_url: 'u3' }), // the same statement draft
    row({ invoice_id: 'L-3', reason: 'previous_unsent' }), // waits on a sibling's draft: no link of its own
    row({ invoice_id: 'X-1', reason: 'due', action: 'draft', waiting_since: '2026-11-01' }),
  ];
  const list = M.unsentDrafts(rows, TODAY);
  assert.deepEqual(list.map((w) => [w.draft_url, w.days, w.rows.map((r) => r.invoice_id)]), [
    ['u1', 11, ['N-101']],
    ['u3', 4, ['L-1', 'L-2']],
  ]);
});

test('error rows are grouped by their fix, in sheet order; a row without a fix is grouped by its message', () => {
  const amount = 'Add the amount in the "amount" column.';
  const dup = 'D-1100 appears on rows 18 and 19: keep one, or give each invoice its own ID.';
  // The messages as the API and the add-on write them; the fix is what the bookkeeper acts on.
  const missing = 'This row has a problem: amount: is required';
  const twice = 'Invoice ID D-1100 is used on rows 18, 19; each invoice needs its own ID.';
  const rows = [
    row({ row: 15, invoice_id: 'E-1001', action: 'error', reason: 'invalid_row', message: missing, fix: amount, errors: { amount: 'is required' } }),
    row({ row: 16, invoice_id: 'OK', action: 'draft', reason: 'due' }),
    row({ row: 17, invoice_id: 'E-1002', action: 'error', reason: 'invalid_row', message: missing, fix: amount, errors: { amount: 'is required' } }),
    row({ row: 18, invoice_id: 'D-1100', action: 'error', reason: 'duplicate_invoice_id', message: twice, fix: dup, errors: { invoice_id: 'duplicate' } }),
    row({ row: 19, invoice_id: 'D-1100', action: 'error', reason: 'duplicate_invoice_id', message: twice, fix: dup, errors: { invoice_id: 'duplicate' } }),
    row({ row: 20, invoice_id: 'G-1', action: 'error', reason: 'draft_failed', message: 'The draft could not be created: quota', errors: { draft: 'quota' }, retryable: true }),
  ];
  const groups = M.fixGroups(rows);
  assert.deepEqual(groups.map((g) => [g.fix, g.hasFix, g.rows.map((r) => r.row)]), [
    [amount, true, [15, 17]],
    [dup, true, [18, 19]],
    ['The draft could not be created: quota', false, [20]],
  ]);
  assert.deepEqual(rows.filter((r) => r.action === 'error').map((r) => M.fieldOf(r)), ['amount', 'amount', 'invoice_id', 'invoice_id', ''],
    'the cell to select: the field the error names (none for a draft failure)');
});

test('the rows of one statement draft are one item at the place of the first; other rows stay in sheet order', () => {
  const st = (n, id, stage) => row({ row: n, invoice_id: id, client_name: 'Lumen Studio', action: 'draft', reason: 'drafted', stage,
    draft_id: 'd-lumen', draft_url: 'u-lumen', status: 'Drafted stage ' + stage + ' reminder (8 days overdue) on 2026-11-24, in a statement of 3 invoices' });
  const rows = [
    row({ row: 2, invoice_id: 'N-101', action: 'draft', reason: 'drafted', draft_id: 'd-n', draft_url: 'u-n' }),
    st(4, 'L-201', 7),
    row({ row: 5, invoice_id: 'E-1', action: 'error' }),
    st(6, 'L-202', 14),
    st(9, 'L-203', 14),
    row({ row: 10, invoice_id: 'C-401', reason: 'promised' }),
  ];
  const items = M.arrange(rows);
  assert.deepEqual(items.map((i) => (i.statement ? 'statement:' + i.statement.rows.map((r) => r.invoice_id).join('+') : i.row.invoice_id)),
    ['N-101', 'statement:L-201+L-202+L-203', 'C-401'], 'errors are left to the fixes');
  const s = items[1].statement;
  assert.deepEqual([s.count, s.stage, s.draft_url, s.client_name], [3, 14, 'u-lumen', 'Lumen Studio']);
  assert.equal(M.statementSize(rows[0]), 0);
  assert.equal(M.statementSize(rows[1]), 3);
});

test('a duplicate drafted in a teammate\'s mailbox names them and the day, and offers no link', () => {
  const bob = row({ invoice_id: 'N-101', action: 'skip', reason: 'duplicate', stage: 7, drafted_by: 'alice@example.com', draft_url: '', sent_on: '2026-12-06',
    message: 'Already drafted for stage 7 by alice@example.com on 2026-12-06: it waits in alice@example.com\'s Gmail Drafts.' });
  const o = M.outcome(bob, 'generate', '2026-12-07');
  assert.deepEqual(o, { kind: 'done', action: 'Drafted earlier', detail: 'Drafted by alice@example.com on 6 Dec — in their Gmail Drafts', link: null });
  // Without the write-back's date, the day comes from the message; another year is spelled out.
  assert.equal(M.draftedByText(Object.assign({}, bob, { sent_on: '' }), '2027-01-03'), 'Drafted by alice@example.com on 6 Dec 2026 — in their Gmail Drafts');
  // A request that replays a teammate's (same rows, same key) answers `drafted`: still theirs.
  const replay = M.outcome(Object.assign({}, bob, { action: 'draft', reason: 'drafted' }), 'generate', '2026-12-07');
  assert.deepEqual([replay.detail, replay.link], ['Drafted by alice@example.com on 6 Dec — in their Gmail Drafts', null]);
  // One's own earlier draft keeps its link.
  const mine = M.outcome(row({ reason: 'duplicate', action: 'skip', stage: 7, draft_url: 'https://mail.google.com/x' }), 'generate', TODAY);
  assert.deepEqual([mine.action, mine.link && mine.link.url], ['Drafted earlier', 'https://mail.google.com/x']);
});

test('paused, promised, not-business-day, catching-up and unsent rows say until when, in plain words', () => {
  const say = (extra) => { const o = M.outcome(row(extra), 'preview', TODAY); return o.action + ' · ' + o.detail; };
  assert.equal(say({ reason: 'paused', pause_until: '2026-12-15' }), 'Paused · until 15 Dec');
  assert.equal(say({ reason: 'promised', promised_date: '2026-11-30' }), 'Promised · the client promised to pay by 30 Nov');
  assert.equal(say({ reason: 'not_business_day', stage: 14, draft_on: '2026-11-30' }), 'Not today · stage 14 is due; drafted Mon 30 Nov, the next business day');
  assert.equal(say({ action: 'draft', reason: 'catching_up', stage: 14 }), 'Will draft · stage 14 reminder — the next step, none skipped');
  const unsent = M.outcome(row({ reason: 'previous_unsent', waiting_since: '2026-11-13', draft_url: 'u1' }), 'generate', TODAY);
  assert.equal(unsent.action + ' · ' + unsent.detail, 'Waiting · the last reminder is unsent in Drafts since 13 Nov (11 days): send it first');
  assert.deepEqual(unsent.link, { url: 'u1', label: 'Open unsent draft ↗' });
  assert.equal(say({ reason: 'paused' }), 'Paused · Reminders paused', 'no date in the sheet: the reason alone');
});

test('a client can be paused when it has open invoices: closed, paid and broken rows are left out', () => {
  const rows = [
    row({ invoice_id: 'B-301', client_name: 'Brightline Media', action: 'draft', reason: 'due' }),
    row({ invoice_id: 'B-302', client_name: 'Brightline Media', reason: 'stage_already_drafted' }),
    row({ invoice_id: 'B-303', client_name: 'Brightline Media', reason: 'closed_status' }),
    row({ invoice_id: 'B-304', client_name: 'Brightline Media', reason: 'zero_balance' }),
    row({ invoice_id: 'A-1', client_name: 'Atlas Fitness', reason: 'paused' }),
    row({ invoice_id: 'E-1', client_name: 'Elm Street Cafe', action: 'error' }),
  ];
  assert.deepEqual(M.pausableClients(rows), [
    { client_name: 'Atlas Fitness', invoice_ids: ['A-1'] },
    { client_name: 'Brightline Media', invoice_ids: ['B-301', 'B-302'] },
  ]);
});
