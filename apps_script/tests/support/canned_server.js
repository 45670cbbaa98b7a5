'use strict';
/**
 * A scripted HTTP server, run as a child process (the UrlFetchApp fake blocks
 * the test's own event loop). Used only for the answers the real API cannot
 * be made to give on demand: 413, 429, 500, non-JSON, gmail_unauthorized, a
 * time budget running out.
 *
 * argv[2] is a JSON map "METHOD /path" -> an answer or a list of answers (one
 * per request, the last repeating). An answer is {status, body}; with
 * `echoRows`, body.rows gets one row per invoice sent (echoRows merged in, and
 * for `draftFirst` rows: action draft with ids and write-back, the others
 * skip/time_budget). Prints the port, then one JSON line per request
 * ({method, url, headers, body}) so tests can see what was sent.
 */
const http = require('node:http');

const routes = JSON.parse(process.argv[2]);
const seen = {};
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const key = req.method + ' ' + req.url;
    const script = routes[key];
    const n = seen[key] = (seen[key] || 0) + 1;
    const canned = Array.isArray(script) ? script[Math.min(n, script.length) - 1] : script
      || { status: 404, body: { error: { code: 'not_found', message: 'no such route' } } };
    process.stdout.write(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body ? JSON.parse(body) : null }) + '\n');
    let answer = canned.body;
    if (canned.echoRows && body) {
      const invoices = JSON.parse(body).invoices || [];
      answer = Object.assign({}, answer, { rows: invoices.map((inv, i) => rowFor(inv, i, canned)) });
    }
    res.writeHead(canned.status, { 'Content-Type': typeof answer === 'string' ? 'text/html' : 'application/json' });
    res.end(typeof answer === 'string' ? answer : JSON.stringify(answer));
  });
});

/** One answer row for an invoice sent. */
function rowFor(inv, i, canned) {
  const id = inv.invoice_id || inv['Invoice ID'] || '';
  const row = Object.assign({ row: inv.row, invoice_id: id }, canned.echoRows);
  if (canned.draftFirst === undefined) return row;
  if (i < canned.draftFirst) {
    return Object.assign(row, {
      action: 'draft', reason: 'drafted', stage: 7, days_overdue: 8, draft_id: 'd-' + id,
      draft_url: 'https://mail.google.com/mail/#drafts?compose=d-' + id,
      writeback: { last_stage_sent: 7, last_sent_at: canned.today, reminder_status: 'Drafted stage 7 on ' + canned.today },
    });
  }
  return Object.assign(row, { action: 'skip', reason: 'time_budget', retryable: true, stage: 7, days_overdue: 8 });
}

server.listen(0, '127.0.0.1', () => { process.stdout.write(String(server.address().port) + '\n'); });
