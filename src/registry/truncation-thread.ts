/**
 * Dense truncation of a large layer takes seconds (low-rank.ts); on the event loop it would stall every other
 * request's decode steps for that long. Layers are therefore re-factored on one worker thread, started on
 * first use and referenced only while a job is out (an idle worker never keeps the process alive). The factors are copied into the message (the
 * sources' factors stay shared with running sequences); results come back as transferred buffers.
 */
import { Worker } from 'node:worker_threads';
import type { LayerFactors } from '../runtime/types.ts';
import type { Truncated } from './low-rank.ts';
import type { TruncationJob } from './truncation-worker.ts';

// The worker file next to this one, with this file's own extension (.ts under tsx, .js in the build).
const EXT = import.meta.url.slice(import.meta.url.lastIndexOf('.'));
const WORKER_URL = new URL(`./truncation-worker${EXT}`, import.meta.url);

/** Node 20 does not carry tsx's loader hooks into worker threads: under tsx the worker registers them first. */
function startWorker(): Worker {
  if (EXT !== '.ts') return new Worker(WORKER_URL);
  const api = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}); });`;
  return new Worker(boot, { eval: true });
}

let worker: Worker | undefined;
let nextJob = 0;
const pending = new Map<number, { resolve: (t: Truncated) => void; reject: (err: Error) => void }>();

function failAll(err: Error): void {
  for (const p of pending.values()) p.reject(err);
  pending.clear();
  worker = undefined;
}

function thread(): Worker {
  if (worker) return worker;
  const w = startWorker();
  w.on('message', ({ job, result, error }: { job: number; result?: Truncated; error?: string }) => {
    const p = pending.get(job);
    if (!p) return;
    pending.delete(job);
    // Referenced only while a job is out: an idle worker never keeps the process alive.
    if (pending.size === 0) w.unref();
    if (result) p.resolve(result);
    else p.reject(new Error(`truncation failed: ${error}`));
  });
  w.on('error', (err) => failAll(err));
  w.on('exit', (code) => failAll(new Error(`truncation worker exited with code ${code}`)));
  worker = w;
  return w;
}

/** truncateLayer(f, rank), computed on the worker thread. */
export function truncateOffThread(f: LayerFactors, rank: number): Promise<Truncated> {
  const job = nextJob++;
  const factors = { rank: f.rank, a: f.a.slice(), b: f.b.slice() };
  return new Promise<Truncated>((resolve, reject) => {
    pending.set(job, { resolve, reject });
    const message: TruncationJob = { job, rank, factors };
    const w = thread();
    w.ref();
    w.postMessage(message, [factors.a.buffer, factors.b.buffer]);
  });
}
