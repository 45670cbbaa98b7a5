'use strict';
/**
 * The sidebar in real headless Chromium. The page is the HTML the add-on's
 * showSidebar() produces; its google.script.run is a shim that calls the same
 * Code.js functions in Node (through playwright's exposeFunction), and those
 * call the real API. Saves tests/artifacts/sidebar.png at the repository root.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createAddonEnv } = require('./support/gas_fakes');
const { exampleSpreadsheet } = require('./support/sheets');
const { startApi, needRoute, REPO_ROOT } = require('./support/api_server');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACT = path.join(REPO_ROOT, 'tests', 'artifacts', 'sidebar.png');
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

test('the sidebar shows each invoice\'s stage, generates today\'s drafts with progress, and links each draft', async (t) => {
  if (!fs.existsSync(CHROMIUM)) {
    const why = 'SKIPPED: no Chromium at ' + CHROMIUM + ' (install Debian "chromium" or set CHROMIUM_PATH) — the browser test did NOT run.';
    console.warn('\n' + '*'.repeat(100) + '\n*** ' + why + '\n' + '*'.repeat(100) + '\n');
    t.skip(why);
    return;
  }
  const playwright = loadPlaywright();
  assert.ok(playwright, 'playwright-core is a devDependency; run npm ci');
  const api = await startApi();
  let browser;
  try {
    if (!needRoute(t, api, 'plan')) return;
    const ss = exampleSpreadsheet('America/New_York', { id: 'browser-sheet' });
    const { env, call, context } = createAddonEnv({ spreadsheet: ss, now: NOW, userProperties: { IC_API_URL: api.url, IC_API_KEY: api.apiKey } });
    context.showSidebar();
    const sidebar = env.ui.sidebars[0];
    assert.equal(sidebar.getWidth(), 300);
    const served = [];

    browser = await playwright.chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: sidebar.getWidth(), height: 1180 }, deviceScaleFactor: 2 });
    const pageErrors = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => { if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) pageErrors.push('console: ' + msg.text()); });
    // Offline: the add-ons CSS on gstatic cannot load; the page must look right without it.
    await page.route('https://**/*', (route) => route.abort());
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

    // A wrong key is explained in plain words in the sidebar, and nothing is listed.
    env.stores.user.set('IC_API_KEY', 'not-the-key');
    await page.click('#preview');
    await page.waitForSelector('#error:not(.hidden)');
    assert.match(await page.textContent('#error'), /^The server did not accept the API key\. Check the key in Invoice Collector › Settings\.$/);
    env.stores.user.set('IC_API_KEY', api.apiKey);

    await page.click('#preview');
    await page.waitForSelector('#banner:not(.hidden)');
    assert.equal(await page.isVisible('#error'), false, 'the error clears on the next run');
    const previewStages = await page.$$eval('.ic-row', (els) => els.map((e) => [e.getAttribute('data-invoice-id'), e.getAttribute('data-kind')]));
    assert.ok(previewStages.length >= 20);
    assert.ok(previewStages.some(([, kind]) => kind === 'draft'), 'preview shows invoices that will be drafted');

    const generate = api.routes.drafts;
    if (generate) {
      // Watch the progress bar while the run works.
      const sawProgress = page.waitForSelector('#progress:not(.hidden)');
      await page.click('#generate');
      await sawProgress;
      await page.waitForFunction(() => /^Finished/.test(document.getElementById('progress-label').textContent) && !document.querySelector('#banner').classList.contains('hidden'), null, { timeout: 60000 });
    } else {
      console.warn('\n*** SKIPPED the Generate click: the API has no /v1/drafts yet; the screenshot shows the preview. ***\n');
    }

    // Every invoice's stage as shown equals the API's decision for it.
    const shown = await page.$$eval('.ic-row', (els) => els.map((e) => ({
      row: Number(e.getAttribute('data-row')),
      id: e.getAttribute('data-invoice-id'),
      stage: e.querySelector('.ic-badge').getAttribute('data-stage'),
      text: e.textContent,
      link: (e.querySelector('a') || { href: '' }).href,
    })));
    const fromApi = generate ? call('runChunk', call('beginRun', 'preview'), 0).rows : null;
    const plan = env.fetches.filter((f) => f.url.endsWith(generate ? '/v1/drafts' : '/v1/plan'));
    assert.ok(plan.length >= 1);
    const sheet = ss.getSheetByName('Invoices');
    assert.equal(shown.length, sheet.getLastRow() - 1, 'one line per invoice');
    for (const line of shown) assert.ok(line.id && line.id.startsWith('INV-'), 'line shows the invoice id');
    const expected = { 'INV-1001': '7', 'INV-1003': '21', 'INV-1007': '42', 'INV-1009': '' };
    for (const [id, stage] of Object.entries(expected)) {
      assert.equal(shown.find((l) => l.id === id).stage, stage, id + ' shows stage ' + (stage || 'none'));
    }
    if (generate) {
      const drafted = shown.filter((l) => /Draft created/.test(l.text));
      assert.ok(drafted.length >= 5, 'several drafts created');
      for (const l of drafted) {
        assert.match(l.link, /./, l.id + ' links to its draft');
        const written = sheet.value(l.row, 12);
        assert.equal(String(written), l.stage, l.id + ': the sheet and the sidebar agree on the stage');
      }
      // After the run, a preview agrees: everything drafted is now "already drafted today".
      for (const l of drafted) assert.equal(fromApi.find((r) => r.row === l.row).reason, 'already_drafted_today');
      assert.match(await page.textContent('#banner'), /drafts? created/);
    }
    assert.match(await page.textContent('#totals'), /USD/);
    assert.match(await page.textContent('.ic-row[data-invoice-id="INV-1020"]'), /email/);
    assert.deepEqual(pageErrors, []);
    assert.ok(served.includes('getSidebarState') && served.includes('runChunk'));

    fs.mkdirSync(path.dirname(ARTIFACT), { recursive: true });
    await page.screenshot({ path: ARTIFACT, fullPage: false });
    console.log('# screenshot: ' + ARTIFACT);
    if (!generate) t.todo('Generate click not exercised: /v1/drafts missing');
  } finally {
    if (browser) await browser.close();
    await api.stop();
  }
});
