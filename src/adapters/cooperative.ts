/**
 * Long synchronous work (compiling a large adapter's factors, a dense SVD) on the event loop delays every
 * other request's next decode step by as long as it runs. `Slicer` lets such work hand the loop back
 * between units (modules, sweeps) once a slice of `sliceMs` has run, so the scheduler can issue steps in
 * between; small jobs finish inside one slice and never yield (no added latency).
 */
export const DEFAULT_SLICE_MS = 4;

export class Slicer {
  private started = performance.now();
  /** Times the work handed the loop back (for tests and spans). */
  yields = 0;

  constructor(private readonly sliceMs = DEFAULT_SLICE_MS) {}

  /** Resolves at once inside a slice; otherwise after one turn of the event loop (setImmediate: I/O and timers run first). */
  async pause(): Promise<void> {
    if (performance.now() - this.started < this.sliceMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.yields++;
    this.started = performance.now();
  }
}
