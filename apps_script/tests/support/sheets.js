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

module.exports = { parseCsv, exampleSpreadsheet, exampleTable, bigSpreadsheet, dateCell, EXAMPLE_CSV };
