'use strict';
/**
 * Loads the sidebar's model — SidebarModel.html, whose <script> defines
 * SidebarModel, pure functions with no DOM — into a fresh vm context, as the
 * browser runs it.
 */
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const MODEL_HTML = path.resolve(__dirname, '..', '..', 'SidebarModel.html');

function loadSidebarModel() {
  const html = fs.readFileSync(MODEL_HTML, 'utf8');
  const block = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]).find((code) => /var SidebarModel =/.test(code));
  if (!block) throw new Error('SidebarModel.html has no SidebarModel block');
  // JSON round trip: results come out of the vm's realm as plain data, so deepEqual compares them.
  const model = vm.runInNewContext(block + '\nSidebarModel;', {}, { filename: 'SidebarModel.html' });
  return new Proxy(model, {
    get: (target, name) => (typeof target[name] === 'function'
      ? (...args) => { const out = target[name](...JSON.parse(JSON.stringify(args))); return out === undefined ? out : JSON.parse(JSON.stringify(out)); }
      : target[name]),
  });
}

module.exports = { loadSidebarModel };
