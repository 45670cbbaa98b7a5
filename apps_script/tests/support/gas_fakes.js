'use strict';
/**
 * Fakes of the Apps Script services the add-on uses, written from Google's
 * reference, for loading the add-on's .js files into a node:vm context. They
 * behave like the real ones where the add-on could get it wrong:
 *
 * - a grid of cells holding real Date objects and plain numbers, each with its
 *   number format (getNumberFormats gives "0.###############" for a cell never
 *   formatted, as Sheets does), formulas, links; range shapes checked on write;
 * - what a person does while a script waits on the network: sort the rows,
 *   delete one (duringFetch);
 * - the document a script is bound to, shared by every user and execution:
 *   document properties, installable triggers (each owned by the user who made
 *   it: getProjectTriggers lists only the caller's own), and the document lock,
 *   whose tryLock/waitLock block for up to their timeout — across threads, so
 *   two clicks at once really wait for each other (see executions.js);
 * - several users, each with their own user properties, OAuth token and granted
 *   scopes (ScriptApp.requireScopes stops the execution when one is missing);
 * - a spreadsheet timezone and Java-style date patterns formatted with Intl;
 * - authorisation refused in AuthMode.NONE;
 * - a UrlFetchApp that makes real, synchronous HTTP requests, enforces the
 *   manifest's urlFetchWhitelist and reaches test servers through `network`
 *   (the tests' stand-in for DNS and TLS: https://api.invoice-collector.test
 *   → http://127.0.0.1:PORT), so the add-on only ever sees https addresses.
 */
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const vm = require('node:vm');
const { execFileSync } = require('node:child_process');


const ADDON_DIR = path.resolve(__dirname, '..', '..');
const FETCH_HELPER = path.join(__dirname, 'sync_fetch.js');

// ---------------------------------------------------------------- dates ----

/** Wall-clock fields of an instant in an IANA zone. */
function zonedParts(date, timeZone) {
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', weekday: 'short',
  });
  const parts = {};
  for (const p of fmt.formatToParts(date)) parts[p.type] = p.value;
  return {
    year: Number(parts.year), month: Number(parts.month), day: Number(parts.day),
    hour: Number(parts.hour), minute: Number(parts.minute), second: Number(parts.second),
    weekday: parts.weekday, ms: date.getTime() % 1000,
  };
}

/** Offset of a zone from UTC at an instant, in ms. */
function zoneOffset(ms, timeZone) {
  const p = zonedParts(new Date(ms), timeZone);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - (ms - ((ms % 1000) + 1000) % 1000);
}

/** The instant at which the wall clock in timeZone shows the given fields. */
function instantFromZoned(f, timeZone) {
  const guess = Date.UTC(f.year, f.month - 1, f.day, f.hour || 0, f.minute || 0, f.second || 0);
  let ms = guess - zoneOffset(guess, timeZone);
  ms = guess - zoneOffset(ms, timeZone);
  return new Date(ms);
}

const pad = (n, w) => String(n).padStart(w, '0');

/** java.text.SimpleDateFormat, the subset scripts use, in a zone (as Utilities.formatDate). */
function formatDate(date, timeZone, pattern) {
  if (Object.prototype.toString.call(date) !== '[object Date]') {
    throw new Error('Exception: The parameters (' + typeof date + ',String,String) don\'t match the method signature for Utilities.formatDate.');
  }
  const p = zonedParts(date, timeZone);
  let out = '';
  for (let i = 0; i < pattern.length;) {
    const ch = pattern[i];
    if (ch === "'") {
      const end = pattern.indexOf("'", i + 1);
      out += pattern.slice(i + 1, end);
      i = end + 1;
      continue;
    }
    let n = 1;
    while (pattern[i + n] === ch) n++;
    const off = zoneOffset(date.getTime(), timeZone) / 60000;
    switch (ch) {
      case 'y': out += n === 2 ? pad(p.year % 100, 2) : pad(p.year, n); break;
      case 'M': out += pad(p.month, n); break;
      case 'd': out += pad(p.day, n); break;
      case 'H': out += pad(p.hour, n); break;
      case 'm': out += pad(p.minute, n); break;
      case 's': out += pad(p.second, n); break;
      case 'S': out += pad(p.ms, n); break;
      case 'E': out += p.weekday; break;
      case 'Z': out += (off < 0 ? '-' : '+') + pad(Math.floor(Math.abs(off) / 60), 2) + pad(Math.abs(off) % 60, 2); break;
      default:
        if (/[a-zA-Z]/.test(ch)) throw new Error('Fake Utilities.formatDate: pattern letter ' + ch + ' not supported');
        out += ch.repeat(n);
    }
    i += n;
  }
  return out;
}

/** Utilities.parseDate for numeric patterns (yyyy MM dd HH mm ss). */
function parseDate(text, timeZone, pattern) {
  const fields = { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0 };
  const names = { y: 'year', M: 'month', d: 'day', H: 'hour', m: 'minute', s: 'second' };
  let re = '';
  const order = [];
  for (let i = 0; i < pattern.length;) {
    const ch = pattern[i];
    let n = 1;
    while (pattern[i + n] === ch) n++;
    if (names[ch]) { re += '(\\d{1,' + Math.max(n, 4) + '})'; order.push(names[ch]); } else re += ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').repeat(n);
    i += n;
  }
  const m = new RegExp('^' + re).exec(String(text));
  if (!m) throw new Error('Exception: Could not parse text \'' + text + '\'.');
  order.forEach((name, k) => { fields[name] = Number(m[k + 1]); });
  return instantFromZoned(fields, timeZone);
}

// ---------------------------------------------------------------- sheets ---

const isDate = (v) => Object.prototype.toString.call(v) === '[object Date]';
const copyValue = (v) => (isDate(v) ? new Date(v.getTime()) : v);
/** What Range.getNumberFormats() returns for a cell that was never formatted. */
const GENERAL_FORMAT = '0.###############';
const emptyCell = () => ({ value: '', formula: '', links: [], format: '' });

class FakeRichTextValue {
  constructor(text, links) { this._text = text; this._links = links || []; }
  getText() { return this._text; }
  /** The link of the whole text, or null when parts differ (as in Apps Script). */
  getLinkUrl() {
    if (!this._links.length) return null;
    const l = this._links[0];
    return this._links.length === 1 && l.start === 0 && l.end === this._text.length ? l.url : null;
  }
  getRuns() { return this._links.map((l) => ({ getStartIndex: () => l.start, getEndIndex: () => l.end, getLinkUrl: () => l.url, getText: () => this._text.slice(l.start, l.end) })); }
  copy() { return new FakeRichTextValueBuilder(this._text, this._links.slice()); }
}

class FakeRichTextValueBuilder {
  constructor(text, links) { this._text = text || ''; this._links = links || []; }
  setText(text) { this._text = String(text); this._links = []; return this; }
  setLinkUrl(a, b, c) {
    if (typeof a === 'number') this._links.push({ start: a, end: b, url: c });
    else this._links = [{ start: 0, end: this._text.length, url: a }];
    return this;
  }
  build() { return new FakeRichTextValue(this._text, this._links.slice()); }
}

let sheetIds = 0;

class FakeSheet {
  /**
   * @param {FakeSpreadsheet} parent
   * @param {string} name
   * @param {any[][]} rows  Cell values, row 1 first; Dates are date cells.
   */
  constructor(parent, name, rows) {
    this._parent = parent;
    this._name = name;
    this._id = ++sheetIds;
    this.maxRows = Math.max(1000, rows.length);
    this.maxColumns = Math.max(26, ...rows.map((r) => r.length));
    this.cells = new Map(); // "r,c" -> {value, formula, links, format}
    rows.forEach((r, i) => r.forEach((v, j) => { if (v !== '' && v !== null && v !== undefined) this._cell(i + 1, j + 1).value = v; }));
  }
  _cell(r, c) {
    const key = r + ',' + c;
    if (!this.cells.has(key)) this.cells.set(key, emptyCell());
    return this.cells.get(key);
  }
  _peek(r, c) { return this.cells.get(r + ',' + c) || emptyCell(); }
  getName() { return this._name; }
  getSheetId() { return this._id; }
  setName(name) { this._name = name; return this; }
  activate() { this._parent.active = this; return this; }
  getParent() { return this._parent; }
  getMaxRows() { return this.maxRows; }
  getMaxColumns() { return this.maxColumns; }
  getFrozenRows() { return 1; }
  getLastRow() { let last = 0; for (const [k, c] of this.cells) if (c.value !== '' || c.formula) last = Math.max(last, Number(k.split(',')[0])); return last; }
  getLastColumn() { let last = 0; for (const [k, c] of this.cells) if (c.value !== '' || c.formula) last = Math.max(last, Number(k.split(',')[1])); return last; }
  _move(fn) {
    const moved = new Map();
    for (const [k, c] of this.cells) {
      const [r, col] = k.split(',').map(Number);
      const to = fn(r, col);
      if (to) moved.set(to[0] + ',' + to[1], c);
    }
    this.cells = moved;
  }
  insertColumnsAfter(after, howMany) {
    this._move((r, col) => [r, col > after ? col + howMany : col]);
    this.maxColumns += howMany;
    this._parent.log.push({ op: 'insertColumnsAfter', after, howMany });
    return this;
  }
  /** Sheet.deleteRow: the rows below move up by one. */
  deleteRow(position) {
    this._move((r, col) => (r === position ? null : [r > position ? r - 1 : r, col]));
    this.maxRows -= 1;
    this._parent.log.push({ op: 'deleteRow', row: position });
    return this;
  }
  /** Sheet.insertRowBefore: the rows from there move down by one. */
  insertRowBefore(position) {
    this._move((r, col) => [r >= position ? r + 1 : r, col]);
    this.maxRows += 1;
    this._parent.log.push({ op: 'insertRowBefore', row: position });
    return this;
  }
  /**
   * Sheet.sort with the header row frozen, as Data › Sort sheet does: whole
   * rows move, with their formats, formulas and links.
   */
  sort(columnPosition, ascending) {
    const lastRow = this.getLastRow();
    const rows = [];
    for (let r = 2; r <= lastRow; r++) rows.push(r);
    const key = (r) => { const v = this._peek(r, columnPosition).value; return isDate(v) ? v.getTime() : v; };
    const sorted = rows.slice().sort((a, b) => {
      const x = key(a); const y = key(b);
      const cmp = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return (ascending === false ? -cmp : cmp) || a - b;
    });
    const target = new Map(sorted.map((from, i) => [from, i + 2]));
    this._move((r, col) => [target.get(r) || r, col]);
    this._parent.log.push({ op: 'sort', column: columnPosition, ascending: ascending !== false });
    return this;
  }
  getRange(row, column, numRows, numColumns) {
    const nr = numRows === undefined ? 1 : numRows;
    const nc = numColumns === undefined ? 1 : numColumns;
    if (!(row >= 1 && column >= 1 && nr >= 1 && nc >= 1) || [row, column, nr, nc].some((x) => !Number.isInteger(x))) {
      throw new Error('Exception: The starting row/column and sizes of the range must be positive integers (got ' + [row, column, nr, nc] + ').');
    }
    if (row + nr - 1 > this.maxRows || column + nc - 1 > this.maxColumns) {
      throw new Error('Exception: The coordinates of the range are outside the dimensions of the sheet.');
    }
    return new FakeRange(this, row, column, nr, nc);
  }
  /** Test helper: the value of one cell. */
  value(r, c) { return this._peek(r, c).value; }
  /** Test helper: the whole used grid. */
  snapshot() {
    const out = [];
    const lastRow = this.getLastRow();
    const lastColumn = this.getLastColumn();
    for (let r = 1; r <= lastRow; r++) {
      const line = [];
      for (let c = 1; c <= lastColumn; c++) {
        const cell = this._peek(r, c);
        line.push({ value: copyValue(cell.value), formula: cell.formula, links: JSON.stringify(cell.links), format: cell.format });
      }
      out.push(line);
    }
    return out;
  }
  /** Test helper: the row (1-based) holding a value in a column, or 0. */
  rowOf(column, value) {
    for (let r = 1; r <= this.getLastRow(); r++) if (this._peek(r, column).value === value) return r;
    return 0;
  }
}

class FakeRange {
  constructor(sheet, row, column, numRows, numColumns) {
    Object.assign(this, { sheet, row, column, numRows, numColumns });
  }
  getRow() { return this.row; }
  getColumn() { return this.column; }
  getNumRows() { return this.numRows; }
  getNumColumns() { return this.numColumns; }
  getSheet() { return this.sheet; }
  activate() { this.sheet._parent.selection = this; return this; }
  _map(fn) {
    const out = [];
    for (let i = 0; i < this.numRows; i++) {
      const line = [];
      for (let j = 0; j < this.numColumns; j++) line.push(fn(this.sheet._peek(this.row + i, this.column + j)));
      out.push(line);
    }
    return out;
  }
  _log(op, extra) { this.sheet._parent.log.push(Object.assign({ op, sheet: this.sheet._name, row: this.row, column: this.column, numRows: this.numRows, numColumns: this.numColumns }, extra)); }
  _checkShape(values, what) {
    if (!Array.isArray(values) || values.length !== this.numRows) {
      throw new Error('Exception: The number of rows in the data does not match the number of rows in the range. The data has ' + (values && values.length) + ' but the range has ' + this.numRows + '.');
    }
    values.forEach((line) => {
      if (!Array.isArray(line) || line.length !== this.numColumns) {
        throw new Error('Exception: The number of columns in the data does not match the number of columns in the range. The data has ' + (line && line.length) + ' but the range has ' + this.numColumns + '.');
      }
      line.forEach((v) => {
        if (what === 'values' && v !== null && typeof v === 'object' && !isDate(v)) throw new Error('Exception: ' + what + ' must be primitives or Dates, got ' + v);
        if (what === 'rich' && !(v instanceof FakeRichTextValue)) throw new Error('Exception: The parameters (number[]) don\'t match the method signature for SpreadsheetApp.Range.setRichTextValues.');
        if (what === 'formats' && typeof v !== 'string') throw new Error('Exception: The parameters (number[][]) don\'t match the method signature for SpreadsheetApp.Range.setNumberFormats.');
      });
    });
  }
  getValue() { return this.getValues()[0][0]; }
  getValues() { this._log('getValues'); return this._map((c) => copyValue(c.value)); }
  getFormulas() { this._log('getFormulas'); return this._map((c) => c.formula); }
  getNumberFormat() { return this.getNumberFormats()[0][0]; }
  getNumberFormats() { this._log('getNumberFormats'); return this._map((c) => c.format || GENERAL_FORMAT); }
  getRichTextValues() {
    this._log('getRichTextValues');
    return this._map((c) => (typeof c.value === 'string' && !c.formula ? new FakeRichTextValue(c.value, c.links.slice()) : null));
  }
  setValues(values) {
    this._checkShape(values, 'values');
    this._log('setValues');
    values.forEach((line, i) => line.forEach((v, j) => {
      const cell = this.sheet._cell(this.row + i, this.column + j);
      if (typeof v === 'string' && v.startsWith('=')) {
        if (cell.formula !== v) cell.value = '#FORMULA ' + v;
        cell.formula = v;
      } else {
        cell.formula = '';
        cell.value = v === null || v === undefined ? '' : copyValue(v);
      }
      cell.links = [];
    }));
    return this;
  }
  setValue(v) { return this.setValues([[v]]); }
  /** A formula cell, as a person types it (the test's way to make one). */
  setFormula(formula) {
    const cell = this.sheet._cell(this.row, this.column);
    Object.assign(cell, { formula, value: '#FORMULA ' + formula, links: [] });
    return this;
  }
  setRichTextValues(values) {
    this._checkShape(values, 'rich');
    this._log('setRichTextValues');
    values.forEach((line, i) => line.forEach((v, j) => {
      const cell = this.sheet._cell(this.row + i, this.column + j);
      Object.assign(cell, { value: v.getText(), formula: '', links: v._links.slice() });
    }));
    return this;
  }
  setNumberFormat(format) {
    this._log('setNumberFormat', { format });
    for (let i = 0; i < this.numRows; i++) for (let j = 0; j < this.numColumns; j++) this.sheet._cell(this.row + i, this.column + j).format = format;
    return this;
  }
  setNumberFormats(formats) {
    this._checkShape(formats, 'formats');
    this._log('setNumberFormats');
    formats.forEach((line, i) => line.forEach((f, j) => { this.sheet._cell(this.row + i, this.column + j).format = f; }));
    return this;
  }
}

class FakeSpreadsheet {
  /**
   * @param {{id?: string, name?: string, timeZone: string, sheets: Object<string, any[][]>}} spec
   */
  constructor(spec) {
    this.id = spec.id || '1FakeSpreadsheetId';
    this.name = spec.name || 'Invoices';
    this.timeZone = spec.timeZone;
    this.log = [];
    this.sheets = Object.keys(spec.sheets).map((n) => new FakeSheet(this, n, spec.sheets[n]));
    this.active = this.sheets[0];
    /** The script bound to this spreadsheet: what its users and executions share. */
    this.project = new FakeProject(this.id);
  }
  getId() { return this.id; }
  getName() { return this.name; }
  getUrl() { return 'https://docs.google.com/spreadsheets/d/' + this.id + '/edit'; }
  getSpreadsheetTimeZone() { return this.timeZone; }
  getSheets() { return this.sheets.slice(); }
  getSheetByName(name) { return this.sheets.find((s) => s.getName() === name) || null; }
  getActiveSheet() { return this.active; }
  insertSheet(name) { const s = new FakeSheet(this, name, []); this.sheets.push(s); return s; }
  /** Test helper: write operations logged so far. */
  writes() { return this.log.filter((e) => /^(set|insert)/.test(e.op)); }
}

// -------------------------------------------------- the bound script ------

/**
 * What every user and execution of the script bound to one document shares:
 * its document properties, its installable triggers and its document lock.
 * Only plain data crosses its methods, so executions in other threads reach
 * it through executions.js.
 */
class FakeProject {
  constructor(documentId) {
    this.documentId = documentId;
    this.documentProperties = new Map();
    this.triggers = []; // {id, owner, handler, type, everyDays, atHour, timezone}
    this.seq = 0;
    this.lockCell = new Int32Array(new SharedArrayBuffer(4)); // 0 = free, else the holder's execution id
    this.events = [];
  }
  docGet(k) { return this.documentProperties.has(k) ? this.documentProperties.get(k) : null; }
  docSet(k, v) { this.documentProperties.set(k, String(v)); }
  docDelete(k) { this.documentProperties.delete(k); }
  docAll() { return Object.fromEntries(this.documentProperties); }
  /** ScriptApp.getProjectTriggers: the caller's own triggers only. */
  triggersOf(owner) { return this.triggers.filter((t) => t.owner === owner).map((t) => Object.assign({}, t)); }
  addTrigger(spec) {
    // Add-ons: at most one time-driven trigger per user per document, and
    // none more often than hourly.
    if (this.triggers.some((t) => t.owner === spec.owner && t.type === 'CLOCK')) {
      throw new Error('Exception: This add-on has created too many time-based triggers in this document for this Google user account.');
    }
    if (spec.everyMinutes) throw new Error('Exception: Add-ons may not run time-based triggers more often than hourly.');
    const id = String(100000 + ++this.seq);
    this.triggers.push(Object.assign({}, spec, { id, type: 'CLOCK' }));
    return id;
  }
  deleteTrigger(owner, id) {
    const t = this.triggers.find((x) => x.id === id);
    // A user can delete only the triggers they own.
    if (!t || t.owner !== owner) return false;
    this.triggers = this.triggers.filter((x) => x !== t);
    return true;
  }
  note(event) { this.events.push(event); }
}

// ----------------------------------------------------------- html service --

/** Compiles Apps Script template scriptlets (<? ?>, <?= ?>, <?!= ?>) to a function. */
function compileTemplate(source) {
  let code = 'var __out = "";\n';
  const re = /<\?(!=|=)?([\s\S]*?)\?>/g;
  let last = 0;
  let m;
  while ((m = re.exec(source))) {
    code += '__out += ' + JSON.stringify(source.slice(last, m.index)) + ';\n';
    // Printing scriptlets may end in ";" as in Google's samples: <?!= include('x'); ?>
    const expr = m[2].trim().replace(/;+$/, '');
    if (m[1] === '!=') code += '__out += String(' + expr + ');\n';
    else if (m[1] === '=') code += '__out += __escape(String(' + expr + '));\n';
    else code += m[2] + '\n';
    last = re.lastIndex;
  }
  code += '__out += ' + JSON.stringify(source.slice(last)) + ';\nreturn __out;';
  return '(function (__vars, __escape) { with (__vars) {\n' + code + '\n} })';
}

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

class FakeHtmlOutput {
  constructor(content) { this._content = content; this.title = ''; this.width = null; this.height = null; }
  getContent() { return this._content; }
  setTitle(t) { this.title = t; return this; }
  getTitle() { return this.title; }
  setWidth(w) { this.width = w; return this; }
  getWidth() { return this.width; }
  setHeight(h) { this.height = h; return this; }
  getHeight() { return this.height; }
  setSandboxMode() { return this; }
  setXFrameOptionsMode() { return this; }
  addMetaTag() { return this; }
}

function htmlFile(name) {
  const file = path.join(ADDON_DIR, name.endsWith('.html') ? name : name + '.html');
  if (!fs.existsSync(file)) throw new Error('Exception: No HTML file named ' + name + ' was found.');
  return fs.readFileSync(file, 'utf8');
}

// ------------------------------------------------------------ url fetch ----

class FakeHttpResponse {
  constructor(r) { this._r = r; }
  getResponseCode() { return this._r.status; }
  getContentText() { return this._r.body; }
  getHeaders() { return Object.assign({}, this._r.headers); }
  getAllHeaders() { return Object.assign({}, this._r.headers); }
}

/** The scopes the manifest declares: what a user who clicked "Allow" has granted. */
function manifestScopes() {
  return JSON.parse(fs.readFileSync(path.join(ADDON_DIR, 'appsscript.json'), 'utf8')).oauthScopes;
}

/**
 * A user of the add-on. Each has their own OAuth token and granted scopes.
 * @param {string|{email: string, token?: string, scopes?: string[]}} spec
 */
function fakeUser(spec) {
  const u = typeof spec === 'string' ? { email: spec } : Object.assign({}, spec);
  u.token = u.token || 'ya29.token-of-' + u.email.split('@')[0];
  u.scopes = u.scopes || manifestScopes();
  u.key = crypto.createHash('sha256').update('temporary-key:' + u.email).digest('base64url').slice(0, 22);
  return u;
}

// -------------------------------------------------------------- the env ----

/**
 * Builds a vm context holding the fakes and the add-on's server files: one
 * user's view of the add-on in one document.
 * @param {Object} options
 * @param {FakeSpreadsheet} options.spreadsheet
 * @param {FakeProject} [options.project]       Default: the spreadsheet's own.
 * @param {Int32Array} [options.lockCell]       Default: the project's.
 * @param {string|Object} [options.user]        Default: owner@example.com with every manifest scope.
 * @param {Date|string} [options.now]           The fixed "now" of the context's clock.
 * @param {string} [options.authMode]           NONE | LIMITED | FULL (default FULL).
 * @param {Object<string,string>} [options.userProperties]
 * @param {string[]} [options.urlFetchWhitelist]  Enforced like the manifest's.
 * @param {Object<string,string>} [options.network]  https origin → the http origin that answers for it.
 * @param {(request: {url: string, method: string, headers: Object}) => void} [options.duringFetch]
 *   Runs after the server answered and before fetch returns: what people do while the script waits.
 */
function createAddonEnv(options) {
  const ss = options.spreadsheet;
  const project = options.project || ss.project;
  const lockCell = options.lockCell || project.lockCell;
  const user = fakeUser(options.user || 'owner@example.com');
  const env = {
    spreadsheet: ss,
    project,
    user,
    authMode: options.authMode || 'FULL',
    fetches: [],
    ui: { menus: [], sidebars: [], dialogs: [], alerts: [] },
    logs: [],
    authPrompts: [],
    lockWaits: [],
    stores: { user: new Map(Object.entries(options.userProperties || {})) },
    execution: { id: newExecutionId() },
  };
  const denied = (what) => {
    if (env.authMode === 'NONE') throw new Error('Exception: You do not have permission to call ' + what + '. Required permissions are not granted in AuthMode.NONE.');
  };

  const userProperties = () => {
    const store = env.stores.user;
    const api = {
      getProperty: (k) => (store.has(k) ? store.get(k) : null),
      setProperty: (k, v) => { store.set(k, String(v)); return api; },
      deleteProperty: (k) => { store.delete(k); return api; },
      getProperties: () => Object.fromEntries(store),
      getKeys: () => [...store.keys()],
      setProperties: (o) => { Object.entries(o).forEach(([k, v]) => store.set(k, String(v))); return api; },
    };
    return api;
  };
  const documentProperties = () => {
    const api = {
      getProperty: (k) => project.docGet(k),
      setProperty: (k, v) => { project.docSet(k, String(v)); return api; },
      deleteProperty: (k) => { project.docDelete(k); return api; },
      getProperties: () => project.docAll(),
      getKeys: () => Object.keys(project.docAll()),
      setProperties: (o) => { Object.entries(o).forEach(([k, v]) => project.docSet(k, String(v))); return api; },
    };
    return api;
  };

  const menuBuilder = (title) => {
    const menu = { title, items: [] };
    const b = {
      addItem: (caption, fn) => { menu.items.push({ caption, fn }); return b; },
      addSeparator: () => { menu.items.push({ separator: true }); return b; },
      addSubMenu: () => b,
      addToUi: () => { env.ui.menus.push(menu); },
    };
    return b;
  };

  /** The document lock: one holder at a time across every execution and thread. */
  const documentLock = () => {
    const me = () => env.execution.id;
    const lock = {
      tryLock: (timeoutInMillis) => {
        const started = Date.now();
        const deadline = started + Math.max(0, Number(timeoutInMillis) || 0);
        for (;;) {
          const holder = Atomics.compareExchange(lockCell, 0, 0, me());
          if (holder === 0 || holder === me()) {
            if (Date.now() > started) env.lockWaits.push(Date.now() - started);
            return true;
          }
          const left = deadline - Date.now();
          if (left <= 0) return false;
          Atomics.wait(lockCell, 0, holder, Math.min(left, 50));
        }
      },
      waitLock: (timeoutInMillis) => {
        if (!lock.tryLock(timeoutInMillis)) throw new Error('Exception: Lock timeout: another process was holding the lock for too long.');
      },
      releaseLock: () => {
        if (Atomics.compareExchange(lockCell, 0, me(), 0) === me()) Atomics.notify(lockCell, 0);
      },
      hasLock: () => Atomics.load(lockCell, 0) === me(),
    };
    return lock;
  };

  const triggerApi = (t) => ({
    getHandlerFunction: () => t.handler, getEventType: () => 'CLOCK', getUniqueId: () => t.id,
    getTriggerSource: () => 'CLOCK', getTriggerSourceId: () => project.documentId,
  });

  const AuthMode = { NONE: 'NONE', LIMITED: 'LIMITED', FULL: 'FULL', CUSTOM_FUNCTION: 'CUSTOM_FUNCTION' };
  const requireScopes = (scopes) => {
    const missing = scopes.filter((s) => !user.scopes.includes(s));
    if (missing.length) {
      // Apps Script ends the execution here and shows the user Google's consent
      // screen for the missing scopes.
      env.authPrompts.push(Array.from(missing));
      throw new Error('Exception: Authorization is required to perform that action.');
    }
  };

  const sandbox = {
    console: { log: (...a) => env.logs.push(a.join(' ')), warn: (...a) => env.logs.push(a.join(' ')), error: (...a) => env.logs.push(a.join(' ')), info: (...a) => env.logs.push(a.join(' ')) },
    Logger: { log: (...a) => env.logs.push(a.join(' ')) },
    SpreadsheetApp: {
      getActiveSpreadsheet: () => { denied('SpreadsheetApp.getActiveSpreadsheet'); return ss; },
      getActive: () => { denied('SpreadsheetApp.getActive'); return ss; },
      getUi: () => ({
        createAddonMenu: () => menuBuilder('Add-on menu'),
        createMenu: (t) => menuBuilder(t),
        showSidebar: (html) => { env.ui.sidebars.push(html); },
        showModalDialog: (html, title) => { env.ui.dialogs.push({ html, title }); },
        showModelessDialog: (html, title) => { env.ui.dialogs.push({ html, title }); },
        alert: (...a) => { env.ui.alerts.push(a); return 'OK'; },
        ButtonSet: { OK: 'OK', OK_CANCEL: 'OK_CANCEL', YES_NO: 'YES_NO' },
        Button: { OK: 'OK', CANCEL: 'CANCEL' },
      }),
      newRichTextValue: () => new FakeRichTextValueBuilder(),
    },
    PropertiesService: {
      getUserProperties: () => { denied('PropertiesService.getUserProperties'); return userProperties(); },
      getDocumentProperties: () => { denied('PropertiesService.getDocumentProperties'); return documentProperties(); },
    },
    HtmlService: {
      createHtmlOutputFromFile: (name) => new FakeHtmlOutput(htmlFile(name)),
      createHtmlOutput: (html) => new FakeHtmlOutput(html || ''),
      createTemplateFromFile: (name) => {
        const source = htmlFile(name);
        const template = {
          getRawContent: () => source,
          evaluate: () => {
            const vars = Object.assign({}, template);
            delete vars.evaluate; delete vars.getRawContent;
            const fn = vm.runInContext(compileTemplate(source), context);
            return new FakeHtmlOutput(fn(vars, escapeHtml));
          },
        };
        return template;
      },
      SandboxMode: { IFRAME: 'IFRAME' },
      XFrameOptionsMode: { ALLOWALL: 'ALLOWALL', DEFAULT: 'DEFAULT' },
    },
    ScriptApp: {
      AuthMode,
      AuthorizationStatus: { REQUIRED: 'REQUIRED', NOT_REQUIRED: 'NOT_REQUIRED' },
      EventType: { CLOCK: 'CLOCK', ON_OPEN: 'ON_OPEN' },
      getOAuthToken: () => { denied('ScriptApp.getOAuthToken'); return user.token; },
      requireScopes: (authMode, scopes) => { denied('ScriptApp.requireScopes'); requireScopes(scopes); },
      requireAllScopes: () => { denied('ScriptApp.requireAllScopes'); requireScopes(manifestScopes()); },
      getProjectTriggers: () => { denied('ScriptApp.getProjectTriggers'); return project.triggersOf(user.email).map(triggerApi); },
      getUserTriggers: () => { denied('ScriptApp.getUserTriggers'); return project.triggersOf(user.email).map(triggerApi); },
      deleteTrigger: (api) => { denied('ScriptApp.deleteTrigger'); project.deleteTrigger(user.email, api.getUniqueId()); },
      newTrigger: (handler) => {
        denied('ScriptApp.newTrigger');
        const spec = { handler, owner: user.email };
        const clock = {
          everyDays: (n) => { spec.everyDays = n; return clock; },
          everyHours: (n) => { spec.everyHours = n; return clock; },
          everyMinutes: (n) => { spec.everyMinutes = n; return clock; },
          atHour: (h) => { spec.atHour = h; return clock; },
          nearMinute: (m) => { spec.nearMinute = m; return clock; },
          inTimezone: (tz) => { spec.timezone = tz; return clock; },
          create: () => { const id = project.addTrigger(spec); return triggerApi(Object.assign({ id }, spec)); },
        };
        return { timeBased: () => clock };
      },
    },
    Session: {
      getScriptTimeZone: () => JSON.parse(fs.readFileSync(path.join(ADDON_DIR, 'appsscript.json'), 'utf8')).timeZone,
      // Unique to the user, revealing nothing about them; needs no scope.
      getTemporaryActiveUserKey: () => user.key,
    },
    Utilities: {
      formatDate,
      parseDate,
      DigestAlgorithm: { SHA_256: 'sha256', SHA_1: 'sha1', MD5: 'md5' },
      Charset: { UTF_8: 'utf8', US_ASCII: 'ascii' },
      computeDigest: (alg, value, charset) => [...crypto.createHash(alg).update(String(value), charset || 'utf8').digest()].map((b) => (b > 127 ? b - 256 : b)),
      sleep: (ms) => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms); },
    },
    LockService: {
      getDocumentLock: () => { denied('LockService.getDocumentLock'); return documentLock(); },
    },
    UrlFetchApp: {
      fetch: (url, params) => {
        denied('UrlFetchApp.fetch');
        const p = params || {};
        if (options.urlFetchWhitelist && !options.urlFetchWhitelist.some((prefix) => String(url).startsWith(prefix))) {
          throw new Error('Exception: Script is not allowed to call ' + url + ' because it is not in the urlFetchWhitelist of the manifest.');
        }
        const method = String(p.method || 'get').toLowerCase();
        const headers = Object.assign({}, p.headers || {});
        if (p.contentType) headers['Content-Type'] = p.contentType;
        const body = p.payload === undefined ? undefined : String(p.payload);
        const origin = Object.keys(options.network || {}).find((o) => String(url).startsWith(o + '/') || String(url) === o);
        const wire = origin ? options.network[origin] + String(url).slice(origin.length) : String(url);
        const started = Date.now();
        let out;
        try {
          out = JSON.parse(execFileSync(process.execPath, [FETCH_HELPER], {
            input: JSON.stringify({ url: wire, method, headers, body }), timeout: 90000, maxBuffer: 64 * 1024 * 1024,
          }).toString('utf8'));
        } catch (err) {
          throw new Error('Exception: Request failed for ' + url + ': ' + err.message);
        }
        const request = { url: String(url), method, headers, body: body && headers['Content-Type'] === 'application/json' ? JSON.parse(body) : body, status: out.status, ms: Date.now() - started, error: out.error };
        env.fetches.push(request);
        if (out.error) throw new Error('Exception: Address unavailable: ' + url);
        if (options.duringFetch) options.duringFetch(request, out);
        if (!p.muteHttpExceptions && out.status >= 400) {
          throw new Error('Exception: Request failed for ' + url + ' returned code ' + out.status + '. Truncated server response: ' + out.body.slice(0, 200));
        }
        return new FakeHttpResponse(out);
      },
    },
  };
  const context = vm.createContext(sandbox);
  // The context's clock: a fixed "now" so "today" is chosen by the test.
  if (options.now) {
    const nowMs = new Date(options.now).getTime();
    vm.runInContext('(function (now) { const RealDate = Date; globalThis.Date = class Date extends RealDate {' +
      ' constructor(...a) { if (a.length) super(...a); else super(now); } static now() { return now; } }; })(' + nowMs + ');', context);
  }
  for (const file of addonFiles()) {
    vm.runInContext(fs.readFileSync(path.join(ADDON_DIR, file), 'utf8'), context, { filename: file });
  }
  /**
   * One execution of a top-level function, as google.script.run or a trigger
   * makes it: arguments and result go through JSON, and a lock the execution
   * still holds is released when it ends.
   */
  const call = (name, ...args) => {
    if (typeof context[name] !== 'function') throw new Error('No server function ' + name);
    env.execution = { id: newExecutionId() };
    try {
      const result = context[name](...JSON.parse(JSON.stringify(args)));
      return result === undefined ? undefined : JSON.parse(JSON.stringify(result));
    } finally {
      if (Atomics.compareExchange(lockCell, 0, env.execution.id, 0) === env.execution.id) Atomics.notify(lockCell, 0);
    }
  };
  return { env, context, call, spreadsheet: ss };
}

/** A non-zero 31-bit id for one execution (the lock cell holds its holder's). */
function newExecutionId() {
  return crypto.randomInt(1, 0x7fffffff);
}

/** The add-on's server files: the ones the type-check covers. */
function addonFiles() {
  return JSON.parse(fs.readFileSync(path.join(ADDON_DIR, 'tsconfig.json'), 'utf8')).files;
}

module.exports = {
  ADDON_DIR, FakeSpreadsheet, FakeSheet, FakeRange, FakeProject, FakeRichTextValue, createAddonEnv, formatDate, parseDate,
  instantFromZoned, compileTemplate, htmlFile, manifestScopes, GENERAL_FORMAT,
};
