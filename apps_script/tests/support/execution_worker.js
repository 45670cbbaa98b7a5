'use strict';
/**
 * One execution in a thread of its own (see executions.js): the add-on loaded
 * into a vm context whose spreadsheet and project are proxies of the ones in
 * the main thread.
 */
const { workerData, parentPort, receiveMessageOnPort } = require('node:worker_threads');
const { createAddonEnv, FakeRichTextValue } = require('./gas_fakes');
const { driveRun } = require('./drive');

const { spec, port, flag, lockCell, barrier, parties } = workerData;
const isDate = (v) => Object.prototype.toString.call(v) === '[object Date]';
const HANDLE = Symbol('handle');

function encode(v) {
  if (v && v[HANDLE]) return { __h: v[HANDLE] };
  if (v instanceof FakeRichTextValue) return { __rich: { text: v._text, links: v._links } };
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === 'object' && !isDate(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encode(x)]));
  return v;
}
function decode(v) {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === 'object' && !isDate(v)) {
    if (v.__h) return remote(v.__h);
    if (v.__rich) return new FakeRichTextValue(v.__rich.text, v.__rich.links);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x)]));
  }
  return v;
}
const pause = new Int32Array(new SharedArrayBuffer(4));
/**
 * A synchronous call into the main thread, the way a script calls Sheets (and
 * as slowly, with spec.sheetsLatencyMs: tens of ms a call in Apps Script).
 */
function rpc(h, method, args) {
  if (spec.sheetsLatencyMs) Atomics.wait(pause, 0, 0, spec.sheetsLatencyMs);
  Atomics.store(flag, 0, 0);
  port.postMessage({ h, method, args: encode(args) });
  Atomics.wait(flag, 0, 0);
  let m;
  while (!(m = receiveMessageOnPort(port))) Atomics.wait(flag, 0, 1, 5);
  if (m.message.error) throw new Error(m.message.error);
  return decode(m.message.value);
}
const proxies = new Map();
function remote(h) {
  if (!proxies.has(h)) {
    proxies.set(h, new Proxy({}, {
      get: (_, prop) => {
        if (prop === HANDLE) return h;
        if (typeof prop === 'symbol' || prop === 'then') return undefined;
        return (...args) => rpc(h, prop, args);
      },
    }));
  }
  return proxies.get(h);
}

/** Every execution waits here once its API call is answered, so all write at the same moment. */
function meet() {
  Atomics.add(barrier, 0, 1);
  Atomics.notify(barrier, 0);
  const deadline = Date.now() + 20000;
  while (Atomics.load(barrier, 0) < parties && Date.now() < deadline) Atomics.wait(barrier, 0, Atomics.load(barrier, 0), 50);
}

const JOBS = {
  /** "Generate today's drafts", as the sidebar drives it. */
  generate: (call) => driveRun(call, 'generate'),
  /** The menu's "Install daily trigger". */
  installDailyTrigger: (call) => call('installDailyTrigger'),
};

try {
  const { env, call } = createAddonEnv({
    spreadsheet: remote(1), project: remote(2), lockCell,
    user: spec.user, userProperties: spec.userProperties, now: spec.now, network: spec.network,
    duringFetch: spec.meetAfterFetch ? meet : undefined,
  });
  if (spec.meetBeforeStart) meet();
  const result = JOBS[spec.job](call);
  parentPort.postMessage({ result: JSON.parse(JSON.stringify({ result, lockWaits: env.lockWaits, fetches: env.fetches.map((f) => ({ url: f.url, headers: f.headers, ms: f.ms })) })) });
} catch (err) {
  parentPort.postMessage({ error: String(err && err.stack || err) });
}
