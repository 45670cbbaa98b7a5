/**
 * @fileoverview The daily run: a time-driven trigger that does what
 * "Generate today's drafts" does, without anyone watching. It needs the
 * script.scriptapp scope to install itself; add-ons may run a time-driven
 * trigger at most once an hour and own one per type per user per document.
 */

/**
 * The daily triggers of this user in this spreadsheet.
 * @param {GoogleAppsScript.Spreadsheet.Spreadsheet} ss
 * @return {GoogleAppsScript.Script.Trigger[]}
 */
function findDailyTriggers_(ss) {
  return ScriptApp.getUserTriggers(ss).filter((t) => t.getHandlerFunction() === DAILY_HANDLER);
}

/**
 * Called from the menu and the sidebar: installs the daily run unless it is
 * already there (installing twice never makes two triggers).
 * @return {{installed: boolean, message: string}}
 */
function installDailyTrigger() {
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const timezone = ss.getSpreadsheetTimeZone();
  const existing = findDailyTriggers_(ss);
  if (existing.length) {
    // Earlier versions or races may have left extras; keep exactly one.
    existing.slice(1).forEach((t) => ScriptApp.deleteTrigger(t));
    return { installed: false, message: 'The daily run is already installed (every day around ' +
      DAILY_HOUR + ':00, ' + timezone + ').' };
  }
  ScriptApp.newTrigger(DAILY_HANDLER).timeBased().everyDays(1).atHour(DAILY_HOUR).inTimezone(timezone).create();
  return { installed: true, message: 'Installed. Every day around ' + DAILY_HOUR + ':00 (' + timezone +
    ') today\'s drafts are generated and the result is written in reminder_status.' };
}

/**
 * The time-driven trigger's handler: generates today's drafts chunk by chunk
 * within one execution's time budget, writes each row's outcome in
 * reminder_status, and records the run's outcome for the sidebar.
 * @param {GoogleAppsScript.Events.TimeDriven=} e
 * @return {{drafted: number, errors: number, chunks: number, finished: boolean, message: string}}
 */
function runDailyGeneration(e) {
  const started = Date.now();
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const outcome = { drafted: 0, errors: 0, chunks: 0, finished: false, message: '' };
  try {
    const run = beginRun('generate');
    const suffix = ' (daily run)';
    const sheet = /** @type {GoogleAppsScript.Spreadsheet.Sheet} */ (ss.getSheetByName(run.sheetName));
    for (let i = 0; i < run.chunkCount; i++) {
      if (Date.now() - started > DAILY_TIME_BUDGET_MS) {
        outcome.message = 'Stopped after ' + i + ' of ' + run.chunkCount + ' chunks to stay within Google\'s ' +
          'time limit; run "Generate today\'s drafts" to finish.';
        break;
      }
      const chunk = processChunk_(ss, sheet, run, i, suffix);
      outcome.chunks++;
      chunk.rows.forEach((r) => {
        if (r.action === 'draft' && r.draft_url) outcome.drafted++;
        if (r.action === 'error') outcome.errors++;
      });
      if (chunk.stopped) {
        outcome.message = chunk.stoppedMessage;
        break;
      }
    }
    outcome.finished = outcome.chunks === run.chunkCount;
    if (!outcome.message) {
      outcome.message = 'Drafted ' + outcome.drafted + ', ' + outcome.errors + ' need attention.';
    }
  } catch (err) {
    outcome.message = String(/** @type {Error} */ (err).message || err);
  }
  const record = { at: Utilities.formatDate(new Date(), ss.getSpreadsheetTimeZone(), 'yyyy-MM-dd HH:mm'),
    drafted: outcome.drafted, errors: outcome.errors, finished: outcome.finished, message: outcome.message };
  PropertiesService.getDocumentProperties().setProperty(DOC_LAST_DAILY_RUN, JSON.stringify(record));
  console.log('Invoice Collector daily run: ' + JSON.stringify(record));
  return outcome;
}
