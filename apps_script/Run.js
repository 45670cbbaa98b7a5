/**
 * @fileoverview A run over the invoices tab, one chunk per call. The sidebar
 * calls beginRun once, then runChunk for each chunk — again for the same chunk
 * while the API says rows are `remaining` (it stops drafting after its time
 * budget) — so every Apps Script execution and every HTTP call stays short. A
 * stopped run is simply run again: the API never drafts the same invoice and
 * stage twice.
 */

/** Rows sent to the API per request (and per execution). */
const CHUNK_SIZE = 200;

/** How long a run waits for another run's write to finish. */
const LOCK_WAIT_MS = 30 * 1000;

/** Scopes Generate needs; granular consent lets a user untick any of them. */
const GENERATE_SCOPES = [
  'https://www.googleapis.com/auth/gmail.compose',
  'https://www.googleapis.com/auth/script.external_request',
  'https://www.googleapis.com/auth/spreadsheets.currentonly',
];

/**
 * @typedef {'preview'|'generate'} RunMode
 */

/**
 * @typedef {Object} RunInfo
 * @property {RunMode} mode
 * @property {string} today        YYYY-MM-DD in the spreadsheet's timezone.
 * @property {string} timezone
 * @property {number} sheetId      The tab, by id: a rename mid-run does not lose it.
 * @property {string} sheetName
 * @property {number} totalRows    Data rows below the header.
 * @property {number} chunkSize
 * @property {number} chunkCount
 */

/**
 * A row as the sidebar shows it.
 * @typedef {Object} SidebarRow
 * @property {number} row
 * @property {string} invoice_id
 * @property {string} client_name
 * @property {number|null} days_overdue
 * @property {number|null} stage
 * @property {string} action
 * @property {string} reason
 * @property {string} message
 * @property {Object<string, string>|null} errors
 * @property {string} amount_formatted
 * @property {string} balance       Decimal string of the open balance, '' when unknown.
 * @property {string} currency
 * @property {string[]} to
 * @property {string} subject
 * @property {string} body          Preview only: the email as it will be drafted.
 * @property {string} draft_url
 * @property {boolean} retryable
 * @property {string} fix           Error rows: what to change in the sheet, in plain words.
 * @property {string} draft_id      Rows of one statement share it.
 * @property {string} status        The reminder_status written back ('' when none).
 * @property {string} sent_on       The day of the draft (YYYY-MM-DD), '' when none.
 * @property {string} draft_on      not_business_day: the day it will be drafted.
 * @property {string} drafted_by    duplicate: the teammate whose Gmail Drafts hold it.
 * @property {string} waiting_since previous_unsent: the day the unsent draft was made.
 * @property {string} promised_date The row's promised_date cell as sent, '' when none.
 * @property {string} pause_until   The row's pause_until cell as sent, '' when none.
 */

/**
 * @typedef {Object} ChunkResult
 * @property {number} chunkIndex
 * @property {number} firstRow
 * @property {number} rowCount      Sheet rows covered by this chunk.
 * @property {SidebarRow[]} rows
 * @property {ApiTotal[]} totals
 * @property {ApiAging[]} aging     Preview only: this chunk's aging per currency.
 * @property {number} written       Rows whose output cells were written.
 * @property {Unwritten[]} unwritten Results that could not be written (the row moved, vanished or doubled).
 * @property {number} remaining     Rows due a draft the server had no time for: call runChunk again.
 * @property {string} stopped       "" or why the run must stop (e.g. gmail_unauthorized).
 * @property {string} stoppedMessage
 */

/**
 * Called by the sidebar to start a run: finds the invoices tab, checks that
 * Generate may create drafts, adds missing output columns (generate only),
 * fixes "today" in the spreadsheet's timezone and says how many chunks there are.
 * @param {RunMode} mode
 * @return {RunInfo}
 */
function beginRun(mode) {
  const settings = readApiSettings_();
  if (apiUrlProblem_(settings.apiUrl) || !settings.apiKey) {
    throw new Error('Invoice Collector is not set up yet: open Invoice Collector › Settings and enter the ' +
      'server address and API key.');
  }
  if (mode === 'generate') requireGenerateScopes_(false);
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  return startRun_(ss, findInvoiceSheet_(ss), mode);
}

/**
 * The RunInfo of a run over one tab (adds the output columns when generating).
 * @param {GoogleAppsScript.Spreadsheet.Spreadsheet} ss
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {RunMode} mode
 * @return {RunInfo}
 */
function startRun_(ss, sheet, mode) {
  if (mode === 'generate') withDocumentLock_(() => ensureOutputColumns_(sheet, readLayout_(sheet)));
  const timezone = ss.getSpreadsheetTimeZone();
  const totalRows = Math.max(0, sheet.getLastRow() - 1);
  return {
    mode: mode === 'generate' ? 'generate' : 'preview',
    today: todayIn_(timezone),
    timezone: timezone,
    sheetId: sheet.getSheetId(),
    sheetName: sheet.getName(),
    totalRows: totalRows,
    chunkSize: CHUNK_SIZE,
    chunkCount: Math.ceil(totalRows / CHUNK_SIZE),
  };
}

/**
 * Stops with a plain message when the user has not granted what Generate
 * needs (with granular consent a user can untick "Manage drafts"). From a menu
 * item Apps Script shows Google's consent screen for the missing scopes; a
 * sidebar call cannot, so it says where the screen is.
 * @param {boolean} prompt  True from a menu item: let Apps Script ask.
 */
function requireGenerateScopes_(prompt) {
  if (prompt) {
    ScriptApp.requireScopes(ScriptApp.AuthMode.FULL, GENERATE_SCOPES);
    return;
  }
  try {
    ScriptApp.requireScopes(ScriptApp.AuthMode.FULL, GENERATE_SCOPES);
  } catch (err) {
    throw new Error('Invoice Collector may not create Gmail drafts for you yet. Choose Extensions › Invoice ' +
      'Collector › Generate today\'s drafts: Google asks for permission — allow "Manage drafts and send emails" ' +
      '(it only ever creates drafts; nothing is sent without you).');
  }
}

/**
 * Called by the sidebar once per chunk (and again while `remaining` > 0):
 * sends the chunk's rows to the API (/v1/plan to preview, /v1/drafts to
 * generate) and, when generating, writes the results next to their invoices.
 * @param {RunInfo} run          As returned by beginRun.
 * @param {number} chunkIndex    0-based.
 * @return {ChunkResult}
 */
function runChunk(run, chunkIndex) {
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const sheet = sheetById_(ss, run.sheetId);
  if (!sheet) throw new Error('The tab "' + run.sheetName + '" is gone. Start again.');
  return processChunk_(ss, sheet, run, chunkIndex, '');
}

/**
 * The work of one chunk, shared by the sidebar and the daily run.
 * @param {GoogleAppsScript.Spreadsheet.Spreadsheet} ss
 * @param {GoogleAppsScript.Spreadsheet.Sheet} sheet
 * @param {RunInfo} run
 * @param {number} chunkIndex
 * @param {string} statusSuffix
 * @return {ChunkResult}
 */
function processChunk_(ss, sheet, run, chunkIndex, statusSuffix) {
  const generate = run.mode === 'generate';
  const layout = readLayout_(sheet);
  if (layout.missing.length) {
    throw new Error('The tab "' + sheet.getName() + '" no longer has the invoice headers (' + layout.missing.join(', ') + ').');
  }
  const firstRow = 2 + chunkIndex * run.chunkSize;
  const rowCount = Math.min(run.chunkSize, sheet.getLastRow() - firstRow + 1);
  /** @type {ChunkResult} */
  const result = {
    chunkIndex: chunkIndex, firstRow: firstRow, rowCount: Math.max(0, rowCount), rows: [], totals: [], aging: [],
    written: 0, unwritten: [], remaining: 0, stopped: '', stoppedMessage: '',
  };
  if (rowCount <= 0) return result;
  const read = readInvoices_(sheet, layout, firstRow, rowCount, run.timezone, readDefaultCurrency_());
  const duplicates = duplicateInvoiceIds_(sheet, layout);
  /** @type {Object<string, string|number|boolean>[]} */
  const invoices = [];
  /** @type {ApiRow[]} */
  const localRows = [];
  /** @type {Object<number, string>} */
  const fingerprints = {};
  /** @type {Object<number, PauseCells>} */
  const pauses = {};
  read.forEach((r) => {
    pauses[r.row] = pauseCells_(r.invoice);
    if (r.id && duplicates[r.id]) {
      localRows.push(duplicateRow_(r.invoice, r.id, duplicates[r.id]));
      return;
    }
    if (!r.id) fingerprints[r.row] = r.fingerprint;
    invoices.push(r.invoice);
  });
  /** @type {ApiResult|null} */
  let response = null;
  if (invoices.length) {
    const body = { today: run.today, timezone: run.timezone, scope: ss.getId(), invoices: invoices };
    response = /** @type {ApiResult} */ (callApi_(readApiSettings_(), 'post', generate ? '/v1/drafts' : '/v1/plan', body, {
      idempotencyKey: generate ? idempotencyKey_(body) : undefined,
      googleToken: generate,
    }));
  }
  const apiRows = (response ? response.rows : []).concat(localRows).sort((a, b) => a.row - b.row);
  if (generate) {
    const writes = planWrites_(apiRows, run.timezone, run.today, statusSuffix, fingerprints);
    const outcome = withDocumentLock_(() => writeBack_(sheet, writes, run.timezone));
    result.written = outcome.written;
    result.unwritten = outcome.unwritten;
    // Missing until the server has a time budget: then it always finished.
    result.remaining = response && typeof response.remaining === 'number' ? response.remaining : 0;
  }
  result.rows = apiRows.map((r) => toSidebarRow_(r, !generate, pauses[r.row]));
  result.totals = response && response.totals ? response.totals : [];
  result.aging = response && response.aging ? response.aging : [];
  if (response && response.stopped) {
    result.stopped = response.stopped;
    result.stoppedMessage = response.stopped === 'gmail_unauthorized'
      ? 'Gmail did not accept your permission, so no drafts could be made. Choose Extensions › Invoice ' +
        'Collector › Generate today\'s drafts and allow "Manage drafts and send emails" when Google asks.'
      : 'The server stopped this run (' + response.stopped + ').';
  }
  return result;
}

/**
 * A local error row for an invoice id that appears more than once in the sheet.
 * @param {Object<string, string|number|boolean>} invoice
 * @param {string} id
 * @param {number[]} rows
 * @return {ApiRow}
 */
function duplicateRow_(invoice, id, rows) {
  const clientKey = Object.keys(invoice).filter((k) => normalizeHeader_(k) === 'clientname')[0];
  return {
    row: Number(invoice.row),
    invoice_id: id,
    client_name: clientKey ? String(invoice[clientKey]) : '',
    days_overdue: null,
    stage: null,
    action: 'error',
    reason: 'duplicate_invoice_id',
    message: 'Invoice ID ' + id + ' is used on rows ' + rows.join(', ') + '; each invoice needs its own ID.',
    errors: { invoice_id: 'duplicate' },
    // The API's words for the same problem, so both kinds group under one fix.
    fix: id + ' appears on rows ' + rows.slice(0, -1).join(', ') + ' and ' + rows[rows.length - 1] +
      ': keep one, or give each invoice its own ID.',
  };
}

/**
 * A row's promise and pause cells, as sent to the API.
 * @typedef {Object} PauseCells
 * @property {string} promised_date
 * @property {string} pause_until
 */

/**
 * The promised_date and pause_until cells of a read invoice ('' when the
 * column is missing or blank): the API says a row is promised or paused, the
 * sheet says until when.
 * @param {Object<string, string|number|boolean>} invoice  Keyed by the sheet's headers.
 * @return {PauseCells}
 */
function pauseCells_(invoice) {
  /** @type {PauseCells} */
  const cells = { promised_date: '', pause_until: '' };
  Object.keys(invoice).forEach((header) => {
    const key = normalizeHeader_(header);
    if (key === 'promiseddate') cells.promised_date = String(invoice[header]);
    if (key === 'pauseuntil') cells.pause_until = String(invoice[header]);
  });
  return cells;
}

/**
 * What the sidebar shows of an API row; the email body only for a preview.
 * @param {ApiRow} r
 * @param {boolean} withBody
 * @param {PauseCells=} cells  The row's promise and pause cells.
 * @return {SidebarRow}
 */
function toSidebarRow_(r, withBody, cells) {
  const wb = r.writeback;
  return {
    row: r.row,
    invoice_id: r.invoice_id || '',
    client_name: r.client_name || '',
    days_overdue: typeof r.days_overdue === 'number' ? r.days_overdue : null,
    stage: typeof r.stage === 'number' ? r.stage : null,
    action: r.action,
    reason: r.reason,
    message: r.message || '',
    errors: r.errors || null,
    amount_formatted: r.amount_formatted || '',
    balance: r.balance || '',
    currency: r.currency || '',
    to: r.to || [],
    subject: r.subject || '',
    body: withBody ? r.body || '' : '',
    draft_url: r.draft_url || '',
    retryable: !!r.retryable,
    fix: r.fix || '',
    draft_id: r.draft_id || '',
    status: wb && wb.reminder_status ? wb.reminder_status : '',
    sent_on: wb && wb.last_sent_at ? wb.last_sent_at : '',
    draft_on: r.draft_on || '',
    drafted_by: r.drafted_by || '',
    waiting_since: r.waiting_since || '',
    promised_date: cells ? cells.promised_date : '',
    pause_until: cells ? cells.pause_until : '',
  };
}

/**
 * A key that is the same for an identical request by the same person, so a
 * retried request (double click, network hiccup) is recognised by the API.
 * A teammate sending the same rows is not retrying: with the person in the
 * key, the API answers them `duplicate`, naming whose Drafts hold the draft,
 * instead of replaying the first person's answer as their own.
 * @param {Object} body
 * @return {string}
 */
function idempotencyKey_(body) {
  const digest = Utilities.computeDigest(Utilities.DigestAlgorithm.SHA_256,
    Session.getTemporaryActiveUserKey() + '\n' + JSON.stringify(body), Utilities.Charset.UTF_8);
  return digest.map((b) => ('0' + (b & 0xff).toString(16)).slice(-2)).join('');
}

/**
 * Today's date in a timezone, as YYYY-MM-DD.
 * @param {string} timezone
 * @return {string}
 */
function todayIn_(timezone) {
  return Utilities.formatDate(new Date(), timezone, 'yyyy-MM-dd');
}

/**
 * Runs fn holding the document lock, so two clicks, two editors and the daily
 * run write one at a time. waitLock blocks until the other run's write is done
 * (a write takes well under a second) or LOCK_WAIT_MS pass.
 * @template T
 * @param {() => T} fn
 * @return {T}
 */
function withDocumentLock_(fn) {
  const lock = LockService.getDocumentLock();
  if (!lock) return fn();
  try {
    lock.waitLock(LOCK_WAIT_MS);
  } catch (err) {
    throw new Error('Another Invoice Collector run has been writing to this sheet for over ' + LOCK_WAIT_MS / 1000 +
      ' seconds. Try again in a minute; nothing is drafted twice.');
  }
  try {
    return fn();
  } finally {
    lock.releaseLock();
  }
}
