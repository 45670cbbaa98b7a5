/**
 * @fileoverview Reading invoices out of the sheet and writing results back
 * next to them. The only cells ever written are the three output columns
 * (and, once, their header cells when they are missing).
 */

/** The columns the add-on writes, in the order they are appended. */
const OUTPUT_COLUMNS = ['last_stage_sent', 'last_sent_at', 'reminder_status'];

/** Document property remembering which tab holds the invoices (for the daily run). */
const DOC_INVOICE_SHEET = 'IC_INVOICE_SHEET';

/**
 * Where things are in the invoices tab. Column numbers are 1-based; 0 = missing.
 * @typedef {Object} SheetLayout
 * @property {string[]} headers          The header row as text, one per column.
 * @property {number} invoiceIdColumn
 * @property {number} stageColumn
 * @property {number} sentAtColumn
 * @property {number} statusColumn
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
    stageColumn: column('last_stage_sent'),
    sentAtColumn: column('last_sent_at'),
    statusColumn: column('reminder_status'),
  };
}

/**
 * Finds the invoices tab: the one a person last ran from, else the active tab
 * if it has an invoice_id column, else the first tab that has one.
 * @param {GoogleAppsScript.Spreadsheet.Spreadsheet} ss
 * @return {GoogleAppsScript.Spreadsheet.Sheet}
 */
function findInvoiceSheet_(ss) {
  const remembered = PropertiesService.getDocumentProperties().getProperty(DOC_INVOICE_SHEET);
  const byName = remembered ? ss.getSheetByName(remembered) : null;
  if (byName && readLayout_(byName).invoiceIdColumn) return byName;
  const active = ss.getActiveSheet();
  if (active && readLayout_(active).invoiceIdColumn) return active;
  const found = ss.getSheets().filter((s) => readLayout_(s).invoiceIdColumn > 0)[0];
  if (found) return found;
  throw new Error('No tab in this spreadsheet has an "invoice_id" column in its first row. ' +
    'Put the invoice headers (invoice_id, client_name, client_email, amount, due_date, …) in row 1.');
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
 * Finds invoice ids used on more than one row of the whole sheet. Chunks are
 * sent separately, so the API alone could not see a copy in another chunk.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @return {Object<string, number[]>} id → rows, only for duplicated ids.
 */
function duplicateInvoiceIds_(sheet, layout) {
  const lastRow = sheet.getLastRow();
  /** @type {Object<string, number[]>} */
  const rowsById = {};
  if (lastRow < 2 || !layout.invoiceIdColumn) return rowsById;
  sheet.getRange(2, layout.invoiceIdColumn, lastRow - 1, 1).getValues().forEach((cell, i) => {
    const id = String(cell[0]).trim();
    if (!id) return;
    (rowsById[id] = rowsById[id] || []).push(i + 2);
  });
  /** @type {Object<string, number[]>} */
  const duplicates = {};
  Object.keys(rowsById).forEach((id) => {
    if (rowsById[id].length > 1) duplicates[id] = rowsById[id];
  });
  return duplicates;
}

/**
 * What to write for one row: the three output values (undefined = leave as is).
 * @typedef {Object} RowWrite
 * @property {number} row
 * @property {number=} stage
 * @property {Date=} sentAt
 * @property {string} status
 * @property {string=} link
 */

/**
 * Decides what each API row writes back: drafted (or already-drafted) rows get
 * stage, date and a status linking to the draft; error rows get only a status
 * saying why; skipped rows are left exactly as they were.
 * @param {ApiRow[]} rows
 * @param {string} timeZone
 * @param {string} today
 * @param {string} suffix   Appended to statuses, e.g. " (daily run)".
 * @return {RowWrite[]}
 */
function planWrites_(rows, timeZone, today, suffix) {
  /** @type {RowWrite[]} */
  const writes = [];
  rows.forEach((r) => {
    if (r.writeback) {
      const wb = r.writeback;
      writes.push({
        row: r.row,
        stage: Number(wb.last_stage_sent),
        // Midnight of that day in the spreadsheet's zone, so the cell shows the same day.
        sentAt: Utilities.parseDate(wb.last_sent_at, timeZone, 'yyyy-MM-dd'),
        status: (wb.reminder_status || ('Drafted stage ' + wb.last_stage_sent + ' on ' + wb.last_sent_at)) + suffix,
        link: r.draft_url || undefined,
      });
    } else if (r.action === 'error') {
      const why = r.message || r.reason;
      const retry = r.retryable ? ' Running again will retry it.' : '';
      writes.push({ row: r.row, status: 'Not drafted on ' + today + ': ' + why + retry + suffix });
    }
  });
  return writes;
}

/**
 * Writes results into the output columns of rows [firstRow, firstRow+count).
 * One setValues per contiguous block of value columns and one
 * setRichTextValues for reminder_status, over the span of changed rows; cells
 * of unchanged rows inside the span are written back as they were (formulas
 * kept as formulas). If an unchanged cell cannot be reproduced exactly, the
 * span is split into runs of changed rows instead.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @param {RowWrite[]} writes
 * @return {number} The number of rows written.
 */
function writeResults_(sheet, layout, writes) {
  if (!writes.length) return 0;
  const sorted = writes.slice().sort((a, b) => a.row - b.row);
  const span = { first: sorted[0].row, last: sorted[sorted.length - 1].row };
  if (!writeSpan_(sheet, layout, sorted, span, false)) {
    contiguousRuns_(sorted).forEach((run) => writeSpan_(sheet, layout, run, {
      first: run[0].row, last: run[run.length - 1].row,
    }, true));
  }
  return sorted.length;
}

/**
 * Splits writes (sorted by row) into runs of consecutive rows.
 * @param {RowWrite[]} sorted
 * @return {RowWrite[][]}
 */
function contiguousRuns_(sorted) {
  /** @type {RowWrite[][]} */
  const runs = [];
  sorted.forEach((w) => {
    const run = runs[runs.length - 1];
    if (run && run[run.length - 1].row === w.row - 1) run.push(w);
    else runs.push([w]);
  });
  return runs;
}

/**
 * Writes one span of rows. Returns false, having written nothing, when an
 * unchanged cell in the span holds something that cannot be written back as is.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @param {RowWrite[]} writes        Sorted by row, all inside the span.
 * @param {{first: number, last: number}} span
 * @param {boolean} everyRowChanges  True when the span has no unchanged rows.
 * @return {boolean}
 */
function writeSpan_(sheet, layout, writes, span, everyRowChanges) {
  const height = span.last - span.first + 1;
  /** @type {Object<number, RowWrite>} */
  const byRow = {};
  writes.forEach((w) => { byRow[w.row] = w; });
  const valueBlocks = contiguousBlocks_([layout.stageColumn, layout.sentAtColumn]);
  /** @type {{column: number, width: number, values: any[][]}[]} */
  const plannedBlocks = [];
  for (const block of valueBlocks) {
    const range = sheet.getRange(span.first, block.column, height, block.width);
    const needsOld = !everyRowChanges || writes.some((w) => w.stage === undefined);
    const old = needsOld ? range.getValues() : null;
    const formulas = needsOld ? range.getFormulas() : null;
    /** @type {any[][]} */
    const values = [];
    for (let i = 0; i < height; i++) {
      const w = byRow[span.first + i];
      /** @type {any[]} */
      const line = [];
      for (let j = 0; j < block.width; j++) {
        const column = block.column + j;
        if (w && w.stage !== undefined) {
          line.push(column === layout.stageColumn ? w.stage : w.sentAt);
        } else {
          const formula = formulas ? formulas[i][j] : '';
          line.push(formula || (old ? old[i][j] : ''));
        }
      }
      values.push(line);
    }
    plannedBlocks.push({ column: block.column, width: block.width, values: values });
  }
  const statusRange = sheet.getRange(span.first, layout.statusColumn, height, 1);
  /** @type {GoogleAppsScript.Spreadsheet.RichTextValue[][]} */
  const statuses = [];
  /** @type {(GoogleAppsScript.Spreadsheet.RichTextValue|null)[][]} */
  const oldStatuses = everyRowChanges ? [] : statusRange.getRichTextValues();
  const oldStatusFormulas = everyRowChanges ? [] : statusRange.getFormulas();
  for (let i = 0; i < height; i++) {
    const w = byRow[span.first + i];
    if (w) {
      statuses.push([statusRichText_(w.status, w.link)]);
      continue;
    }
    const kept = oldStatuses[i][0];
    if (!kept || oldStatusFormulas[i][0]) return false;
    statuses.push([kept]);
  }
  plannedBlocks.forEach((b) => sheet.getRange(span.first, b.column, height, b.width).setValues(b.values));
  statusRange.setRichTextValues(statuses);
  return true;
}

/**
 * Groups 1-based column numbers into contiguous blocks.
 * @param {number[]} columns
 * @return {{column: number, width: number}[]}
 */
function contiguousBlocks_(columns) {
  /** @type {{column: number, width: number}[]} */
  const blocks = [];
  columns.slice().sort((a, b) => a - b).forEach((c) => {
    const last = blocks[blocks.length - 1];
    if (last && last.column + last.width === c) last.width++;
    else blocks.push({ column: c, width: 1 });
  });
  return blocks;
}

/**
 * A status cell: the text, linked as a whole to the draft when there is one.
 * @param {string} text
 * @param {string=} link
 * @return {GoogleAppsScript.Spreadsheet.RichTextValue}
 */
function statusRichText_(text, link) {
  const builder = SpreadsheetApp.newRichTextValue().setText(text);
  if (link) builder.setLinkUrl(link);
  return builder.build();
}
