'use strict';
/**
 * The time budget of /v1/drafts, end to end: the real API creating Gmail
 * drafts against the repository's Gmail emulator, paced to Gmail's 25 drafts/s
 * per mailbox. A 200-row chunk would take ~8 s of drafting alone; with a 2 s
 * budget each call returns in time with the rest `remaining`, and the loop the
 * sidebar runs finishes the sheet with every invoice drafted exactly once.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const { createAddonEnv } = require('./support/gas_fakes');
const { allDueSpreadsheet } = require('./support/sheets');
const { startApi, startGmailEmulator, needRoute } = require('./support/api_server');
const { driveRun } = require('./support/drive');

const NOW = '2026-11-24T12:00:00Z';
const BUDGET_S = 2;
const TOKEN = 'ya29.token-of-owner';

test('a 200-row chunk whose drafts outlast the budget returns in time, and the loop drafts every invoice once', async (t) => {
  const gmail = await startGmailEmulator([TOKEN]);
  let api;
  try {
    api = await startApi({ env: {
      DRAFTS_BACKEND: 'gmail', GMAIL_API_ENDPOINT: gmail.url, DRAFTS_TIME_BUDGET_SECONDS: String(BUDGET_S),
    } });
    if (!needRoute(t, api, 'budget')) return;
    const ss = allDueSpreadsheet(200, 'UTC', '2026-11-24', 'budget-200');
    const sheet = ss.getSheetByName('Invoices');
    const { env, call } = createAddonEnv({ spreadsheet: ss, now: NOW, userProperties: { IC_API_URL: api.origin, IC_API_KEY: api.apiKey }, network: api.network });
    const { passes, rows } = driveRun(call, 'generate');
    const calls = env.fetches.filter((f) => f.url.endsWith('/v1/drafts'));
    console.log('# ' + calls.length + ' calls, ms: ' + calls.map((c) => c.ms).join(', ') + '; remaining: ' + passes.map((p) => p.remaining).join(', '));
    assert.ok(passes.length >= 3, 'the chunk took several calls');
    assert.ok(passes[0].remaining > 0 && passes[0].remaining < 200, 'the first call stopped part-way');
    assert.equal(passes.at(-1).remaining, 0);
    for (const c of calls) assert.ok(c.ms < (BUDGET_S + 3) * 1000, 'each call returns soon after the budget: ' + c.ms + ' ms');
    assert.equal(rows.length, 200);
    assert.ok(rows.every((r) => r.draft_url), 'every invoice ends up with its draft');
    const state = await gmail.state();
    assert.equal(state.drafts, 200, 'one draft per invoice in the mailbox — none twice');
    assert.equal(new Set(rows.map((r) => r.draft_url)).size, 200);
    for (let row = 2; row <= 201; row++) {
      assert.equal(sheet.value(row, 7), 7, 'row ' + row + ': last_stage_sent');
      assert.equal(sheet._peek(row, 9).links.length, 1, 'row ' + row + ': status linked to its draft');
    }
  } finally {
    if (api) await api.stop();
    await gmail.stop();
  }
});
