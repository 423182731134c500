/**
 * One batched prefill: the newly admitted sequences' prompts in one `session.run`, then each sequence's
 * first token (and, when asked, its prompt logprobs). The sequences of an `n` > 1 request form a group with
 * one prompt and one adapter: the group is prefilled as one row, and every member's KV cache is a copy of
 * that row's (scheduler.ts packs it once per member), so the prompt is computed once for n completions.
 */
import type { Tensor } from 'onnxruntime-node';
import type { RowRef } from './kv-layout.ts';
import type { Engine, ForwardResult } from './engine.ts';
import { tokenLogprob, type TokenLogprob } from './logprobs.ts';
import type { Sequence } from './sequence.ts';

export interface PrefillOutcome {
  result: ForwardResult;
  /** Rows run (one per group), for step metrics. */
  rows: number;
  tokens: number;
  /** Per admitted sequence, in order: the row of `result.kv` holding its cache. */
  refs: RowRef[];
}

/** `factorsFor` builds the delta feeds of the rows actually run (the scheduler's own helper). */
export async function prefill(
  engine: Engine,
  admitted: readonly Sequence[],
  factorsFor: (rows: readonly Sequence[]) => Record<string, Tensor> | undefined,
): Promise<PrefillOutcome> {
  const leaders: Sequence[] = [];
  const rowOf: number[] = [];
  const groupRow = new Map<object, number>();
  for (const seq of admitted) {
    const known = seq.group ? groupRow.get(seq.group) : undefined;
    if (known !== undefined) {
      rowOf.push(known);
      continue;
    }
    if (seq.group) groupRow.set(seq.group, leaders.length);
    rowOf.push(leaders.length);
    leaders.push(seq);
  }
  // Only rows whose prompt logprobs are wanted need more than the last position's logits.
  const tail = Math.max(1, ...leaders.map((s) => (s.promptLogprobsTop !== undefined ? s.promptIds.length : 1)));
  const result = await engine.forward(engine.emptyKv(leaders.length), leaders.map((s) => s.promptIds), factorsFor(leaders), { tail });
  const prompts = leaders.map((s, row) =>
    s.promptLogprobsTop !== undefined ? promptLogprobs(result, row, s.promptIds, s.promptLogprobsTop, engine.vocabSize) : undefined,
  );
  admitted.forEach((seq, i) => {
    // Cancelled during the prefill run: it leaves now rather than sampling and joining the batch.
    if (seq.signal?.aborted) seq.finish('cancelled');
    else seq.prefilled(result.logits[rowOf[i]!]!, prompts[rowOf[i]!]);
  });
  return {
    result,
    rows: leaders.length,
    tokens: leaders.reduce((n, s) => n + s.promptIds.length, 0),
    refs: rowOf.map((row) => ({ from: result.kv, row })),
  };
}

/**
 * logprob of prompt token i given tokens < i, for i ≥ 1: the logits at the position of token i − 1.
 * Row `row` is left-padded: its token i sits at padded position width − len + i, i.e. at
 * width − len + i − (width − logitsWidth) in the returned logits.
 */
function promptLogprobs(result: ForwardResult, row: number, ids: readonly number[], top: number, vocab: number): (TokenLogprob | null)[] {
  const { allLogits, logitsWidth, width } = result;
  const first = width - ids.length - (width - logitsWidth);
  if (first < 0) throw new Error(`prefill computed ${logitsWidth} positions; the prompt needs ${ids.length}`);
  const out: (TokenLogprob | null)[] = [null];
  for (let i = 1; i < ids.length; i++) {
    const at = (row * logitsWidth + first + i - 1) * vocab;
    out.push(tokenLogprob(allLogits.subarray(at, at + vocab), ids[i]!, top));
  }
  return out;
}
