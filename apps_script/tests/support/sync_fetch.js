'use strict';
/**
 * One HTTP request, run as a child process so the UrlFetchApp fake can be
 * synchronous like the real one: reads {url, method, headers, body} as JSON
 * on stdin, prints {status, headers, body} (or {error}) as JSON on stdout.
 */
const http = require('node:http');
const https = require('node:https');

let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const req = JSON.parse(input);
  const url = new URL(req.url);
  const client = url.protocol === 'https:' ? https : http;
  const headers = Object.assign({}, req.headers);
  if (req.body !== undefined) headers['Content-Length'] = Buffer.byteLength(req.body);
  const r = client.request(url, { method: req.method.toUpperCase(), headers, timeout: 55000 }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => {
      process.stdout.write(JSON.stringify({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
  });
  r.on('timeout', () => r.destroy(new Error('timeout')));
  r.on('error', (err) => process.stdout.write(JSON.stringify({ error: err.code || err.message })));
  if (req.body !== undefined) r.write(req.body);
  r.end();
});
