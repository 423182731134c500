/**
 * One long stream of raw edits committed to an EditStore, timed per edit and per phase (validate, log write,
 * fsync, Woodbury step, snapshot), with the GC time that fell inside each commit and the heap after every
 * `sampleEvery` edits: what `bench:edits` needs to tell whether (and where) the per-edit cost grows with
 * history.
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import type { LayerEdit, LayerSpec } from '../../src/edits/edit-state.ts';
import type { CommitPhases, EditStore } from '../../src/edits/edit-store.ts';

export interface CommitSample extends CommitPhases {
  /** Wall time of the whole `commit` call. */
  ms: number;
  /** GC pauses that started during the commit (perf_hooks 'gc' entries). */
  gcMs: number;
  /** Time this thread ran on a CPU during the commit, and waited for one (runnable, not scheduled). */
  cpuMs: number;
  waitMs: number;
}

export interface MemorySample {
  edit: number;
  heapUsedMiB: number;
  arrayBuffersMiB: number;
  rssMiB: number;
  /** Total GC pause time so far. */
  gcTotalMs: number;
  /** The machine's 1-minute load average then. */
  load1: number;
}

/**
 * This thread's [ns on a CPU, ns runnable but waiting] from Linux's /proc/thread-self/schedstat: on a shared
 * machine a commit's wall time is its CPU time plus the time the scheduler gave the core to other jobs, and
 * only the first can depend on the edit history. Zeros where the file does not exist.
 */
function schedNs(): [number, number] {
  try {
    const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ');
    return [Number(run), Number(wait)];
  } catch {
    return [0, 0];
  }
}

/** The benches' LCG in [−0.5, 0.5). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5);
}

/** Random raw edits, u = 1 key per layer (non-negative keys, like post-GELU activations). */
export function rawEdits(specs: readonly LayerSpec[], seed = 5): () => LayerEdit[] {
  const r = rng(seed);
  return () => specs.map((s) => ({ layer: s.name, u: 1, keys: Float64Array.from({ length: s.dK }, () => Math.abs(r())), values: Float64Array.from({ length: s.dV }, r) }));
}

export async function commitStream(
  store: EditStore,
  n: number,
  next: () => LayerEdit[],
  sampleEvery = 500,
): Promise<{ commits: CommitSample[]; memory: MemorySample[]; seconds: number }> {
  const gc: { start: number; end: number }[] = [];
  let gcTotalMs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.push({ start: e.startTime, end: e.startTime + e.duration });
      gcTotalMs += e.duration;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const spans: { start: number; end: number }[] = [];
  const commits: CommitSample[] = [];
  const memory: MemorySample[] = [];
  const mem = (edit: number): MemorySample => {
    const m = process.memoryUsage();
    return { edit, heapUsedMiB: m.heapUsed / 2 ** 20, arrayBuffersMiB: m.arrayBuffers / 2 ** 20, rssMiB: m.rss / 2 ** 20, gcTotalMs, load1: loadavg()[0]! };
  };
  const t0 = performance.now();
  for (let i = 1; i <= n; i++) {
    const parts = next();
    const [run0, wait0] = schedNs();
    const start = performance.now();
    store.commit(parts, { source: 'raw' });
    const end = performance.now();
    const [run1, wait1] = schedNs();
    spans.push({ start, end });
    commits.push({ ms: end - start, gcMs: 0, cpuMs: (run1 - run0) / 1e6, waitMs: (wait1 - wait0) / 1e6, ...store.lastCommit });
    // Let the observer's callback run (it is queued, not called inside the synchronous loop).
    if (i % 50 === 0) await new Promise((res) => setImmediate(res));
    if (i % sampleEvery === 0 || i === 1) memory.push(mem(i));
  }
  const seconds = (performance.now() - t0) / 1000;
  await new Promise((res) => setImmediate(res));
  obs.disconnect();
  // Attribute each GC pause to the commit it started in (both lists are in time order).
  let j = 0;
  for (const g of gc) {
    while (j < spans.length && spans[j]!.end < g.start) j++;
    if (j < spans.length && spans[j]!.start <= g.start) commits[j]!.gcMs += g.end - g.start;
  }
  return { commits, memory, seconds };
}
