/**
 * @fileoverview Invoice Collector for Google Sheets: the menu, the sidebar and
 * the Settings dialog, and what the sidebar asks when it opens. The run itself
 * is in Run.js, the daily run in Trigger.js.
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

/**
 * Menu: asks Google for any permission Generate lacks (from a menu item Apps
 * Script can show the consent screen), then opens the sidebar, which previews
 * and asks for confirmation before it drafts.
 */
function menuGenerateToday() {
  requireGenerateScopes_(true);
  showSidebar('generate');
}

/** Menu: opens the Settings dialog. */
function showSettings() {
  const html = HtmlService.createTemplateFromFile('Settings').evaluate().setWidth(440).setHeight(470);
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
 * @typedef {Object} SidebarState
 * @property {boolean} configured
 * @property {string} apiUrl
 * @property {string} timezone
 * @property {string} today
 * @property {number} sheetId       The tab a run would work on, 0 when none.
 * @property {string} sheetName
 * @property {string} sheetProblem  Why no tab can be worked on, or ''.
 * @property {DailyRunState} daily
 */

/**
 * Called by the sidebar when it opens, after Settings and when the person
 * comes back to it: what it needs to draw its header.
 * @return {SidebarState}
 */
function getSidebarState() {
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const timezone = ss.getSpreadsheetTimeZone();
  const settings = readApiSettings_();
  let sheetId = 0;
  let sheetName = '';
  let sheetProblem = '';
  try {
    const sheet = findInvoiceSheet_(ss);
    sheetId = sheet.getSheetId();
    sheetName = sheet.getName();
  } catch (err) {
    sheetProblem = String(/** @type {Error} */ (err).message || err);
  }
  return {
    configured: !apiUrlProblem_(settings.apiUrl) && !!settings.apiKey,
    apiUrl: settings.apiUrl,
    timezone: timezone,
    today: todayIn_(timezone),
    sheetId: sheetId,
    sheetName: sheetName,
    sheetProblem: sheetProblem,
    daily: dailyRunState_(),
  };
}

/**
 * Called by the sidebar when a line or a fix is clicked: selects the row that
 * holds that invoice now (it may have moved since the list was drawn) or,
 * given a field, that row's cell in the field's column.
 * @param {number} sheetId
 * @param {string} invoiceId
 * @param {number} row          Where it was; used when the id is blank, and to
 *                              tell apart the rows of a duplicated id.
 * @param {string=} field       An API field such as "amount" (a key of the row's errors).
 * @return {{row: number, column: number}} What was selected; column 0 = the whole row.
 */
function goToInvoice(sheetId, invoiceId, row, field) {
  const sheet = sheetById_(SpreadsheetApp.getActiveSpreadsheet(), sheetId);
  if (!sheet) throw new Error('That tab is gone.');
  const layout = readLayout_(sheet);
  const rows = invoiceId ? rowsByInvoiceId_(sheet, layout)[invoiceId] || [] : [row];
  if (!rows.length) throw new Error(invoiceId + ' is no longer in the tab “' + sheet.getName() + '”.');
  const target = rows.indexOf(row) >= 0 ? row : rows[0];
  const column = field ? layout.headers.map(normalizeHeader_).indexOf(normalizeHeader_(field)) + 1 : 0;
  sheet.activate();
  if (column) sheet.getRange(target, column).activate();
  else sheet.getRange(target, 1, 1, Math.max(1, sheet.getLastColumn())).activate();
  return { row: target, column: column };
}

/**
 * Called by the sidebar: pauses reminders to one client until a day, by
 * writing pause_until on the client's open invoices (the API skips them as
 * `paused` until then); with an empty day, resumes them. Written under the
 * document lock, by invoice id.
 * @param {number} sheetId
 * @param {string} clientName    For the message.
 * @param {string[]} invoiceIds  The client's open invoices, as the last preview listed them.
 * @param {string} until         YYYY-MM-DD in the spreadsheet's timezone, or '' to resume.
 * @return {{written: number, unwritten: string[], message: string}}
 */
function pauseClient(sheetId, clientName, invoiceIds, until) {
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const sheet = sheetById_(ss, sheetId);
  if (!sheet) throw new Error('That tab is gone.');
  const ids = (invoiceIds || []).map((id) => String(id).trim()).filter(Boolean);
  if (!ids.length) throw new Error(clientName + ' has no open invoices to pause.');
  const timezone = ss.getSpreadsheetTimeZone();
  const day = String(until || '');
  if (day && !/^\d{4}-\d{2}-\d{2}$/.test(day)) throw new Error('Choose the day reminders resume, e.g. 2026-12-15.');
  if (day && day <= todayIn_(timezone)) throw new Error('Choose a day after today.');
  const value = day ? Utilities.parseDate(day, timezone, 'yyyy-MM-dd') : '';
  const outcome = withDocumentLock_(() => writePauseUntil_(sheet, ids, value));
  const what = plainCount_(outcome.written, 'invoice');
  return {
    written: outcome.written,
    unwritten: outcome.unwritten,
    message: day ? 'Paused ' + clientName + ' until ' + day + ' (' + what + ').' : 'Resumed reminders to ' + clientName + ' (' + what + ').',
  };
}

/**
 * "1 invoice", "3 invoices".
 * @param {number} n
 * @param {string} noun
 * @return {string}
 */
function plainCount_(n, noun) {
  return n + ' ' + noun + (n === 1 ? '' : 's');
}
