/**
 * @fileoverview The daily run: a time-driven trigger that does what
 * "Generate today's drafts" does, without anyone watching. There is one per
 * document, whoever installs it. A trigger belongs to the user who made it and
 * getProjectTriggers() shows each user only their own, so the document
 * properties record which trigger is the daily run; any other trigger of ours
 * that fires retires itself. A failing run records why for the sidebar and
 * then throws, so Google's failure email reaches the trigger's owner.
 */

/** The daily trigger's handler, and the hour (spreadsheet time) it runs at. */
const DAILY_HANDLER = 'runDailyGeneration';
const DAILY_HOUR = 7;

/** Document property: the daily run's record (JSON DailyRunRecord). */
const DOC_DAILY_RUN = 'IC_DAILY_RUN';

/** Document property: the outcome of the last daily run (JSON LastDailyRun). */
const DOC_LAST_DAILY_RUN = 'IC_LAST_DAILY_RUN';

/** A daily run stops starting new chunks after this long (the limit is 6 min). */
const DAILY_TIME_BUDGET_MS = 4.5 * 60 * 1000;

/** Passes over one chunk before a run gives up on a server that makes no progress. */
const MAX_PASSES = 30;

/**
 * @typedef {Object} DailyRunRecord
 * @property {string} triggerId
 * @property {string} ownerKey      Session.getTemporaryActiveUserKey() of who installed it.
 * @property {number} sheetId
 * @property {string} sheetName
 * @property {number} hour
 * @property {string} timezone
 * @property {string} installedOn   YYYY-MM-DD.
 */

/**
 * @typedef {Object} LastDailyRun
 * @property {string} at
 * @property {number} drafted
 * @property {number} errors
 * @property {boolean} finished
 * @property {boolean} failed
 * @property {string} message
 */

/**
 * @typedef {Object} DailyRunState
 * @property {boolean} installed
 * @property {boolean} mine         Installed by the current user (it runs as them).
 * @property {string} sheetName
 * @property {number} hour
 * @property {string} timezone
 * @property {string} installedOn
 * @property {LastDailyRun|null} lastRun
 */

/** @return {DailyRunRecord|null} */
function readDailyRecord_() {
  const raw = PropertiesService.getDocumentProperties().getProperty(DOC_DAILY_RUN);
  return raw ? /** @type {DailyRunRecord} */ (JSON.parse(raw)) : null;
}

/**
 * The current user's own daily triggers in this document.
 * @return {GoogleAppsScript.Script.Trigger[]}
 */
function myDailyTriggers_() {
  return ScriptApp.getProjectTriggers().filter((t) => t.getHandlerFunction() === DAILY_HANDLER);
}

/**
 * What the sidebar shows about the daily run.
 * @return {DailyRunState}
 */
function dailyRunState_() {
  const record = readDailyRecord_();
  const raw = PropertiesService.getDocumentProperties().getProperty(DOC_LAST_DAILY_RUN);
  const mine = !!record && myDailyTriggers_().some((t) => t.getUniqueId() === record.triggerId);
  return {
    installed: !!record,
    mine: mine,
    sheetName: record ? record.sheetName : '',
    hour: record ? record.hour : DAILY_HOUR,
    timezone: record ? record.timezone : '',
    installedOn: record ? record.installedOn : '',
    lastRun: raw ? /** @type {LastDailyRun} */ (JSON.parse(raw)) : null,
  };
}

/**
 * Called from the menu and the sidebar: installs the daily run on a tab unless
 * this document has one already, whoever installed it.
 * @param {number=} sheetId  The tab to work on; default: the tab a person works on now.
 * @return {{installed: boolean, message: string, state: DailyRunState}}
 */
function installDailyTrigger(sheetId) {
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const timezone = ss.getSpreadsheetTimeZone();
  const outcome = withDocumentLock_(() => {
    const record = readDailyRecord_();
    const mine = myDailyTriggers_();
    if (record && mine.some((t) => t.getUniqueId() === record.triggerId)) {
      // Earlier versions or races may have left extras; keep exactly one.
      mine.filter((t) => t.getUniqueId() !== record.triggerId).forEach((t) => ScriptApp.deleteTrigger(t));
      return { installed: false, message: 'The daily run is already installed (every day around ' + record.hour +
        ':00, ' + record.timezone + ', on the tab “' + record.sheetName + '”).' };
    }
    if (record && record.ownerKey !== Session.getTemporaryActiveUserKey()) {
      return { installed: false, message: 'Another editor installed the daily run on ' + record.installedOn +
        ' (tab “' + record.sheetName + '”); it runs as them, with their Gmail. To run it as you instead, ' +
        'remove it and install it again.' };
    }
    // Ours alone from here: a record of ours whose trigger is gone, or none.
    mine.forEach((t) => ScriptApp.deleteTrigger(t));
    const sheet = sheetId ? sheetById_(ss, sheetId) : findInvoiceSheet_(ss);
    if (!sheet) throw new Error('That tab is gone. Open the invoices tab and try again.');
    const trigger = ScriptApp.newTrigger(DAILY_HANDLER).timeBased().everyDays(1).atHour(DAILY_HOUR)
      .inTimezone(timezone).create();
    /** @type {DailyRunRecord} */
    const created = {
      triggerId: trigger.getUniqueId(), ownerKey: Session.getTemporaryActiveUserKey(), sheetId: sheet.getSheetId(),
      sheetName: sheet.getName(), hour: DAILY_HOUR, timezone: timezone, installedOn: todayIn_(timezone),
    };
    PropertiesService.getDocumentProperties().setProperty(DOC_DAILY_RUN, JSON.stringify(created));
    return { installed: true, message: 'Installed. Every day around ' + DAILY_HOUR + ':00 (' + timezone + ') ' +
      'today\'s drafts for the tab “' + sheet.getName() + '” are created in your Gmail and the result is ' +
      'written in reminder_status.' };
  });
  return { installed: outcome.installed, message: outcome.message, state: dailyRunState_() };
}

/**
 * Called from the sidebar's Remove button: stops the daily run. Any editor may
 * remove it; a trigger belongs to its owner, so another owner's trigger is
 * retired the next time it fires, before it does anything.
 * @return {{message: string, state: DailyRunState}}
 */
function removeDailyTrigger() {
  const message = withDocumentLock_(() => {
    const record = readDailyRecord_();
    const mine = myDailyTriggers_();
    mine.forEach((t) => ScriptApp.deleteTrigger(t));
    PropertiesService.getDocumentProperties().deleteProperty(DOC_DAILY_RUN);
    if (record && !mine.some((t) => t.getUniqueId() === record.triggerId)) {
      return 'Removed. It was installed by another editor: it stops at its next start, without drafting anything.';
    }
    return record || mine.length ? 'Removed. No more daily runs.' : 'There was no daily run to remove.';
  });
  return { message: message, state: dailyRunState_() };
}

/**
 * The time-driven trigger's handler: generates today's drafts chunk by chunk
 * within one execution's time budget and records the outcome for the sidebar.
 * Throws when the run failed, after recording why.
 * @param {GoogleAppsScript.Events.TimeDriven=} e
 * @return {{drafted: number, errors: number, unwritten: number, chunks: number, finished: boolean, message: string}}
 */
function runDailyGeneration(e) {
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  const outcome = { drafted: 0, errors: 0, unwritten: 0, chunks: 0, finished: false, message: '' };
  const record = readDailyRecord_();
  const uid = e && e.triggerUid ? String(e.triggerUid) : '';
  if (!record || (uid && uid !== record.triggerId)) {
    // Removed from the sidebar, or another editor's is the daily run now.
    myDailyTriggers_().filter((t) => !uid || t.getUniqueId() === uid).forEach((t) => ScriptApp.deleteTrigger(t));
    outcome.message = 'This trigger is no longer the daily run of this spreadsheet; it removed itself.';
    console.log('Invoice Collector: ' + outcome.message);
    return outcome;
  }
  const started = Date.now();
  let failure = '';
  try {
    const sheet = sheetById_(ss, record.sheetId);
    if (!sheet) {
      throw new Error('The tab “' + record.sheetName + '” is gone. Remove the daily run and install it again from the invoices tab.');
    }
    const run = startRun_(ss, sheet, 'generate');
    /** @type {Object<string, boolean>} */
    const drafted = {};
    chunks: for (let i = 0; i < run.chunkCount; i++) {
      let last = Infinity;
      for (let pass = 1; ; pass++) {
        if (Date.now() - started > DAILY_TIME_BUDGET_MS) {
          outcome.message = 'Stopped after ' + i + ' of ' + run.chunkCount + ' parts to stay within Google\'s time ' +
            'limit; run "Generate today\'s drafts" to finish.';
          break chunks;
        }
        const chunk = processChunk_(ss, sheet, run, i, ' (daily run)');
        chunk.rows.forEach((r) => { if (r.action === 'draft' && r.draft_url) drafted[r.invoice_id || 'row ' + r.row] = true; });
        outcome.unwritten += chunk.unwritten.length;
        if (chunk.stopped) {
          failure = chunk.stoppedMessage;
          break chunks;
        }
        if (!chunk.remaining) {
          outcome.errors += chunk.rows.filter((r) => r.action === 'error').length;
          break;
        }
        if (chunk.remaining >= last || pass >= MAX_PASSES) {
          failure = 'The server kept answering that ' + chunk.remaining + ' drafts remain without making them.';
          break chunks;
        }
        last = chunk.remaining;
      }
      outcome.chunks++;
    }
    outcome.drafted = Object.keys(drafted).length;
    outcome.finished = !failure && outcome.chunks === run.chunkCount;
    if (!outcome.message) {
      outcome.message = 'Drafted ' + outcome.drafted + ', ' + outcome.errors + ' need attention' +
        (outcome.unwritten ? ', ' + outcome.unwritten + ' not written back (rows moved)' : '') + '.';
    }
  } catch (err) {
    failure = String(/** @type {Error} */ (err).message || err);
  }
  if (failure) outcome.message = failure;
  /** @type {LastDailyRun} */
  const last = {
    at: Utilities.formatDate(new Date(), ss.getSpreadsheetTimeZone(), 'yyyy-MM-dd HH:mm'),
    drafted: outcome.drafted, errors: outcome.errors, finished: outcome.finished, failed: !!failure,
    message: outcome.message,
  };
  PropertiesService.getDocumentProperties().setProperty(DOC_LAST_DAILY_RUN, JSON.stringify(last));
  console.log('Invoice Collector daily run: ' + JSON.stringify(last));
  // Thrown, so Apps Script marks the execution failed and emails the owner.
  if (failure) throw new Error('Invoice Collector daily run failed: ' + failure);
  return outcome;
}
