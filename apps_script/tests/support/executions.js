'use strict';
/**
 * Executions at the same time, as Apps Script runs them: each in a thread of
 * its own (a worker) with its own vm context, all against one spreadsheet and
 * one bound project kept in this thread. A worker reaches them synchronously,
 * as a script reaches Sheets: it posts a call and blocks on a shared flag
 * until the answer is back. The document lock lives in shared memory, so
 * waitLock really waits for another thread to release it.
 */
const path = require('node:path');
const { Worker, MessageChannel } = require('node:worker_threads');
const { FakeSheet, FakeRange, FakeSpreadsheet, FakeProject, FakeRichTextValue } = require('./gas_fakes');

const isDate = (v) => Object.prototype.toString.call(v) === '[object Date]';

/** This thread's side: answers one worker's calls on the spreadsheet and project. */
function serve(port, flag, roots) {
  const handles = new Map(Object.entries(roots).map(([k, v]) => [Number(k), v]));
  const ids = new Map([...handles].map(([k, v]) => [v, k]));
  let next = 100;
  const encode = (v) => {
    if (v instanceof FakeSheet || v instanceof FakeRange || v instanceof FakeSpreadsheet || v instanceof FakeProject) {
      if (!ids.has(v)) { ids.set(v, ++next); handles.set(next, v); }
      return { __h: ids.get(v) };
    }
    if (v instanceof FakeRichTextValue) return { __rich: { text: v._text, links: v._links } };
    if (Array.isArray(v)) return v.map(encode);
    if (v && typeof v === 'object' && !isDate(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encode(x)]));
    return v;
  };
  const decode = (v) => {
    if (Array.isArray(v)) return v.map(decode);
    if (v && typeof v === 'object' && !isDate(v)) {
      if (v.__h) return handles.get(v.__h);
      if (v.__rich) return new FakeRichTextValue(v.__rich.text, v.__rich.links);
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x)]));
    }
    return v;
  };
  port.on('message', (m) => {
    let reply;
    try {
      const target = handles.get(m.h);
      reply = { value: encode(target[m.method](...decode(m.args))) };
    } catch (err) {
      reply = { error: String(err && err.message || err) };
    }
    port.postMessage(reply);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  });
}

/**
 * Runs scripts in workers at once; resolves with each one's result.
 * @param {FakeSpreadsheet} spreadsheet
 * @param {{user: string, userProperties?: Object, now?: string, network?: Object, job: string, args?: any[]}[]} specs
 *   job: a function name in execution_worker.js (e.g. "generate").
 * @return {Promise<any[]>}
 */
function runAtOnce(spreadsheet, specs) {
  const barrier = new Int32Array(new SharedArrayBuffer(4));
  return Promise.all(specs.map((spec) => new Promise((resolve, reject) => {
    const { port1, port2 } = new MessageChannel();
    const flag = new Int32Array(new SharedArrayBuffer(4));
    serve(port1, flag, { 1: spreadsheet, 2: spreadsheet.project });
    const worker = new Worker(path.join(__dirname, 'execution_worker.js'), {
      workerData: { spec, port: port2, flag, lockCell: spreadsheet.project.lockCell, barrier, parties: specs.length },
      transferList: [port2],
    });
    worker.once('message', (m) => { port1.close(); if (m.error) reject(new Error(m.error)); else resolve(m.result); });
    worker.once('error', (err) => { port1.close(); reject(err); });
  })));
}

module.exports = { runAtOnce };
