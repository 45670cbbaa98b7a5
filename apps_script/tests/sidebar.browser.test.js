'use strict';
/**
 * The sidebar in real headless Chromium. The page is the HTML the add-on's
 * showSidebar() produces; its google.script.run is a shim that calls the same
 * server functions in Node (through playwright's exposeFunction), and those
 * call the real API. Google's add-ons stylesheet is loaded the way users get
 * it — the page's own <link> to ssl.gstatic.com — answered from a local
 * stand-in (tests/fixtures/addons-css) because the test network is closed.
 * Saves sidebar.png, preview.png and confirm.png in tests/artifacts/, and,
 * for the collections view, sidebar-aging.png, sidebar-fixes.png,
 * sidebar-unsent.png and sidebar-statement.png.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createAddonEnv } = require('./support/gas_fakes');
const { exampleSpreadsheet, collectionsSpreadsheet, COLLECTIONS_FIRST_DAY } = require('./support/sheets');
const { driveRun } = require('./support/drive');
const { startApi, needRoute, REPO_ROOT } = require('./support/api_server');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = path.join(REPO_ROOT, 'tests', 'artifacts');
const ADDONS_CSS_URL = 'https://ssl.gstatic.com/docs/script/css/add-ons1.css';
const ADDONS_CSS = path.join(__dirname, 'fixtures', 'addons-css', 'add-ons1.css');
const NOW = '2026-11-24T15:00:00Z';

/** The google.script.run / google.script.host shim, injected before the page's scripts. */
const SHIM = `
window.google = { script: {
  host: { close: function () {}, setHeight: function () {}, setWidth: function () {}, editor: { focus: function () {} } },
  run: (function () {
    function runner(success, failure) {
      return new Proxy({}, { get: function (_, name) {
        if (name === 'withSuccessHandler') return function (fn) { return runner(fn, failure); };
        if (name === 'withFailureHandler') return function (fn) { return runner(success, fn); };
        if (name === 'withUserObject') return function () { return runner(success, failure); };
        return function () {
          var args = Array.prototype.slice.call(arguments);
          // Asynchronous, with JSON-only arguments and results, like the real one.
          window.__gasRun(String(name), JSON.stringify(args)).then(function (reply) {
            if (reply.ok) { if (success) success(reply.value); }
            else if (failure) failure(new Error(reply.message));
          });
        };
      } });
    }
    return runner(null, null);
  })()
} };`;

function loadPlaywright() {
  try {
    return require('playwright-core');
  } catch (err) {
    return null;
  }
}

/** Headless Chromium, or null (and the test skipped, or failed under CI) when there is none. */
async function launch(t) {
  if (!fs.existsSync(CHROMIUM)) {
    const why = 'SKIPPED: no Chromium at ' + CHROMIUM + ' (install Debian "chromium" or set CHROMIUM_PATH) — the browser test did NOT run.';
    if (process.env.CI === 'true') assert.fail(why);
    console.warn('\n' + '*'.repeat(100) + '\n*** ' + why + '\n' + '*'.repeat(100) + '\n');
    t.skip(why);
    return null;
  }
  const playwright = loadPlaywright();
  assert.ok(playwright, 'playwright-core is a devDependency; run npm ci');
  return playwright.chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * The sidebar the add-on serves, in a page as wide as Sheets shows it, its
 * google.script.run reaching `call`. Resolves once it has drawn its header.
 * @return {Promise<{page: any, pageErrors: string[], served: string[], cssServed: () => number}>}
 */
async function openSidebar(browser, sidebar, call) {
  const served = [];
  const page = await browser.newPage({ viewport: { width: sidebar.getWidth(), height: 900 }, deviceScaleFactor: 2 });
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => { if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) pageErrors.push('console: ' + msg.text()); });
  let cssServed = 0;
  await page.route('https://**/*', (route) => {
    if (route.request().url() === ADDONS_CSS_URL) {
      cssServed++;
      return route.fulfill({ status: 200, contentType: 'text/css', body: fs.readFileSync(ADDONS_CSS, 'utf8') });
    }
    return route.abort();
  });
  await page.exposeFunction('__gasRun', (name, argsJson) => {
    served.push(name);
    try {
      return { ok: true, value: call(name, ...JSON.parse(argsJson)) };
    } catch (err) {
      return { ok: false, message: String(err && err.message || err) };
    }
  });
  // The harness page: the sidebar's HTML with the shim first in <head>.
  await page.setContent(sidebar.getContent().replace('<head>', '<head><script>' + SHIM + '</script>'), { waitUntil: 'load' });
  await page.waitForFunction(() => !document.getElementById('context').textContent.includes('Loading'), null, { timeout: 10000 }).catch((err) => { throw new Error(err.message + ' page errors: ' + pageErrors.join(' | ')); });
  return { page, pageErrors, served, cssServed: () => cssServed };
}

/** Scrolls the sidebar so that an element is at its top, then saves a screenshot. */
async function shoot(page, selector, file) {
  await page.$eval('#app', (app, sel) => {
    const target = sel ? document.querySelector(sel) : null;
    app.scrollTop = target ? target.getBoundingClientRect().top - app.getBoundingClientRect().top + app.scrollTop - 8 : 0;
  }, selector);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, file) });
  return path.join(ARTIFACTS, file);
}

test('the sidebar: setup notice, preview with each email, confirmation, drafts with progress and links, rows it could not write', async (t) => {
  const api = await startApi();
  let browser;
  try {
    if (!needRoute(t, api, 'drafts')) return;
    const ss = exampleSpreadsheet('America/New_York', { id: 'browser-sheet' });
    const sheet = ss.getSheetByName('Invoices');
    // While /v1/drafts works, someone deletes INV-1023's row (its draft is made all the same).
    let deleted = false;
    const duringFetch = (request) => {
      if (deleted || !request.url.endsWith('/v1/drafts')) return;
      deleted = true;
      sheet.deleteRow(sheet.rowOf(1, 'INV-1023'));
    };
    const { env, call, context } = createAddonEnv({ spreadsheet: ss, now: NOW, network: api.network, duringFetch });
    context.showSidebar();
    const sidebar = env.ui.sidebars[0];
    assert.equal(sidebar.getWidth(), 300);
    browser = await launch(t);
    if (!browser) return;
    const { page, pageErrors, served, cssServed } = await openSidebar(browser, sidebar, call);
    assert.equal(cssServed(), 1, 'the page asked for Google\'s add-ons stylesheet');
    const generateLook = await page.$eval('#generate', (b) => { const s = getComputedStyle(b); return [s.backgroundImage, s.fontSize, s.height].join(' '); });
    assert.match(generateLook, /linear-gradient\(rgb\(77, 144, 254\), rgb\(71, 135, 237\)\) 11px 29px/, 'Google\'s blue action button: the stylesheet applies');
    assert.match(await page.textContent('#context'), /^Tab “Invoices” · today 2026-11-24 \(America\/New_York\)$/, 'the sidebar names the tab');

    // Not set up: the notice shows; once Settings are saved it goes by itself.
    assert.equal(await page.isVisible('#setup'), true);
    call('saveSettings', { apiUrl: api.origin, apiKey: 'not-the-key' });
    await page.waitForSelector('#setup', { state: 'hidden', timeout: 8000 });

    // A wrong key is explained in plain words in the sidebar, and nothing is listed.
    await page.click('#preview');
    await page.waitForSelector('#error:not(.hidden)');
    assert.match(await page.textContent('#error'), /^The server did not accept the API key\. Check the key in Invoice Collector › Settings\.$/);
    call('saveSettings', { apiUrl: api.origin, apiKey: api.apiKey });

    await page.click('#preview');
    await page.waitForSelector('#banner:not(.hidden)');
    assert.equal(await page.isVisible('#error'), false, 'the error clears on the next run');
    const kinds = await page.$$eval('.ic-row', (els) => els.map((e) => e.getAttribute('data-kind')));
    assert.ok(kinds.length >= 20);
    const firstOther = kinds.findIndex((k) => k !== 'error');
    assert.ok(firstOther > 0 && kinds.slice(firstOther).every((k) => k !== 'error'), 'rows that need attention come first: ' + kinds.join(','));
    // Each reminder can be read before it is drafted.
    await page.click('.ic-row[data-invoice-id="INV-1007"]');
    const email = await page.textContent('.ic-row[data-invoice-id="INV-1007"] .ic-email');
    const planned = call('runChunk', call('beginRun', 'preview'), 0).rows.find((r) => r.invoice_id === 'INV-1007');
    assert.ok(planned.subject && planned.body);
    assert.ok(email.includes(planned.subject), 'the subject is shown');
    assert.ok(email.includes(planned.body.trim().split('\n')[0]), 'the body is shown');
    assert.match(email, /To ap@pinecrest\.example\.com/);
    await page.$eval('.ic-row[data-invoice-id="INV-1007"]', (e) => e.scrollIntoView({ block: 'center' }));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'preview.png') });

    // Generate: a preview, then the confirmation with the count and the amount.
    const due = planned && call('runChunk', call('beginRun', 'preview'), 0).rows.filter((r) => r.action === 'draft');
    await page.click('#generate');
    await page.waitForSelector('#confirm:not(.hidden)', { timeout: 20000 });
    const question = await page.textContent('#confirm-text');
    const sums = {};
    for (const r of due) sums[r.currency] = (sums[r.currency] || []).concat(Number(r.balance));
    const money = Object.keys(sums).sort((a, b) => sums[b].length - sums[a].length || (a < b ? -1 : 1))
      .map((c) => new Intl.NumberFormat('en-US', { style: 'currency', currency: c }).format(sums[c].reduce((x, y) => x + y, 0)));
    assert.equal(question, 'Create ' + due.length + ' drafts for ' + money.slice(0, -1).join(', ') + ' and ' + money.at(-1) + '?');
    assert.match(question, /^Create \d+ drafts for \$[\d,]+\.\d\d, /, 'dollars (most invoices) first');
    assert.match(await page.textContent('#confirm'), /Nothing is sent/);
    assert.equal(api.drafts().length, 0, 'nothing is drafted before the confirmation');
    await page.screenshot({ path: path.join(ARTIFACTS, 'confirm.png') });
    const sawProgress = page.waitForSelector('#progress-label:has-text("Drafting")');
    await page.click('#confirm-yes');
    await sawProgress;
    await page.waitForFunction(() => /^Finished/.test(document.getElementById('progress-label').textContent) && !document.querySelector('#banner').classList.contains('hidden'), null, { timeout: 60000 });
    assert.equal(api.drafts().length, due.length, 'one draft per invoice due');

    const shown = await page.$$eval('.ic-row', (els) => els.map((e) => ({
      id: e.getAttribute('data-invoice-id'),
      stage: e.querySelector('.ic-badge') ? e.querySelector('.ic-badge').getAttribute('data-stage') : null,
      text: e.textContent,
      link: (e.querySelector('a') || { href: '' }).href,
    })));
    assert.equal(shown.length, 24, 'one line per invoice');
    const expected = { 'INV-1001': '7', 'INV-1003': '21', 'INV-1007': '42', 'INV-1009': '' };
    for (const [id, stage] of Object.entries(expected)) assert.equal(shown.find((l) => l.id === id).stage, stage, id + ' shows stage ' + (stage || 'none'));
    const drafted = shown.filter((l) => /Draft created/.test(l.text));
    assert.equal(drafted.length, due.length);
    for (const l of drafted) {
      assert.match(l.link, /./, l.id + ' links to its draft');
      if (l.id === 'INV-1023') continue;
      assert.equal(String(sheet.value(sheet.rowOf(1, l.id), 12)), l.stage, l.id + ': the sheet and the sidebar agree on the stage');
    }
    assert.match(await page.textContent('#unwritten'), /^1 row was not updated in the sheet:INV-1023 moved or was deleted: its draft exists, the sheet was not updated — Generate again to write it back\.$/);
    assert.match(await page.textContent('#banner'), /drafts created/);
    assert.match(await page.textContent('#totals'), /USD/);
    assert.match(await page.textContent('.ic-fix-group:has(.ic-row[data-invoice-id="INV-1020"]) .ic-fix'), /Correct the email address in the "client_email" column/, 'an error row sits under its fix');
    assert.deepEqual(pageErrors, []);
    assert.ok(['getSidebarState', 'beginRun', 'runChunk', 'saveSettings'].every((f) => served.includes(f) || f === 'saveSettings'));
    await page.$eval('#app', (e) => { e.scrollTop = 0; });
    await page.screenshot({ path: path.join(ARTIFACTS, 'sidebar.png') });
    console.log('# screenshots: ' + ['sidebar.png', 'preview.png', 'confirm.png'].map((f) => path.join(ARTIFACTS, f)).join(', '));
  } finally {
    if (browser) await browser.close();
    await api.stop();
  }
});

test('the collections view: aging chart, fixes by group, pausing a client, drafts waiting unsent, a statement', async (t) => {
  const api = await startApi({ env: { GROUP_BY_CLIENT: 'true' } });
  let browser;
  try {
    if (!needRoute(t, api, 'drafts')) return;
    const tz = 'America/New_York';
    const ss = collectionsSpreadsheet(tz, 'browser-collections');
    const sheet = ss.getSheetByName('Invoices');
    const settings = { IC_API_URL: api.origin, IC_API_KEY: api.apiKey };
    // On Friday the 13th two stage 7 drafts are made (by the daily run, say), and nobody sends them.
    const first = driveRun(createAddonEnv({ spreadsheet: ss, now: COLLECTIONS_FIRST_DAY + 'T15:00:00Z', network: api.network, userProperties: settings }).call, 'generate');
    const unsentUrls = first.rows.filter((r) => r.draft_url).map((r) => r.draft_url);
    assert.equal(unsentUrls.length, 2);
    const { env, call, context } = createAddonEnv({ spreadsheet: ss, now: NOW, network: api.network, userProperties: settings });
    context.showSidebar();
    browser = await launch(t);
    if (!browser) return;
    const { page, pageErrors } = await openSidebar(browser, env.ui.sidebars[0], call);
    const shots = [];

    await page.click('#preview');
    await page.waitForSelector('#banner:not(.hidden)');
    // Aging: a bar per currency, dollars (most invoices) first, each stacked by days past due.
    const blocks = await page.$$eval('.ic-aging-currency', (els) => els.map((e) => ({
      currency: e.getAttribute('data-currency'),
      head: e.querySelector('.ic-aging-head').textContent,
      segments: [...e.querySelectorAll('svg rect[data-bucket]')].map((r) => [r.getAttribute('data-bucket'), Number(r.getAttribute('width'))]),
      legend: [...e.querySelectorAll('.ic-aging-cell')].map((c) => c.textContent),
      top: [...e.querySelectorAll('.ic-top-name')].map((n) => n.textContent),
    })));
    assert.deepEqual(blocks.map((b) => b.currency), ['USD', 'EUR', 'GBP']);
    const usd = blocks[0];
    assert.match(usd.head, /^USD \$[\d,.]+ openDSO [\d.]+ days$/);
    assert.deepEqual(usd.segments.map((s) => s[0]), ['current', '1-30', '31-60', '61-90', '90+'], 'every bucket holds dollars');
    assert.ok(Math.abs(usd.segments.reduce((sum, s) => sum + s[1], 0) - 100) < 0.01, 'the segments fill the bar');
    // By hand: not due A-601 1,800; 1–30 N-101, H-102, L-201..203, C-401, Q-501 = 7,746.25;
    // 31–60 B-301 2,750; 61–90 B-302 640; 90+ P-701 950.
    assert.deepEqual(usd.legend, ['Not due$1.8K', '1–30$7.7K', '31–60$2.8K', '61–90$640.00', '90+$950.00']);
    assert.deepEqual(blocks[1].segments, [['31-60', 100]], 'all the euros are 31–60 days late');
    assert.equal(usd.top[0], 'Lumen Studio');
    assert.equal(await page.getAttribute('.ic-aging-currency[data-currency="USD"] svg', 'role'), 'img');
    shots.push(await shoot(page, '#aging', 'sidebar-aging.png'));

    // Fixes first, grouped; each line selects the cell it is about.
    const groups = await page.$$eval('.ic-fix-group', (els) => els.map((g) => [g.querySelector('.ic-fix').textContent,
      [...g.querySelectorAll('.ic-row')].map((r) => r.getAttribute('data-invoice-id'))]));
    assert.deepEqual(groups, [
      ['Fix Add the amount in the "amount" column.', ['E-1001', 'E-1002']],
      ['Fix Correct the email address in the "client_email" column: name@example.com, several separated by ;.', ['E-1003']],
      ['Fix D-1100 appears on rows 18 and 19: keep one, or give each invoice its own ID.', ['D-1100', 'D-1100']],
    ]);
    const kinds = await page.$$eval('#rows .ic-row', (els) => els.map((e) => e.getAttribute('data-kind')));
    assert.deepEqual(kinds.slice(0, 5), ['error', 'error', 'error', 'error', 'error']);
    assert.ok(kinds.slice(5).every((k) => k !== 'error'));
    await page.click('.ic-row[data-invoice-id="E-1002"] .ic-select');
    await page.waitForFunction(() => true);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual([ss.selection.getRow(), ss.selection.getColumn()], [sheet.rowOf(1, 'E-1002'), 4], 'the amount cell of E-1002 is selected');
    shots.push(await shoot(page, '#filters', 'sidebar-fixes.png'));

    // Pause Brightline Media from its line in "Most overdue": the form opens with it chosen.
    await page.click('.ic-aging-currency[data-currency="USD"] li:has-text("Brightline Media") .ic-top-pause');
    assert.equal(await page.$eval('#pause', (d) => d.open), true);
    assert.equal(await page.inputValue('#pause-client'), 'Brightline Media');
    await page.fill('#pause-until', '2026-12-15');
    await page.click('#pause-go');
    await page.waitForFunction(() => /^Paused Brightline Media until 2026-12-15 \(2 invoices\)\./.test(document.getElementById('banner').textContent), null, { timeout: 20000 });
    for (const id of ['B-301', 'B-302']) {
      assert.match(await page.textContent('.ic-row[data-invoice-id="' + id + '"] .ic-outcome'), /^Paused · until 15 Dec$/);
    }
    assert.match(await page.textContent('.ic-row[data-invoice-id="C-401"] .ic-outcome'), /^Promised · the client promised to pay by 30 Nov$/);

    await page.click('#generate');
    await page.waitForSelector('#confirm:not(.hidden)', { timeout: 20000 });
    await page.click('#confirm-yes');
    await page.waitForFunction(() => /^Finished/.test(document.getElementById('progress-label').textContent) && /created/.test(document.getElementById('banner').textContent), null, { timeout: 60000 });

    assert.deepEqual(await page.$$eval('.ic-aging-currency', (els) => els.map((e) => e.getAttribute('data-currency'))), ['USD', 'EUR', 'GBP'],
      'Generate keeps the aging of its preview (/v1/drafts answers none)');
    // Waiting in Drafts, at the top: the two drafts of the 13th, 11 days old, linked.
    const unsent = await page.$$eval('#unsent li', (els) => els.map((e) => [e.textContent, e.querySelector('a').href]));
    assert.deepEqual(unsent.map((u) => u[0]), ['N-101 · Northwind Traders · 11 days · Open draft ↗', 'H-102 · Harbor Dental · 11 days · Open draft ↗']);
    assert.deepEqual(unsent.map((u) => u[1]), unsentUrls);
    assert.match(await page.textContent('#unsent'), /^Waiting in Drafts for 2\+ days/);
    const top = await page.$$eval('#app > *:not(.hidden)', (els) => els.map((e) => e.id || e.className));
    assert.ok(top.indexOf('unsent') < top.indexOf('summary') && top.indexOf('unsent') < top.indexOf('rows'), 'listed above the summary and the rows: ' + top);
    // One statement for Lumen Studio's three invoices, one draft counted.
    const statement = await page.$eval('.ic-statement', (e) => ({
      text: e.querySelector('.ic-line1').textContent + ' | ' + e.querySelector('.ic-client').textContent + ' | ' + e.querySelector('.ic-outcome').textContent,
      rows: [...e.querySelectorAll('.ic-row')].map((r) => r.getAttribute('data-invoice-id')),
    }));
    assert.deepEqual(statement.rows, ['L-201', 'L-202', 'L-203']);
    assert.equal(statement.text, 'StatementStage 143 invoices | Lumen Studio · $4,460.00 | Draft created · one draft for 3 invoices · Open draft ↗');
    assert.equal(await page.$$eval('.ic-statement', (els) => els.length), 1);
    const made = api.drafts().length - unsentUrls.length;
    assert.equal(made, 3, 'Lumen\'s statement, Orion and Kestrel; Brightline is paused');
    assert.match(await page.textContent('#banner'), /^3 drafts created for 5 invoices and noted in the sheet\./, 'counted by draft, not by row');
    assert.deepEqual(pageErrors, []);
    shots.push(await shoot(page, '', 'sidebar-unsent.png'));
    shots.push(await shoot(page, '.ic-statement', 'sidebar-statement.png'));
    console.log('# screenshots: ' + shots.join(', '));
  } finally {
    if (browser) await browser.close();
    await api.stop();
  }
});
