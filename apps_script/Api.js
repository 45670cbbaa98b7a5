/**
 * @fileoverview The HTTP client for the Invoice Collector API, and the user's
 * settings (API address and key) it needs. Every failure leaves this file as
 * an Error whose message a bookkeeper can act on.
 */

/** User-property keys: the settings belong to the person, not the sheet. */
const SETTING_API_URL = 'IC_API_URL';
const SETTING_API_KEY = 'IC_API_KEY';

/**
 * @typedef {Object} ApiSettings
 * @property {string} apiUrl  Base address of the API, without a trailing slash.
 * @property {string} apiKey  The bearer key; empty when not set.
 */

/**
 * @typedef {Object} ApiRowWriteback
 * @property {number} last_stage_sent
 * @property {string} last_sent_at     YYYY-MM-DD in the spreadsheet's timezone.
 * @property {string} [reminder_status]
 */

/**
 * One decision (and, for /v1/drafts, one draft) as the API returns it.
 * @typedef {Object} ApiRow
 * @property {number} row
 * @property {string} [invoice_id]
 * @property {string} [client_name]
 * @property {number|null} [days_overdue]
 * @property {number|null} [stage]
 * @property {string} action            draft | skip | error
 * @property {string} reason
 * @property {string} [message]
 * @property {Object<string, string>} [errors]
 * @property {string} [balance]
 * @property {string} [currency]
 * @property {string[]} [to]
 * @property {string} [amount_formatted]
 * @property {string} [subject]
 * @property {string} [body]
 * @property {string} [draft_id]
 * @property {string} [draft_url]
 * @property {boolean} [retryable]
 * @property {string} [fix]               Error rows: what to change, in plain words.
 * @property {string} [draft_on]          not_business_day: the day it will be drafted.
 * @property {string} [drafted_by]        duplicate: the other mailbox holding the draft.
 * @property {string} [waiting_since]     previous_unsent: the day the unsent draft was made.
 * @property {ApiRowWriteback} [writeback]
 */

/**
 * @typedef {Object} ApiMoney
 * @property {string} amount      A decimal string.
 * @property {string} formatted
 */

/**
 * One currency's aging, as /v1/plan returns it for the rows of one request.
 * @typedef {Object} ApiAging
 * @property {string} currency
 * @property {{bucket: string, amount: string, formatted: string}[]} buckets
 * @property {ApiMoney} open
 * @property {{client_name: string, amount: string, formatted: string}[]} top_clients
 * @property {string|null} dso_days
 * @property {string|null} dso_note
 */

/**
 * @typedef {Object} ApiTotal
 * @property {string} currency
 * @property {number} count
 * @property {string} balance            A decimal string, e.g. "1234.50".
 * @property {string} [balance_formatted]
 */

/**
 * @typedef {Object} ApiResult
 * @property {string} today
 * @property {string} timezone
 * @property {{total: number, draft: number, skip: number, error: number}} summary
 * @property {ApiTotal[]} totals
 * @property {ApiRow[]} rows
 * @property {ApiAging[]} [aging]   /v1/plan only.
 * @property {string} [stopped]
 * @property {number} [remaining]   /v1/drafts: rows due a draft it had no time for (retryable).
 */

/**
 * Reads the API settings of the current user.
 * @return {ApiSettings}
 */
function readApiSettings_() {
  const props = PropertiesService.getUserProperties();
  return {
    apiUrl: (props.getProperty(SETTING_API_URL) || '').replace(/\/+$/, ''),
    apiKey: props.getProperty(SETTING_API_KEY) || '',
  };
}

/**
 * Checks an API address; returns a plain-words problem, or '' when it is fine.
 * Only https: the API key and, for drafts, the user's Google token travel with
 * the requests, and Apps Script runs on Google's servers, so a localhost
 * address could never be reached from there anyway.
 * @param {string} apiUrl
 * @return {string}
 */
function apiUrlProblem_(apiUrl) {
  if (!apiUrl) return 'Enter the address of your Invoice Collector server.';
  if (/^https:\/\/[^\s/?#]+(\/[^\s?#]*)?$/i.test(apiUrl)) return '';
  return 'The server address must start with https:// (for example https://invoices.example.com).';
}

/**
 * Calls the API and returns its parsed JSON, or throws an Error in plain words.
 * @param {ApiSettings} settings
 * @param {GoogleAppsScript.URL_Fetch.HttpMethod} method
 * @param {string} path          e.g. "/v1/plan".
 * @param {Object=} body         Sent as JSON.
 * @param {{auth?: boolean, idempotencyKey?: string, googleToken?: boolean}=} options
 *   googleToken: send the user's Google token (only /v1/drafts needs it).
 * @return {any}
 */
function callApi_(settings, method, path, body, options) {
  const opts = options || {};
  const auth = opts.auth !== false;
  const urlProblem = apiUrlProblem_(settings.apiUrl);
  if (urlProblem) throw new Error(urlProblem + ' Open Invoice Collector › Settings.');
  if (auth && !settings.apiKey) {
    throw new Error('No API key is saved yet. Open Invoice Collector › Settings and paste the key you were given.');
  }
  /** @type {Object<string, string>} */
  const headers = {};
  if (auth) headers.Authorization = 'Bearer ' + settings.apiKey;
  if (opts.googleToken) {
    // gmail.compose can send mail too, so the token goes only where drafts are
    // made; the API uses it for that request only, in the user's own mailbox.
    headers['X-Google-Access-Token'] = ScriptApp.getOAuthToken();
  }
  if (opts.idempotencyKey) headers['Idempotency-Key'] = opts.idempotencyKey;
  /** @type {GoogleAppsScript.URL_Fetch.URLFetchRequestOptions} */
  const request = {
    method: method,
    headers: headers,
    muteHttpExceptions: true,
    followRedirects: false,
  };
  if (body !== undefined) {
    request.contentType = 'application/json';
    request.payload = JSON.stringify(body);
  }
  const url = settings.apiUrl + path;
  /** @type {GoogleAppsScript.URL_Fetch.HTTPResponse} */
  let response;
  try {
    response = UrlFetchApp.fetch(url, request);
  } catch (err) {
    throw new Error(unreachableMessage_(settings.apiUrl, err));
  }
  const status = response.getResponseCode();
  const text = response.getContentText();
  /** @type {any} */
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (ignored) {
    json = null;
  }
  if (status >= 200 && status < 300) {
    if (json === null) {
      throw new Error('The server at ' + settings.apiUrl + ' answered, but not with Invoice Collector data. ' +
        'Check the address in Settings.');
    }
    return json;
  }
  throw new Error(httpErrorMessage_(status, json, settings.apiUrl));
}

/**
 * Turns a fetch exception (DNS, refused connection, allow-list) into plain words.
 * @param {string} apiUrl
 * @param {unknown} err
 * @return {string}
 */
function unreachableMessage_(apiUrl, err) {
  const detail = String(err && /** @type {Error} */ (err).message || err);
  if (/whitelist|allowlist|urlFetchWhitelist/i.test(detail)) {
    return 'This add-on may only call the addresses listed under urlFetchWhitelist in appsscript.json, and ' +
      apiUrl + ' is not one of them. Ask whoever installed the add-on to add it.';
  }
  return 'Can\'t reach the Invoice Collector server at ' + apiUrl + '. Check the address in Settings, ' +
    'or ask whoever runs the server whether it is up. (' + detail + ')';
}

/**
 * Explains a non-2xx API answer in plain words.
 * @param {number} status
 * @param {any} json     The parsed error body, if any.
 * @param {string} apiUrl
 * @return {string}
 */
function httpErrorMessage_(status, json, apiUrl) {
  const error = json && json.error ? json.error : {};
  const serverSays = error.message ? ' The server said: ' + error.message : '';
  switch (status) {
    case 401:
    case 403:
      return 'The server did not accept the API key. Check the key in Invoice Collector › Settings.';
    case 404:
      return 'The server at ' + apiUrl + ' does not know this request (HTTP 404). ' +
        'Check the address in Settings — it should be the server\'s base address.';
    case 413:
      return 'The server found the request too large.' + serverSays;
    case 429:
      return 'The server is busy right now (too many requests). Wait a minute and try again; ' +
        'nothing is drafted twice.';
    case 400:
    case 422:
      return 'The server could not read the invoices it was sent.' + serverSays;
    default:
      if (status >= 500) {
        return 'The server had a problem (HTTP ' + status + '). Try again in a few minutes; ' +
          'drafts already made are never made twice.';
      }
      return 'The server answered HTTP ' + status + '.' + serverSays;
  }
}

/** Document property: the currency of amounts whose cell shows none. */
const DOC_DEFAULT_CURRENCY = 'IC_DEFAULT_CURRENCY';

/**
 * The sheet's default currency (Settings), USD when never set.
 * @return {string}
 */
function readDefaultCurrency_() {
  return PropertiesService.getDocumentProperties().getProperty(DOC_DEFAULT_CURRENCY) || 'USD';
}

/**
 * @typedef {Object} SettingsView
 * @property {string} apiUrl
 * @property {boolean} hasKey
 * @property {string} defaultCurrency
 * @property {number} sheetId                 The tab chosen in Settings, 0 = none.
 * @property {{id: number, name: string}[]} tabs  The tabs that have the invoice headers.
 */

/**
 * Called by the Settings dialog: the saved settings (the key itself never
 * goes back to the browser) and the tabs that could hold invoices.
 * @return {SettingsView}
 */
function getSettings() {
  const settings = readApiSettings_();
  const ss = SpreadsheetApp.getActiveSpreadsheet();
  return {
    apiUrl: settings.apiUrl,
    hasKey: !!settings.apiKey,
    defaultCurrency: readDefaultCurrency_(),
    sheetId: Number(PropertiesService.getDocumentProperties().getProperty(DOC_INVOICE_SHEET) || 0),
    tabs: invoiceSheets_(ss).map((s) => ({ id: s.getSheetId(), name: s.getName() })),
  };
}

/**
 * Called by the Settings dialog: saves the address and, when given, the key
 * (an empty key keeps the saved one) for this user, and the invoices tab and
 * default currency for this spreadsheet.
 * @param {{apiUrl: string, apiKey?: string, defaultCurrency?: string, sheetId?: number|string}} form
 * @return {SettingsView}
 */
function saveSettings(form) {
  const apiUrl = String(form.apiUrl || '').trim().replace(/\/+$/, '');
  const problem = apiUrlProblem_(apiUrl);
  if (problem) throw new Error(problem);
  const currency = String(form.defaultCurrency || 'USD').trim().toUpperCase();
  if (!/^[A-Z]{3}$/.test(currency)) throw new Error('The default currency is a three-letter code such as USD, EUR or GBP.');
  const props = PropertiesService.getUserProperties();
  props.setProperty(SETTING_API_URL, apiUrl);
  const apiKey = String(form.apiKey || '').trim();
  if (apiKey) props.setProperty(SETTING_API_KEY, apiKey);
  const doc = PropertiesService.getDocumentProperties();
  doc.setProperty(DOC_DEFAULT_CURRENCY, currency);
  const sheetId = Number(form.sheetId || 0);
  if (sheetId) doc.setProperty(DOC_INVOICE_SHEET, String(sheetId));
  else doc.deleteProperty(DOC_INVOICE_SHEET);
  return getSettings();
}

/**
 * Called by the Settings dialog: checks that the server answers (/healthz)
 * and that it accepts the key (/v1/templates). Uses the values typed in the
 * form, falling back to the saved key when the key field is empty.
 * @param {{apiUrl: string, apiKey?: string}} form
 * @return {{ok: boolean, message: string}}
 */
function testConnection(form) {
  const saved = readApiSettings_();
  /** @type {ApiSettings} */
  const settings = {
    apiUrl: String(form.apiUrl || '').trim().replace(/\/+$/, ''),
    apiKey: String(form.apiKey || '').trim() || saved.apiKey,
  };
  try {
    const health = callApi_(settings, 'get', '/healthz', undefined, { auth: false });
    if (!health || health.status !== 'ok') {
      return { ok: false, message: 'The server answered, but says it is not healthy.' };
    }
    const templates = callApi_(settings, 'get', '/v1/templates');
    const stages = templates && Array.isArray(templates.stages) ? templates.stages.length : 0;
    return {
      ok: true,
      message: 'Connected. The server accepted the key' + (stages ? ' and has ' + stages + ' reminder stages.' : '.'),
    };
  } catch (err) {
    return { ok: false, message: String(/** @type {Error} */ (err).message || err) };
  }
}
