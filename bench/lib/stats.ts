export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A fixed-width table row, so runs can be pasted into BENCHMARKS.md as they are. */
export function row(cells: readonly (string | number)[], widths: readonly number[]): string {
  return cells
    .map((c, i) => {
      const s = typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toFixed(3)) : c;
      return i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!);
    })
    .join('  ');
}
