/**
 * @fileoverview Writing each result next to its invoice. A chunk reads its
 * rows, waits seconds on the API, then writes; meanwhile a person may sort,
 * filter, insert or delete rows (a lock stops other scripts, not people). So
 * results are written by invoice id, to the row that holds that id at the
 * moment of writing — found again under the document lock — never to the row
 * number read before the API call.
 */

/**
 * What to write for one invoice: the three output values (undefined = leave
 * as is), and how to find its row again.
 * @typedef {Object} RowWrite
 * @property {number} readRow        The row it was read from (before the API call).
 * @property {string} invoiceId      '' for a row without an id.
 * @property {string} fingerprint    For a row without an id: its cells when read.
 * @property {boolean} allCopies     An error about the id itself: written on every row that holds it.
 * @property {boolean} drafted       A draft exists for it.
 * @property {number=} stage
 * @property {Date=} sentAt
 * @property {string} status
 * @property {string=} link
 * @property {number=} row           The row it is written to, once found.
 */

/**
 * A result that could not be written, in the words the sidebar shows.
 * @typedef {Object} Unwritten
 * @property {string} invoice_id
 * @property {number} row            Where it was read.
 * @property {boolean} drafted
 * @property {string} message
 */

/**
 * Decides what each API row writes back: drafted (or already-drafted) rows get
 * stage, date and a status linking to the draft; error rows get only a status
 * saying why; skipped rows are left exactly as they were.
 * @param {ApiRow[]} rows
 * @param {string} timeZone
 * @param {string} today
 * @param {string} suffix                       Appended to statuses, e.g. " (daily run)".
 * @param {Object<number, string>} fingerprints Read row → fingerprint, for rows without an id.
 * @return {RowWrite[]}
 */
function planWrites_(rows, timeZone, today, suffix, fingerprints) {
  /** @type {RowWrite[]} */
  const writes = [];
  rows.forEach((r) => {
    const base = {
      readRow: r.row,
      invoiceId: String(r.invoice_id || '').trim(),
      fingerprint: fingerprints[r.row] || '',
      allCopies: r.reason === 'duplicate_invoice_id',
      drafted: !!r.draft_id,
    };
    if (r.writeback) {
      const wb = r.writeback;
      writes.push(Object.assign(base, {
        stage: Number(wb.last_stage_sent),
        // Midnight of that day in the spreadsheet's zone, so the cell shows the same day.
        sentAt: Utilities.parseDate(wb.last_sent_at, timeZone, 'yyyy-MM-dd'),
        status: (wb.reminder_status || ('Drafted stage ' + wb.last_stage_sent + ' on ' + wb.last_sent_at)) + suffix,
        link: r.draft_url || undefined,
      }));
    } else if (r.action === 'error') {
      const why = r.message || r.reason;
      const retry = r.retryable ? ' Running again will retry it.' : '';
      writes.push(Object.assign(base, { status: 'Not drafted on ' + today + ': ' + why + retry + suffix }));
    }
  });
  return writes;
}

/**
 * A row's identity for a row without an invoice id: its cells, whatever row
 * number they sit at.
 * @param {Object<string, string|number|boolean>} invoice  As rowToInvoice_ makes it.
 * @return {string}
 */
function rowFingerprint_(invoice) {
  return JSON.stringify(Object.keys(invoice).filter((k) => k !== 'row').sort().map((k) => [k, invoice[k]]));
}

/**
 * Writes results where their invoices are now. Call it holding the document
 * lock: it reads the id column again and writes in the same breath.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {RowWrite[]} writes
 * @param {string} timeZone
 * @return {{written: number, unwritten: Unwritten[]}}
 */
function writeBack_(sheet, writes, timeZone) {
  if (!writes.length) return { written: 0, unwritten: [] };
  // Columns may have moved too: read the layout again, and add an output
  // column someone deleted.
  const layout = ensureOutputColumns_(sheet, readLayout_(sheet));
  const rowsById = rowsByInvoiceId_(sheet, layout);
  const idless = writes.filter((w) => !w.invoiceId);
  const current = idless.length ? fingerprintsNow_(sheet, layout, idless.map((w) => w.readRow), timeZone) : {};
  /** @type {RowWrite[]} */
  const targets = [];
  /** @type {Unwritten[]} */
  const unwritten = [];
  /** @type {Object<number, boolean>} */
  const taken = {};
  writes.forEach((w) => {
    const rows = w.invoiceId ? (rowsById[w.invoiceId] || []) : (current[w.readRow] === w.fingerprint ? [w.readRow] : []);
    if (w.allCopies) {
      // The error is about the id being on several rows: say so on each, as
      // long as it still is.
      if (rows.length < 2) return;
    } else if (rows.length !== 1) {
      unwritten.push(unwritten_(w, rows));
      return;
    }
    rows.forEach((row) => {
      if (taken[row]) return;
      taken[row] = true;
      targets.push(Object.assign({}, w, { row: row }));
    });
  });
  return { written: writeResults_(sheet, layout, targets), unwritten: unwritten };
}

/**
 * Why a result was not written, and what to do.
 * @param {RowWrite} w
 * @param {number[]} rows  Where its id is now.
 * @return {Unwritten}
 */
function unwritten_(w, rows) {
  const who = w.invoiceId || 'Row ' + w.readRow;
  let message;
  if (rows.length > 1) {
    message = who + ' is now on rows ' + rows.join(' and ') + (w.drafted
      ? ': its draft exists, the sheet was not updated — give each invoice its own ID, then Generate again to write it back.'
      : ': the sheet was not updated — give each invoice its own ID.');
  } else if (w.drafted) {
    message = who + ' moved or was deleted: its draft exists, the sheet was not updated — Generate again to write it back.';
  } else {
    message = who + (w.invoiceId ? ' moved or was deleted' : ' changed') + ' while this ran: its row was not updated.';
  }
  return { invoice_id: w.invoiceId, row: w.readRow, drafted: w.drafted, message: message };
}

/**
 * Fingerprints of some rows as they are now (one read over their span).
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @param {number[]} rows
 * @param {string} timeZone
 * @return {Object<number, string>}
 */
function fingerprintsNow_(sheet, layout, rows, timeZone) {
  const first = Math.min.apply(null, rows);
  const last = Math.min(Math.max.apply(null, rows), sheet.getLastRow());
  /** @type {Object<number, string>} */
  const out = {};
  if (last < first) return out;
  const values = sheet.getRange(first, 1, last - first + 1, layout.headers.length).getValues();
  rows.forEach((row) => {
    if (row > last || layout.invoiceIdColumn && String(values[row - first][layout.invoiceIdColumn - 1]).trim()) return;
    const invoice = rowToInvoice_(values[row - first], row, layout.headers, timeZone);
    if (invoice) out[row] = rowFingerprint_(invoice);
  });
  return out;
}

/**
 * Writes results into the output columns of their rows. One setValues per
 * contiguous block of value columns and one setRichTextValues for
 * reminder_status, over the span of target rows; cells of other rows inside
 * the span are written back as they were (formulas kept as formulas). If an
 * unchanged status cell cannot be reproduced exactly, the span is split into
 * runs of target rows instead.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {SheetLayout} layout
 * @param {RowWrite[]} writes   Each with its target row.
 * @return {number} The number of rows written.
 */
function writeResults_(sheet, layout, writes) {
  if (!writes.length) return 0;
  const sorted = writes.slice().sort((a, b) => Number(a.row) - Number(b.row));
  const span = { first: Number(sorted[0].row), last: Number(sorted[sorted.length - 1].row) };
  if (!writeSpan_(sheet, layout, sorted, span, false)) {
    contiguousRuns_(sorted).forEach((run) => writeSpan_(sheet, layout, run, {
      first: Number(run[0].row), last: Number(run[run.length - 1].row),
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
    if (run && Number(run[run.length - 1].row) === Number(w.row) - 1) run.push(w);
    else runs.push([w]);
  });
  return runs;
}

/**
 * Writes one span of rows. Returns false, having written nothing, when an
 * unchanged status cell in the span holds something that cannot be written
 * back as is (a formula, a number).
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
  writes.forEach((w) => { byRow[Number(w.row)] = w; });
  /** @type {{column: number, width: number, values: any[][]}[]} */
  const plannedBlocks = [];
  for (const block of contiguousBlocks_([layout.stageColumn, layout.sentAtColumn])) {
    const range = sheet.getRange(span.first, block.column, height, block.width);
    const needsOld = !everyRowChanges || writes.some((w) => w.stage === undefined);
    const old = needsOld ? range.getValues() : null;
    // A cell the run does not change is written back as what it holds: its
    // formula if it has one, not the formula's current value.
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
 * Groups 1-based column (or row) numbers into contiguous blocks.
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

/**
 * Writes pause_until on the rows that hold these invoice ids now — read again
 * here, as for results, since the rows may have been sorted since the sidebar
 * listed them — adding the column at the end of the header row if missing.
 * Call under the document lock. An id that vanished or is on several rows is
 * not written, and said so.
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {string[]} invoiceIds
 * @param {Date|string} value      The day (a date cell), or '' to clear.
 * @return {{written: number, unwritten: string[]}}
 */
function writePauseUntil_(sheet, invoiceIds, value) {
  const layout = readLayout_(sheet);
  const column = ensureColumn_(sheet, layout, 'pause_until', 'yyyy-mm-dd');
  const rowsById = rowsByInvoiceId_(sheet, layout);
  /** @type {number[]} */
  const rows = [];
  /** @type {string[]} */
  const unwritten = [];
  invoiceIds.filter((id, i) => invoiceIds.indexOf(id) === i).forEach((id) => {
    const found = rowsById[id] || [];
    if (found.length === 1) rows.push(found[0]);
    else if (found.length > 1) unwritten.push(id + ' is on rows ' + found.join(' and ') + ': not changed — give each invoice its own ID.');
    else unwritten.push(id + ' moved or was deleted: not changed.');
  });
  // One setValues per run of consecutive rows; other rows' cells are not touched.
  contiguousBlocks_(rows).forEach((run) => {
    const values = [];
    for (let i = 0; i < run.width; i++) values.push([value]);
    sheet.getRange(run.column, column, run.width, 1).setValues(values);
  });
  return { written: rows.length, unwritten: unwritten };
}
