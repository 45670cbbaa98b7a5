'use strict';
/**
 * A scripted HTTP server, run as a child process (the UrlFetchApp fake blocks
 * the test's own event loop). Used only for the answers the real API cannot
 * be made to give on demand: 413, 429, 500, non-JSON, gmail_unauthorized.
 * argv[2] is a JSON map "METHOD /path" -> {status, body}; prints the port.
 */
const http = require('node:http');

const routes = JSON.parse(process.argv[2]);
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const canned = routes[req.method + ' ' + req.url] || { status: 404, body: { error: { code: 'not_found', message: 'no such route' } } };
    let answer = canned.body;
    if (canned.echoRows && body) {
      const invoices = JSON.parse(body).invoices || [];
      answer = Object.assign({}, answer, { rows: invoices.map((inv) => Object.assign({ row: inv.row }, canned.echoRows)) });
    }
    res.writeHead(canned.status, { 'Content-Type': typeof answer === 'string' ? 'text/html' : 'application/json' });
    res.end(typeof answer === 'string' ? answer : JSON.stringify(answer));
  });
});
server.listen(0, '127.0.0.1', () => { process.stdout.write(String(server.address().port) + '\n'); });
