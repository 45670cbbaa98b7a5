/**
 * @fileoverview The invoices tab: where its columns are, which tab it is, and
 * its rows as the API reads them (dates in the spreadsheet's timezone, amounts
 * as numbers with the currency their cell format shows).
 */

/** The columns the add-on writes, in the order they are appended. */
const OUTPUT_COLUMNS = ['last_stage_sent', 'last_sent_at', 'reminder_status'];

/** The headers a tab needs to count as an invoices tab (DESIGN §3). */
const REQUIRED_HEADERS = ['invoice_id', 'client_name', 'client_email', 'amount', 'due_date'];

/** Document property: the sheet id of the invoices tab chosen in Settings. */
const DOC_INVOICE_SHEET = 'IC_INVOICE_SHEET';

/**
 * Where things are in the invoices tab. Column numbers are 1-based; 0 = missing.
 * @typedef {Object} SheetLayout
 * @property {string[]} headers          The header row as text, one per column.
 * @property {number} invoiceIdColumn
 * @property {number} amountColumn
 * @property {number} currencyColumn
 * @property {number} stageColumn
 * @property {number} sentAtColumn
 * @property {number} statusColumn
 * @property {string[]} missing          Required headers the tab lacks.
 */

/**
 * Normalises a header the way the API does: case-insensitive, ignoring spaces,
 * hyphens and underscores ("Invoice ID" = "invoice_id").
 * @param {unknown} header
 * @return {string}
 */
function normalizeHeader_(header) {
  return String(header === null || header === undefined ? '' : header).toLowerCase().replace(/[\s_-]+/g, '');
}

/**
 * Reads the header row of a sheet.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @return {SheetLayout}
 */
function readLayout_(sheet) {
  const lastColumn = Math.max(1, sheet.getLastColumn());
  const headers = sheet.getRange(1, 1, 1, lastColumn).getValues()[0].map((h) => String(h).trim());
  const keys = headers.map(normalizeHeader_);
  /** @param {string} name @return {number} */
  const column = (name) => keys.indexOf(normalizeHeader_(name)) + 1;
  return {
    headers: headers,
    invoiceIdColumn: column('invoice_id'),
    amountColumn: column('amount'),
    currencyColumn: column('currency'),
    stageColumn: column('last_stage_sent'),
    sentAtColumn: column('last_sent_at'),
    statusColumn: column('reminder_status'),
    missing: REQUIRED_HEADERS.filter((h) => column(h) === 0),
  };
}

/**
 * The tab with this sheet id, or null.
 * @param {GoogleAppsScript.Spreadsheet.Spreadsheet} ss
 * @param {number} sheetId
 * @return {GoogleAppsScript.Spreadsheet.Sheet|null}
 */
function sheetById_(ss, sheetId) {
  return ss.getSheets().filter((s) => s.getSheetId() === sheetId)[0] || null;
}

/**
 * The tabs whose first row holds the invoice headers.
 * @param {GoogleAppsScript.Spreadsheet.Spreadsheet} ss
 * @return {GoogleAppsScript.Spreadsheet.Sheet[]}
 */
function invoiceSheets_(ss) {
  return ss.getSheets().filter((s) => readLayout_(s).missing.length === 0);
}

/**
 * The tab a person works on: the active tab when it has the invoice headers,
 * else the tab chosen in Settings, else the only tab that has them. Never
 * "the tab used last time": with a "2025" and a "2026" tab, that picks the
 * wrong year.
 * @param {GoogleAppsScript.Spreadsheet.Spreadsheet} ss
 * @return {GoogleAppsScript.Spreadsheet.Sheet}
 */
function findInvoiceSheet_(ss) {
  const active = ss.getActiveSheet();
  if (active && readLayout_(active).missing.length === 0) return active;
  const chosen = Number(PropertiesService.getDocumentProperties().getProperty(DOC_INVOICE_SHEET) || 0);
  const byChoice = chosen ? sheetById_(ss, chosen) : null;
  if (byChoice && readLayout_(byChoice).missing.length === 0) return byChoice;
  const candidates = invoiceSheets_(ss);
  if (candidates.length === 1) return candidates[0];
  if (candidates.length > 1) {
    throw new Error('This tab has no invoice headers, and ' + candidates.length + ' tabs do (' +
      candidates.map((s) => '“' + s.getName() + '”').join(', ') + '). Open the tab to work on, or choose it in ' +
      'Invoice Collector › Settings.');
  }
  const missing = active ? readLayout_(active).missing : REQUIRED_HEADERS;
  throw new Error('No tab has the invoice headers in its first row (this one lacks ' + missing.join(', ') + '). ' +
    'Put invoice_id, client_name, client_email, amount and due_date in row 1.');
}

/**
 * Appends whichever output columns are missing at the end of the header row
 * (one write), and gives a new last_sent_at column a date format.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @return {SheetLayout} The layout after the columns exist.
 */
function ensureOutputColumns_(sheet, layout) {
  const present = [layout.stageColumn, layout.sentAtColumn, layout.statusColumn];
  const missing = OUTPUT_COLUMNS.filter((_, i) => !present[i]);
  if (!missing.length) return layout;
  const first = layout.headers.length + 1;
  const needed = first + missing.length - 1 - sheet.getMaxColumns();
  if (needed > 0) sheet.insertColumnsAfter(sheet.getMaxColumns(), needed);
  sheet.getRange(1, first, 1, missing.length).setValues([missing]);
  const updated = readLayout_(sheet);
  if (missing.indexOf('last_sent_at') >= 0 && sheet.getMaxRows() > 1) {
    sheet.getRange(2, updated.sentAtColumn, sheet.getMaxRows() - 1, 1).setNumberFormat('yyyy-mm-dd');
  }
  return updated;
}

/**
 * The column of a header, appended at the end of the header row when the tab
 * lacks it (matched as the API matches headers).
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @param {string} header         e.g. "pause_until".
 * @param {string} numberFormat   Given to a new column's cells below the header, e.g. "yyyy-mm-dd".
 * @return {number} The column, 1-based.
 */
function ensureColumn_(sheet, layout, header, numberFormat) {
  const existing = layout.headers.map(normalizeHeader_).indexOf(normalizeHeader_(header)) + 1;
  if (existing) return existing;
  const column = layout.headers.length + 1;
  if (column > sheet.getMaxColumns()) sheet.insertColumnsAfter(sheet.getMaxColumns(), column - sheet.getMaxColumns());
  sheet.getRange(1, column).setValue(header);
  if (sheet.getMaxRows() > 1) sheet.getRange(2, column, sheet.getMaxRows() - 1, 1).setNumberFormat(numberFormat);
  return column;
}

/**
 * Turns one cell into what the API expects: dates as YYYY-MM-DD in the
 * spreadsheet's timezone, numbers as numbers, blanks as "".
 * @param {unknown} value
 * @param {string} timeZone
 * @return {string|number|boolean}
 */
function cellToJson_(value, timeZone) {
  // Sheets hands back Date objects for date cells. Compare the tag, not
  // instanceof: the Date may come from another realm.
  if (Object.prototype.toString.call(value) === '[object Date]') {
    const date = /** @type {Date} */ (value);
    return isNaN(date.getTime()) ? '' : Utilities.formatDate(date, timeZone, 'yyyy-MM-dd');
  }
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  if (value === null || value === undefined) return '';
  return String(value);
}

/**
 * Builds the API payload for one sheet row, keyed by the sheet's own headers.
 * @param {unknown[]} values     The row's cells.
 * @param {number} rowNumber     1-based sheet row.
 * @param {string[]} headers
 * @param {string} timeZone
 * @return {Object<string, string|number|boolean>|null} null for a blank row.
 */
function rowToInvoice_(values, rowNumber, headers, timeZone) {
  /** @type {Object<string, string|number|boolean>} */
  const invoice = { row: rowNumber };
  let blank = true;
  headers.forEach((header, i) => {
    if (!header || header === 'row') return;
    const cell = cellToJson_(values[i], timeZone);
    if (cell !== '') blank = false;
    invoice[header] = cell;
  });
  return blank ? null : invoice;
}

/**
 * One row as read for the API.
 * @typedef {Object} ReadRow
 * @property {number} row
 * @property {string} id            Its invoice id, '' when it has none.
 * @property {string} fingerprint   For a row without an id: how to know it again.
 * @property {Object<string, string|number|boolean>} invoice
 */

/**
 * The rows of one chunk as API invoices. With no currency column, each row's
 * currency is the one its amount cell shows (its number format for a number,
 * its sign or code for text), else the default currency from Settings: a
 * sheet formatted in euros is drafted in euros.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @param {number} firstRow
 * @param {number} rowCount
 * @param {string} timeZone
 * @param {string} defaultCurrency
 * @return {ReadRow[]}
 */
function readInvoices_(sheet, layout, firstRow, rowCount, timeZone, defaultCurrency) {
  const values = sheet.getRange(firstRow, 1, rowCount, layout.headers.length).getValues();
  const formats = !layout.currencyColumn && layout.amountColumn
    ? sheet.getRange(firstRow, layout.amountColumn, rowCount, 1).getNumberFormats() : null;
  /** @type {ReadRow[]} */
  const out = [];
  values.forEach((cells, i) => {
    const invoice = rowToInvoice_(cells, firstRow + i, layout.headers, timeZone);
    if (!invoice) return;
    const id = layout.invoiceIdColumn ? String(cells[layout.invoiceIdColumn - 1]).trim() : '';
    const fingerprint = id ? '' : rowFingerprint_(invoice);
    if (formats) {
      const amount = cells[layout.amountColumn - 1];
      const shown = typeof amount === 'number' ? currencyOfFormat_(formats[i][0]) : currencyOfText_(String(amount));
      invoice.currency = shown || defaultCurrency;
    }
    out.push({ row: firstRow + i, id: id, fingerprint: fingerprint, invoice: invoice });
  });
  return out;
}

/**
 * Finds invoice ids used on more than one row of the whole sheet. Chunks are
 * sent separately, so the API alone could not see a copy in another chunk.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @return {Object<string, number[]>} id → rows, only for duplicated ids.
 */
function duplicateInvoiceIds_(sheet, layout) {
  const rowsById = rowsByInvoiceId_(sheet, layout);
  /** @type {Object<string, number[]>} */
  const duplicates = {};
  Object.keys(rowsById).forEach((id) => {
    if (rowsById[id].length > 1) duplicates[id] = rowsById[id];
  });
  return duplicates;
}

/**
 * Every invoice id of the sheet and the rows that hold it now (one read).
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @return {Object<string, number[]>}
 */
function rowsByInvoiceId_(sheet, layout) {
  const lastRow = sheet.getLastRow();
  /** @type {Object<string, number[]>} */
  const rowsById = {};
  if (lastRow < 2 || !layout.invoiceIdColumn) return rowsById;
  sheet.getRange(2, layout.invoiceIdColumn, lastRow - 1, 1).getValues().forEach((cell, i) => {
    const id = String(cell[0]).trim();
    if (!id) return;
    if (!Object.prototype.hasOwnProperty.call(rowsById, id)) rowsById[id] = [];
    rowsById[id].push(i + 2);
  });
  return rowsById;
}
