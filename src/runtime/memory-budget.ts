/**
 * Upper bounds, in bytes, of the host memory the serving loop holds besides the weights and the adapter
 * cache — what one tenant's requests can make the process allocate. Logged at start (main.ts) and
 * documented in the README; every figure is float32 (4 bytes).
 *
 *   KV cache      2 · L · B · H_kv · C · D · 4     (B = PATCHBAY_MAX_BATCH rows, C = context, every row at most C)
 *                 ×2 while a batch is re-packed (old and new cache live together for one step). Slot caches
 *                 (runtime/slot-kv.ts) hold at most B rows of C positions too (a slot never exceeds the
 *                 context); a prefill's rows plus the batch's are at most B, and a growing slot holds its old
 *                 and new buffers for one step: the same ×2 bound
 *   factors       Σ_layers B · (d_in + d_out) · R · 4   (R = PATCHBAY_MAX_COMBINED_RANK: every row is padded to
 *                 the batch's largest rank, and the cap bounds it), ×2: the running batch's feeds and a prefill's
 *   logits        B · V · 4 per step (only the last position is computed unless prompt logprobs are asked for;
 *                 then B · C · V · 4)
 *   in use        factors of adapters evicted from the cache while sequences still use them: each sequence
 *                 holds one reference to its binding (shared by every sequence using it, never copied), so at
 *                 most B + Q distinct bindings outlive the cache (Q = PATCHBAY_MAX_QUEUE), each at most the
 *                 factor bytes of rank R: Σ_layers (d_in + d_out) · R · 4
 */
export interface MemoryBudgetInput {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  contextLength: number;
  vocabSize: number;
  maxBatch: number;
  maxQueue: number;
  maxCombinedRank: number;
  /** d_in + d_out of every layer with a delta branch. */
  deltaLayerDims: readonly { dIn: number; dOut: number }[];
}

export interface MemoryBudget {
  kvCache: number;
  factors: number;
  logits: number;
  /** With prompt logprobs (all positions of a prefill). */
  promptLogits: number;
  evictedInUse: number;
  /** Everything above, with the prompt-logprob case. */
  total: number;
}

const F32 = 4;

export function memoryBudget(m: MemoryBudgetInput): MemoryBudget {
  const kvCache = 2 * (2 * m.numLayers * m.maxBatch * m.numKvHeads * m.contextLength * m.headDim * F32);
  const perRowRank = m.deltaLayerDims.reduce((n, l) => n + (l.dIn + l.dOut) * m.maxCombinedRank * F32, 0);
  const factors = 2 * m.maxBatch * perRowRank;
  const logits = m.maxBatch * m.vocabSize * F32;
  const promptLogits = m.maxBatch * m.contextLength * m.vocabSize * F32;
  const evictedInUse = (m.maxBatch + m.maxQueue) * perRowRank;
  return { kvCache, factors, logits, promptLogits, evictedInUse, total: kvCache + factors + promptLogits + evictedInUse };
}
