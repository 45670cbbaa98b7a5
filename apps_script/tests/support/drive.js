'use strict';
/**
 * Drives a run the way the sidebar (SidebarView.html) does: beginRun once, then
 * runChunk for each chunk — again for the same chunk while the API says rows
 * are `remaining` — each call a separate execution.
 */

/**
 * @param {(name: string, ...args: any[]) => any} call   From createAddonEnv.
 * @param {'preview'|'generate'} mode
 * @param {{maxPasses?: number}} [options]
 * @return {{run: any, chunks: any[], passes: any[], rows: any[], unwritten: any[], progress: number[]}}
 */
function driveRun(call, mode, options) {
  const maxPasses = (options && options.maxPasses) || 30;
  const run = call('beginRun', mode);
  const chunks = [];
  const passes = [];
  const progress = [];
  for (let i = 0; i < run.chunkCount; i++) {
    let chunk;
    let rows = [];
    for (let pass = 1; ; pass++) {
      chunk = call('runChunk', run, i);
      passes.push(chunk);
      rows = mergePass(rows, chunk.rows);
      chunk.rows = rows;
      if (!chunk.remaining || chunk.stopped) break;
      if (pass >= maxPasses) throw new Error('chunk ' + i + ' still has ' + chunk.remaining + ' rows remaining after ' + pass + ' passes');
    }
    chunks.push(chunk);
    progress.push(Math.round(((i + 1) / run.chunkCount) * 100));
    if (chunk.stopped) break;
  }
  return {
    run, chunks, passes, progress,
    rows: chunks.flatMap((c) => c.rows),
    unwritten: passes.flatMap((c) => c.unwritten || []),
  };
}

/**
 * A chunk's rows after another pass, as the sidebar keeps them: each row as
 * the latest pass answered, except that a row drafted by an earlier pass keeps
 * its draft (the later pass sees it as already drafted today).
 */
function mergePass(previous, next) {
  const key = (r) => r.invoice_id || 'row ' + r.row;
  const earlier = new Map(previous.filter((r) => r.draft_url).map((r) => [key(r), r]));
  return next.map((r) => (!r.draft_url && earlier.has(key(r)) ? earlier.get(key(r)) : r));
}

module.exports = { driveRun, mergePass };
