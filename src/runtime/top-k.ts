/**
 * Partial selection over a logit vector: the k largest entries without sorting the whole vocabulary.
 * A real model's vocabulary is 32 k–150 k entries and a full sort per generated token (O(V log V)) costs
 * milliseconds; a bounded min-heap is O(V log k) and, since most entries lose against the heap's minimum
 * at the first comparison, close to one pass over V.
 */

/** Does (va, a) rank before (vb, b)? Larger value first; ties go to the lower id (a stable order). */
const before = (va: number, a: number, vb: number, b: number) => va > vb || (va === vb && a < b);

/**
 * Ids of the k largest `values`, in descending order (ties: lower id first). NaN entries never win.
 * k ≥ values.length returns every id, sorted.
 */
export function topKIndices(values: ArrayLike<number>, k: number): Int32Array {
  const n = values.length;
  k = Math.max(0, Math.min(k, n));
  if (k === 0) return new Int32Array(0);
  // heap[0] is the worst of the kept entries: a min-heap under `before`.
  const heap = new Int32Array(k);
  let size = 0;
  const worse = (i: number, j: number) => before(values[heap[j]!]!, heap[j]!, values[heap[i]!]!, heap[i]!);
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && worse(l, m)) m = l;
      if (r < size && worse(r, m)) m = r;
      if (m === i) return;
      const t = heap[i]!;
      heap[i] = heap[m]!;
      heap[m] = t;
      i = m;
    }
  };
  const siftUp = (i: number) => {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!worse(i, p)) return;
      const t = heap[i]!;
      heap[i] = heap[p]!;
      heap[p] = t;
      i = p;
    }
  };
  for (let id = 0; id < n; id++) {
    const v = values[id]!;
    if (Number.isNaN(v)) continue;
    if (size < k) {
      heap[size++] = id;
      siftUp(size - 1);
    } else if (before(v, id, values[heap[0]!]!, heap[0]!)) {
      heap[0] = id;
      siftDown(0);
    }
  }
  const out = Array.from(heap.subarray(0, size));
  out.sort((a, b) => (before(values[a]!, a, values[b]!, b) ? -1 : 1));
  return Int32Array.from(out);
}

/**
 * Yields ids in descending order of `values` (ties: lower id first), lazily: a binary max-heap over all
 * ids is built in O(V), then each id costs O(log V). Top-p sampling pops only until the kept mass reaches
 * p, which is usually a handful of tokens.
 */
export function* descending(values: ArrayLike<number>): Generator<number> {
  const n = values.length;
  const heap = new Int32Array(n);
  let size = 0;
  for (let id = 0; id < n; id++) if (!Number.isNaN(values[id]!)) heap[size++] = id;
  const better = (i: number, j: number) => before(values[heap[i]!]!, heap[i]!, values[heap[j]!]!, heap[j]!);
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && better(l, m)) m = l;
      if (r < size && better(r, m)) m = r;
      if (m === i) return;
      const t = heap[i]!;
      heap[i] = heap[m]!;
      heap[m] = t;
      i = m;
    }
  };
  for (let i = (size >> 1) - 1; i >= 0; i--) siftDown(i);
  while (size > 0) {
    const top = heap[0]!;
    heap[0] = heap[--size]!;
    siftDown(0);
    yield top;
  }
}
