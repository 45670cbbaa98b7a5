'use strict';
/**
 * Drives a run the way the sidebar's JavaScript does: beginRun once, then
 * runChunk for each chunk, each a separate "execution" (a separate call).
 */

/**
 * @param {(name: string, ...args: any[]) => any} call   From createAddonEnv.
 * @param {'preview'|'generate'} mode
 * @return {{run: any, chunks: any[], rows: any[], progress: number[]}}
 */
function driveRun(call, mode) {
  const run = call('beginRun', mode);
  const chunks = [];
  const progress = [];
  for (let i = 0; i < run.chunkCount; i++) {
    const chunk = call('runChunk', run, i);
    chunks.push(chunk);
    progress.push(Math.round(((i + 1) / run.chunkCount) * 100));
    if (chunk.stopped) break;
  }
  return { run, chunks, rows: chunks.flatMap((c) => c.rows), progress };
}

module.exports = { driveRun };
