/**
 * @fileoverview Invoice Collector for Google Sheets: the menu, the sidebar and
 * the functions the sidebar calls. A run is driven by the sidebar one chunk at
 * a time (beginRun, then runChunk per chunk), so every Apps Script execution
 * stays far below the six-minute limit and a stopped run is simply run again —
 * the API never drafts the same invoice and stage twice.
 */

/** Rows sent to the API per request (and per execution). */
const CHUNK_SIZE = 200;

/** The daily trigger's handler, and the hour (spreadsheet time) it runs at. */
const DAILY_HANDLER = 'runDailyGeneration';
const DAILY_HOUR = 7;

/** Document property holding the outcome of the last daily run (JSON). */
const DOC_LAST_DAILY_RUN = 'IC_LAST_DAILY_RUN';

/** A daily run stops starting new chunks after this long (limit is 6 min). */
const DAILY_TIME_BUDGET_MS = 4.5 * 60 * 1000;

/**
 * @typedef {'preview'|'generate'} RunMode
 */

/**
 * @typedef {Object} RunInfo
 * @property {RunMode} mode
 * @property {string} today        YYYY-MM-DD in the spreadsheet's timezone.
 * @property {string} timezone
 * @property {string} sheetName
 * @property {number} totalRows    Data rows below the header.
 * @property {number} chunkSize
 * @property {number} chunkCount
 */

/**
 * A row as the sidebar shows it (the API row without the email body).
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
 * @property {string} subject
 * @property {string} draft_url
 * @property {boolean} retryable
 */

/**
 * @typedef {Object} ChunkResult
 * @property {number} chunkIndex
 * @property {number} firstRow
 * @property {number} rowCount      Sheet rows covered by this chunk.
 * @property {SidebarRow[]} rows
 * @property {ApiTotal[]} totals
 * @property {number} written       Rows whose output cells were written.
 * @property {string} stopped       "" or why the run must stop (e.g. gmail_unauthorized).
 * @property {string} stoppedMessage
 */

/**
 * Adds the Invoice Collector menu. Runs as a simple trigger, possibly in
 * AuthMode.NONE (add-on installed but not yet used in this file), where only
 * the menu may be built: nothing here reads properties, the sheet or the network.
 * @param {GoogleAppsScript.Events.SheetsOnOpen | {authMode: GoogleAppsScript.Script.AuthMode}=} e
 */
function onOpen(e) {
  SpreadsheetApp.getUi()
    .createAddonMenu()
    .addItem('Open sidebar', 'showSidebar')
    .addItem('Preview today', 'menuPreviewToday')
    .addItem('Generate today\'s drafts', 'menuGenerateToday')
    .addSeparator()
    .addItem('Settings', 'showSettings')
    .addItem('Install daily trigger', 'menuInstallDailyTrigger')
    .addToUi();
}

/**
 * Runs when the add-on is installed: the same menu as onOpen.
 * @param {GoogleAppsScript.Events.AddonOnInstall} e
 */
function onInstall(e) {
  onOpen(e);
}

/**
 * Opens the sidebar.
 * @param {string=} autoStart  "preview" or "generate" to start right away.
 */
function showSidebar(autoStart) {
  const template = HtmlService.createTemplateFromFile('Sidebar');
  template.autoStart = autoStart === 'preview' || autoStart === 'generate' ? autoStart : '';
  const html = template.evaluate().setTitle('Invoice Collector').setWidth(300);
  SpreadsheetApp.getUi().showSidebar(html);
}

/** Menu: opens the sidebar and previews today. */
function menuPreviewToday() {
  showSidebar('preview');
}

/** Menu: opens the sidebar and generates today's drafts. */
function menuGenerateToday() {
  showSidebar('generate');
}

/** Menu: opens the Settings dialog. */
function showSettings() {
  const html = HtmlService.createTemplateFromFile('Settings').evaluate().setWidth(420).setHeight(380);
  SpreadsheetApp.getUi().showModalDialog(html, 'Invoice Collector settings');
}

/** Menu: installs the daily trigger and says what happened. */
function menuInstallDailyTrigger() {
  const outcome = installDailyTrigger();
  SpreadsheetApp.getUi().alert('Invoice Collector', outcome.message, SpreadsheetApp.getUi().ButtonSet.OK);
}

/**
 * Inlines another HTML file of the project (the apps-script-samples pattern).
 * Called from the sidebar's templates.
 * @param {string} filename  e.g. "Stylesheet".
 * @return {string}
 */
function include(filename) {
  return HtmlService.createHtmlOutputFromFile(filename).getContent();
}

/**
 * Called by the sidebar when it opens: what it needs to draw its header.
 * @return {{configured: boolean, apiUrl: string, timezone: string, today: string,
 *   sheetName: string, dailyTrigger: boolean, lastDailyRun: string}}
 */
function getSidebarState() {
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const timezone = ss.getSpreadsheetTimeZone();
  const settings = readApiSettings_();
  /** @type {string} */
  let sheetName = '';
  try {
    sheetName = findInvoiceSheet_(ss).getName();
  } catch (ignored) {
    sheetName = '';
  }
  return {
    configured: !apiUrlProblem_(settings.apiUrl) && !!settings.apiKey,
    apiUrl: settings.apiUrl,
    timezone: timezone,
    today: todayIn_(timezone),
    sheetName: sheetName,
    dailyTrigger: findDailyTriggers_(ss).length > 0,
    lastDailyRun: PropertiesService.getDocumentProperties().getProperty(DOC_LAST_DAILY_RUN) || '',
  };
}

/**
 * Called by the sidebar when a line is clicked: selects that invoice's row.
 * @param {number} row  1-based sheet row.
 */
function goToRow(row) {
  const sheet = findInvoiceSheet_(SpreadsheetApp.getActiveSpreadsheet());
  sheet.activate();
  sheet.getRange(row, 1, 1, Math.max(1, sheet.getLastColumn())).activate();
}

/**
 * Called by the sidebar to start a run: finds the invoices tab, adds missing
 * output columns (generate only), fixes "today" in the spreadsheet's timezone
 * and says how many chunks to ask for.
 * @param {RunMode} mode
 * @return {RunInfo}
 */
function beginRun(mode) {
  const settings = readApiSettings_();
  const urlProblem = apiUrlProblem_(settings.apiUrl);
  if (urlProblem || !settings.apiKey) {
    throw new Error('Invoice Collector is not set up yet: open Invoice Collector › Settings and enter the ' +
      'server address and API key.');
  }
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const sheet = findInvoiceSheet_(ss);
  PropertiesService.getDocumentProperties().setProperty(DOC_INVOICE_SHEET, sheet.getName());
  if (mode === 'generate') withDocumentLock_(() => ensureOutputColumns_(sheet, readLayout_(sheet)));
  const timezone = ss.getSpreadsheetTimeZone();
  const totalRows = Math.max(0, sheet.getLastRow() - 1);
  return {
    mode: mode === 'generate' ? 'generate' : 'preview',
    today: todayIn_(timezone),
    timezone: timezone,
    sheetName: sheet.getName(),
    totalRows: totalRows,
    chunkSize: CHUNK_SIZE,
    chunkCount: Math.ceil(totalRows / CHUNK_SIZE),
  };
}

/**
 * Called by the sidebar once per chunk: sends CHUNK_SIZE rows to the API
 * (/v1/plan to preview, /v1/drafts to generate) and, when generating, writes
 * the results next to those rows.
 * @param {RunInfo} run          As returned by beginRun.
 * @param {number} chunkIndex    0-based.
 * @return {ChunkResult}
 */
function runChunk(run, chunkIndex) {
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const sheet = ss.getSheetByName(run.sheetName);
  if (!sheet) throw new Error('The tab "' + run.sheetName + '" is gone. Start again.');
  return processChunk_(ss, sheet, run, chunkIndex, '');
}

/**
 * The work of one chunk, shared by the sidebar and the daily trigger.
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
  const firstRow = 2 + chunkIndex * run.chunkSize;
  const rowCount = Math.min(run.chunkSize, sheet.getLastRow() - firstRow + 1);
  /** @type {ChunkResult} */
  const result = {
    chunkIndex: chunkIndex, firstRow: firstRow, rowCount: Math.max(0, rowCount), rows: [], totals: [],
    written: 0, stopped: '', stoppedMessage: '',
  };
  if (rowCount <= 0) return result;
  const values = sheet.getRange(firstRow, 1, rowCount, layout.headers.length).getValues();
  const duplicates = duplicateInvoiceIds_(sheet, layout);
  /** @type {Object<string, string|number|boolean>[]} */
  const invoices = [];
  /** @type {ApiRow[]} */
  const localRows = [];
  values.forEach((cells, i) => {
    const invoice = rowToInvoice_(cells, firstRow + i, layout.headers, run.timezone);
    if (!invoice) return;
    const id = String(cells[layout.invoiceIdColumn - 1]).trim();
    if (duplicates[id]) {
      localRows.push(duplicateRow_(invoice, id, duplicates[id], layout));
    } else {
      invoices.push(invoice);
    }
  });
  /** @type {ApiResult|null} */
  let response = null;
  if (invoices.length) {
    const body = { today: run.today, timezone: run.timezone, scope: ss.getId(), invoices: invoices };
    const path = generate ? '/v1/drafts' : '/v1/plan';
    response = /** @type {ApiResult} */ (callApi_(readApiSettings_(), 'post', path, body, {
      idempotencyKey: generate ? idempotencyKey_(body) : undefined,
    }));
  }
  const apiRows = (response ? response.rows : []).concat(localRows).sort((a, b) => a.row - b.row);
  if (generate) {
    const writes = planWrites_(apiRows, run.timezone, run.today, statusSuffix);
    result.written = withDocumentLock_(() => writeResults_(sheet, readLayout_(sheet), writes));
  }
  result.rows = apiRows.map(toSidebarRow_);
  result.totals = response && response.totals ? response.totals : [];
  if (response && response.stopped) {
    result.stopped = response.stopped;
    result.stoppedMessage = response.stopped === 'gmail_unauthorized'
      ? 'Gmail permission is missing, so no drafts could be made. Close this sidebar, open ' +
        'Invoice Collector › Generate today\'s drafts again and allow "Manage drafts" when Google asks.'
      : 'The server stopped this run (' + response.stopped + ').';
  }
  return result;
}

/**
 * A local error row for an invoice id that appears more than once in the sheet.
 * @param {Object<string, string|number|boolean>} invoice
 * @param {string} id
 * @param {number[]} rows
 * @param {SheetLayout} layout
 * @return {ApiRow}
 */
function duplicateRow_(invoice, id, rows, layout) {
  const clientHeader = layout.headers.filter((h) => normalizeHeader_(h) === 'clientname')[0];
  return {
    row: Number(invoice.row),
    invoice_id: id,
    client_name: clientHeader ? String(invoice[clientHeader]) : '',
    days_overdue: null,
    stage: null,
    action: 'error',
    reason: 'duplicate_invoice_id',
    message: 'Invoice ID ' + id + ' is used on rows ' + rows.join(', ') + '; each invoice needs its own ID.',
    errors: { invoice_id: 'duplicate' },
  };
}

/**
 * Keeps what the sidebar shows; drops the email body to keep the reply small.
 * @param {ApiRow} r
 * @return {SidebarRow}
 */
function toSidebarRow_(r) {
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
    subject: r.subject || '',
    draft_url: r.draft_url || '',
    retryable: !!r.retryable,
  };
}

/**
 * A key that is the same for an identical request, so a retried request
 * (double click, network hiccup) is recognised by the API.
 * @param {Object} body
 * @return {string}
 */
function idempotencyKey_(body) {
  const digest = Utilities.computeDigest(Utilities.DigestAlgorithm.SHA_256, JSON.stringify(body),
    Utilities.Charset.UTF_8);
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
 * Runs fn holding the document lock, so the daily run and a person clicking
 * Generate never write the same rows at once.
 * @template T
 * @param {() => T} fn
 * @return {T}
 */
function withDocumentLock_(fn) {
  const lock = LockService.getDocumentLock();
  if (!lock) return fn();
  if (!lock.tryLock(30 * 1000)) {
    throw new Error('Another Invoice Collector run is writing to this sheet right now. Try again in a minute.');
  }
  try {
    return fn();
  } finally {
    lock.releaseLock();
  }
}
