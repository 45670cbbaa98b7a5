'use strict';
/**
 * Spreadsheets for the tests: the example invoices the API repo ships
 * (examples/invoices.csv) turned into cells the way Sheets would hold them —
 * dates as Date cells at midnight in the spreadsheet's timezone, plain
 * numbers as numbers, text such as "$2,480.00" left as text.
 */
const fs = require('node:fs');
const path = require('node:path');
const { FakeSpreadsheet, instantFromZoned } = require('./gas_fakes');
const { REPO_ROOT } = require('./api_server');

const EXAMPLE_CSV = path.join(REPO_ROOT, 'examples', 'invoices.csv');
const DATE_COLUMNS = ['due_date', 'sent_date', 'last_sent_at'];

/** RFC 4180 CSV parsing (quotes, doubled quotes, commas inside quotes). */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (ch === '"') quoted = false; else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(cell); cell = ''; } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(cell); rows.push(row); row = []; cell = '';
    } else cell += ch;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  return rows.filter((r) => r.some((c) => c !== ''));
}

/** A date cell: midnight of that day in the spreadsheet's timezone. */
function dateCell(iso, timeZone) {
  const [year, month, day] = iso.split('-').map(Number);
  return instantFromZoned({ year, month, day }, timeZone);
}

/** Turns CSV text into what Sheets would hold after import. */
function toCells(table, timeZone) {
  const headers = table[0];
  return [headers.slice()].concat(table.slice(1).map((line) => line.map((text, j) => {
    if (text === '') return '';
    if (DATE_COLUMNS.includes(headers[j]) && /^\d{4}-\d{2}-\d{2}$/.test(text)) return dateCell(text, timeZone);
    if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
    return text;
  })));
}

/** The example invoices as a spreadsheet in the given timezone. */
function exampleSpreadsheet(timeZone, extra) {
  if (!fs.existsSync(EXAMPLE_CSV)) throw new Error('examples/invoices.csv is missing from the repository');
  return new FakeSpreadsheet(Object.assign({ timeZone, sheets: { Invoices: toCells(parseCsv(fs.readFileSync(EXAMPLE_CSV, 'utf8')), timeZone) } }, extra || {}));
}

/** The example's header and rows, keyed by invoice id (first copy wins). */
function exampleTable() {
  return parseCsv(fs.readFileSync(EXAMPLE_CSV, 'utf8'));
}

/**
 * A big sheet: n invoices with due dates spread over the last 60 days,
 * a "notes" column the add-on must not touch, and no output columns yet.
 */
function bigSpreadsheet(n, timeZone, today) {
  const headers = ['Invoice ID', 'Client Name', 'Client Email', 'Amount', 'Currency', 'Due Date', 'Status', 'Notes'];
  const [y, m, d] = today.split('-').map(Number);
  const daysAgo = (k) => new Date(Date.UTC(y, m - 1, d - k)).toISOString().slice(0, 10);
  const rows = [headers];
  for (let i = 0; i < n; i++) {
    const daysOverdue = (i * 7) % 61;
    rows.push([
      'BIG-' + String(i + 1).padStart(5, '0'), 'Client ' + (i + 1), 'client' + (i + 1) + '@example.com',
      100 + (i % 50) * 10.5, i % 3 === 0 ? 'EUR' : 'USD', dateCell(daysAgo(daysOverdue), timeZone),
      i % 10 === 0 ? 'Paid' : 'Open', 'note ' + i,
    ]);
  }
  return new FakeSpreadsheet({ id: 'big-' + n, timeZone, sheets: { Invoices: rows } });
}

/**
 * n invoices, every one 8 days overdue (a stage 7 reminder each), amounts as
 * numbers formatted as dollars, no currency column and no output columns yet.
 */
function allDueSpreadsheet(n, timeZone, today, id) {
  const [y, m, d] = today.split('-').map(Number);
  const due = dateCell(new Date(Date.UTC(y, m - 1, d - 8)).toISOString().slice(0, 10), timeZone);
  const rows = [['invoice_id', 'client_name', 'client_email', 'amount', 'due_date', 'status']];
  for (let i = 0; i < n; i++) {
    rows.push(['DUE-' + String(i + 1).padStart(4, '0'), 'Client ' + (i + 1), 'client' + (i + 1) + '@example.com', 100 + i, due, 'Open']);
  }
  const ss = new FakeSpreadsheet({ id: id || 'due-' + n, timeZone, sheets: { Invoices: rows } });
  ss.getSheetByName('Invoices').getRange(2, 4, n, 1).setNumberFormat('"$"#,##0.00');
  return ss;
}

/**
 * A collections sheet for 2026-11-24 (a Tuesday) whose rows show every
 * policy at once. Generated on Friday 2026-11-13 first (COLLECTIONS_FIRST_DAY),
 * Northwind's and Harbor's stage 7 drafts are still unsent on the 24th, so
 * their stage 14 waits; Lumen Studio's three invoices fall due together (one
 * statement when the API groups by client); Brightline Media is the client to
 * pause; Cedar Health promised to pay on the 30th; four rows cannot be chased
 * (two lack an amount, one has no valid email, one id is on two rows); the
 * open balances reach every aging bucket, in dollars, euros and pounds.
 * No pause_until column: pausing adds it.
 */
function collectionsSpreadsheet(timeZone, id) {
  const d = (iso) => (iso ? dateCell(iso, timeZone) : '');
  const rows = [['invoice_id', 'client_name', 'client_email', 'amount', 'currency', 'due_date', 'sent_date', 'status',
    'promised_date', 'last_stage_sent', 'last_sent_at', 'reminder_status']];
  const add = (inv, client, email, amount, currency, due, sent, promised, stage, last) => rows.push(
    [inv, client, email, amount, currency, d(due), d(sent), 'Open', d(promised), stage || '', d(last), '']);
  add('N-101', 'Northwind Traders', 'ap@northwind.example.com', 1250, 'USD', '2026-11-06', '2026-10-07');
  add('H-102', 'Harbor Dental', 'billing@harbordental.example.com', 780.5, 'USD', '2026-11-05', '2026-10-06');
  add('L-201', 'Lumen Studio', 'hello@lumen.example.com', 1200, 'USD', '2026-11-16', '2026-10-17');
  add('L-202', 'Lumen Studio', 'hello@lumen.example.com', 860, 'USD', '2026-11-10', '2026-10-11');
  add('L-203', 'Lumen Studio', 'hello@lumen.example.com', 2400, 'USD', '2026-11-07', '2026-10-08');
  add('B-301', 'Brightline Media', 'ap@brightline.example.com', 2750, 'USD', '2026-10-20', '2026-09-20', '', 21, '2026-11-10');
  add('B-302', 'Brightline Media', 'ap@brightline.example.com', 640, 'USD', '2026-09-15', '2026-08-16', '', 42, '2026-11-01');
  add('C-401', 'Cedar Health Clinic', 'ap@cedarhealth.example.com', 640, 'USD', '2026-11-12', '2026-10-13', '2026-11-30');
  add('Q-501', 'Quarry Hill Vets', 'billing@quarryhillvets.example.com', 615.75, 'USD', '2026-11-20', '2026-10-21');
  add('A-601', 'Atlas Fitness', 'billing@atlasfitness.example.com', 1800, 'USD', '2026-12-15', '2026-11-15');
  add('P-701', 'Pinecrest Realty', 'ap@pinecrest.example.com', 950, 'USD', '2026-08-20', '2026-07-21', '', 42, '2026-10-30');
  add('O-801', 'Orion Logistik GmbH', 'rechnung@orion-logistik.example.de', 12900, 'EUR', '2026-10-13', '2026-09-13', '', 35, '2026-11-10');
  add('K-901', 'Kestrel Design Ltd', 'accounts@kestrel.example.co.uk', 3400, 'GBP', '2026-10-27', '2026-09-27', '', 14, '2026-11-10');
  add('E-1001', 'Elm Street Cafe', 'cafe@elmstreet.example.com', '', 'USD', '2026-11-01', '2026-10-02');
  add('E-1002', 'Fjord Outdoor AS', 'post@fjord.example.no', '', 'USD', '2026-11-02', '2026-10-03');
  add('E-1003', 'Granite Works', 'granite works at example dot com', 990, 'USD', '2026-10-30', '2026-09-30');
  add('D-1100', 'Delta Print Co', 'ap@deltaprint.example.com', 410, 'USD', '2026-10-25', '2026-09-25');
  add('D-1100', 'Delta Print Co', 'ap@deltaprint.example.com', 410, 'USD', '2026-10-25', '2026-09-25');
  return new FakeSpreadsheet({ id: id || 'collections', timeZone, sheets: { Invoices: rows } });
}

/** The day collectionsSpreadsheet is generated first, so two drafts wait unsent on the 24th. */
const COLLECTIONS_FIRST_DAY = '2026-11-13';

module.exports = {
  parseCsv, exampleSpreadsheet, exampleTable, bigSpreadsheet, allDueSpreadsheet, collectionsSpreadsheet,
  COLLECTIONS_FIRST_DAY, dateCell, EXAMPLE_CSV,
};
