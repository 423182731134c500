/**
 * Worker-thread side of off-thread truncation (truncation-thread.ts): receives one layer's factors, answers
 * its rank-≤r re-factoring (low-rank.ts), the result's buffers transferred back, not copied.
 */
import { parentPort } from 'node:worker_threads';
import { truncateLayer } from './low-rank.ts';

export interface TruncationJob {
  job: number;
  rank: number;
  factors: { rank: number; a: Float32Array; b: Float32Array };
}

parentPort!.on('message', ({ job, rank, factors }: TruncationJob) => {
  try {
    const t = truncateLayer(factors, rank);
    parentPort!.postMessage({ job, result: t }, [t.factors.a.buffer as ArrayBuffer, t.factors.b.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ job, error: err instanceof Error ? err.message : String(err) });
  }
});
