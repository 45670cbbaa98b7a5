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
 * @property {string} [amount_formatted]
 * @property {string} [subject]
 * @property {string} [body]
 * @property {string} [draft_id]
 * @property {string} [draft_url]
 * @property {boolean} [retryable]
 * @property {ApiRowWriteback} [writeback]
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
 * @property {string} [stopped]
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
 * Plain http is refused because the API key and the user's Google token travel
 * with every request; loopback is allowed for local development only.
 * @param {string} apiUrl
 * @return {string}
 */
function apiUrlProblem_(apiUrl) {
  if (!apiUrl) return 'Enter the address of your Invoice Collector server.';
  if (/^https:\/\/[^\s/?#]+(\/[^\s?#]*)?$/i.test(apiUrl)) return '';
  if (/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?(\/[^\s?#]*)?$/i.test(apiUrl)) return '';
  return 'The server address must start with https:// (for example https://invoices.example.com).';
}

/**
 * Calls the API and returns its parsed JSON, or throws an Error in plain words.
 * @param {ApiSettings} settings
 * @param {GoogleAppsScript.URL_Fetch.HttpMethod} method
 * @param {string} path          e.g. "/v1/plan".
 * @param {Object=} body         Sent as JSON.
 * @param {{auth?: boolean, idempotencyKey?: string}=} options
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
  if (auth) {
    headers.Authorization = 'Bearer ' + settings.apiKey;
    // The API uses this token for this request only, to create the Gmail drafts
    // in the user's own mailbox (scope gmail.compose, declared in the manifest).
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

/**
 * Called by the Settings dialog: the saved address, and whether a key is saved
 * (the key itself never goes back to the browser).
 * @return {{apiUrl: string, hasKey: boolean}}
 */
function getSettings() {
  const settings = readApiSettings_();
  return { apiUrl: settings.apiUrl, hasKey: !!settings.apiKey };
}

/**
 * Called by the Settings dialog: saves the address and, when given, the key
 * (an empty key keeps the saved one).
 * @param {{apiUrl: string, apiKey?: string}} form
 * @return {{apiUrl: string, hasKey: boolean}}
 */
function saveSettings(form) {
  const apiUrl = String(form.apiUrl || '').trim().replace(/\/+$/, '');
  const problem = apiUrlProblem_(apiUrl);
  if (problem) throw new Error(problem);
  const props = PropertiesService.getUserProperties();
  props.setProperty(SETTING_API_URL, apiUrl);
  const apiKey = String(form.apiKey || '').trim();
  if (apiKey) props.setProperty(SETTING_API_KEY, apiKey);
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
