/**
 * Memory bandwidth this process gets, measured as a large memcpy (TypedArray.set over 256 MiB, far beyond
 * any cache): bytes read per second (the copy also writes as many; decode steps mostly read weights).
 * One thread: it is a yardstick for "weight bytes per token ÷ bandwidth", not the machine's peak.
 */
export function measureReadBandwidth(bytes = 256 * 1024 * 1024, repeats = 5): number {
  const src = new Float64Array(bytes / 8).fill(1);
  const dst = new Float64Array(bytes / 8);
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    dst.set(src);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return bytes / (times[0]! / 1000);
}
