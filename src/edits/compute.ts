/**
 * From `{prompt, target, subject?}` to the (keys, values) of one RLSEdit step, for every edited layer.
 *
 * Key positions (settings.keys):
 *   'subject'          the subject's last token only (METHODS.md; ROME/MEMIT's key): u = 1.
 *   'subject+targets'  that, plus every position that predicts a target token (the prompt's last token and
 *                      the target's tokens but the last, teacher-forced): u = 1 + |target tokens|.
 * An edit without `subject` gets the predicting positions only (u = |target tokens|) under either setting:
 * there is no subject to key on. Keys: the edited map's input at those positions (KeyProbe, current
 * weights), averaged over the contexts of settings.contexts: the bare-text prefixes CONTEXT_TEMPLATES and/or the
 * chat contexts (CHAT_CONTEXT_TEMPLATES rendered through the model's chat template, the prompt opening the
 * assistant's answer); the subject key is at the subject's last occurrence (in the answer). Values: δ_a ∈ R^{d_model} added to the
 * residual stream after the top edited block at key position a in every context, found by Adam on
 *     L(δ) = mean_contexts mean_targets −log p(target_j | context, prompt, target_<j) + wd·‖δ‖²/h̄²
 * with ‖δ‖ ≤ clamp·h̄·√u (h̄: mean norm of those hidden states), exact gradients from the model family's
 * UpperStack backward pass (gpt2-upper.ts, llama-upper.ts); then every edited layer l gets
 *     V_l[a] = k_{l,a}ᵀ·W_l + δ_a/n_layers          (METHODS.md: V_t = K_tᵀW_{t−1} + residual)
 * spreading the residual evenly over the n edited layers (ours; MEMIT recomputes between layers).
 */
import type { TextTokenizer } from '../runtime/tokenizer.ts';
import type { EditState, LayerEdit } from './edit-state.ts';
import { EditError } from './errors.ts';
import type { TargetToken, UpperStack } from './upper.ts';
import type { KeyProbe } from './probe.ts';
import { CHAT_CONTEXT_TEMPLATES, CONTEXT_TEMPLATES, type EditSettings } from './settings.ts';

export interface PromptEdit {
  prompt: string;
  target: string;
  subject?: string | undefined;
}

export interface ComputedEdit {
  parts: LayerEdit[];
  /** Key positions relative to the prompt's end (0 = the prompt's last token; subject first if given). */
  positions: number[];
  /** The value search: steps taken, mean target NLL before and after, ‖δ‖. */
  search: { steps: number; nllBefore: number; nllAfter: number; deltaNorm: number; hbar: number };
}

interface Context {
  ids: number[];
  /** Key positions in this context's tokens. */
  at: number[];
  targets: TargetToken[];
  hidden: Float32Array;
}

export class EditComputer {
  constructor(
    private readonly probe: KeyProbe,
    private readonly upper: UpperStack,
    private readonly tokenizer: TextTokenizer,
    private readonly settings: EditSettings,
    private readonly contextLength: number,
  ) {}

  /** Validates the request; throws EditError (nothing computed) when it cannot be an edit. */
  check(edit: PromptEdit): { targetIds: number[] } {
    return checkEdit(edit, this.tokenizer, this.settings);
  }

  /** `onSearch`: called once the probe runs are done and the value search (pure JS) begins. */
  async compute(edit: PromptEdit, state: EditState, onSearch?: () => void): Promise<ComputedEdit> {
    const { targetIds } = this.check(edit);
    const layers = this.probe.layers;
    const { contexts, keys, u } = await this.contexts(edit, targetIds, state);
    const anchors = await this.anchorKeys(edit, state);
    const n = anchors.count;
    onSearch?.();
    const search = this.searchDelta(contexts, u);
    const D = this.upper.dModel;
    const parts = layers.map((l) => {
      const rl = state.layer(l.name)!;
      // Rows 0..u−1: the edit's keys, V = kᵀW + δ/n_layers; rows u..u+n−1: anchors, V = kᵀW (keep).
      const k = new Float64Array((u + n) * l.dK);
      k.set(keys.get(l.name)!);
      k.set(anchors.keys.get(l.name)!, u * l.dK);
      const values = new Float64Array((u + n) * l.dV);
      for (let a = 0; a < u + n; a++) {
        const out = rl.apply(k.subarray(a * l.dK, (a + 1) * l.dK));
        for (let v = 0; v < l.dV; v++) values[a * l.dV + v] = out[v]! + (a < u ? search.delta[a * D + v]! / layers.length : 0);
      }
      return { layer: l.name, u: u + n, keys: k, values };
    });
    const { delta, ...rest } = search;
    const c0 = contexts[0]!;
    const end = c0.targets[0]!.pos;
    return { parts, positions: c0.at.map((p) => p - end), search: { ...rest, deltaNorm: norm(delta) } };
  }

  /**
   * The keys of an edit and ∂L/∂δ at δ = 0 without the weight-decay term, without searching or changing
   * anything (the reference test compares both with PyTorch).
   */
  async inspect(edit: PromptEdit, state: EditState): Promise<{ keys: Map<string, Float64Array>; grad: Float64Array; u: number }> {
    const { targetIds } = this.check(edit);
    const { contexts, keys, u } = await this.contexts(edit, targetIds, state);
    const D = this.upper.dModel;
    const grad = new Float64Array(u * D);
    for (const c of contexts) {
      const r = this.upper.lossAndGrad(c.hidden, c.ids.length, c.at, new Float64Array(u * D), c.targets, true);
      for (let i = 0; i < grad.length; i++) grad[i]! += r.grad[i]! / contexts.length;
    }
    return { keys, grad, u };
  }

  /**
   * Anchor keys: the edit's prompt with its subject replaced by each of settings.anchorSubjects, keyed at the
   * prompt's last token (the position predicting the target, the one every prompt of this form shares),
   * averaged over CONTEXT_TEMPLATES like the edit's own keys. None without a subject.
   */
  private async anchorKeys(edit: PromptEdit, state: EditState): Promise<{ count: number; keys: Map<string, Float64Array> }> {
    const layers = this.probe.layers;
    const subjects = edit.subject === undefined ? [] : (this.settings.anchorSubjects ?? []).filter((s) => s !== edit.subject);
    const keys = new Map(layers.map((l) => [l.name, new Float64Array(subjects.length * l.dK)]));
    if (subjects.length === 0) return { count: 0, keys };
    const weights = state.weights32();
    for (const [a, other] of subjects.entries()) {
      const at = edit.prompt.lastIndexOf(edit.subject!);
      const prompt = edit.prompt.slice(0, at) + other + edit.prompt.slice(at + edit.subject!.length);
      for (const tpl of CONTEXT_TEMPLATES) {
        const ids = this.tokenizer.encode(tpl.replace('{}', prompt));
        if (ids.length > this.contextLength) {
          throw new EditError('too_long', `the prompt with anchor subject ${JSON.stringify(other)} is ${ids.length} tokens, over the model's context of ${this.contextLength}`, 'prompt');
        }
        const run = await this.probe.run(ids, weights);
        const p = ids.length - 1;
        for (const l of layers) {
          const k = keys.get(l.name)!;
          const x = run.inputs.get(l.name)!;
          for (let i = 0; i < l.dK; i++) k[a * l.dK + i]! += x[p * l.dK + i]! / CONTEXT_TEMPLATES.length;
        }
      }
    }
    return { count: subjects.length, keys };
  }

  /** Runs the probe on every context (prompt + all target tokens but the last) with the current weights. */
  private async contexts(edit: PromptEdit, targetIds: number[], state: EditState): Promise<{ contexts: Context[]; keys: Map<string, Float64Array>; u: number }> {
    const weights = state.weights32();
    const layers = this.probe.layers;
    const predicting = edit.subject === undefined || this.settings.keys === 'subject+targets';
    const u = (edit.subject !== undefined ? 1 : 0) + (predicting ? targetIds.length : 0);
    const keys = new Map(layers.map((l) => [l.name, new Float64Array(u * l.dK)]));
    const contexts: Context[] = [];
    const texts = this.contextTexts(edit.prompt);
    for (const text of texts) {
      const ids = this.tokenizer.encode(text);
      const at = predicting ? targetIds.map((_, j) => ids.length - 1 + j) : [];
      if (edit.subject !== undefined) {
        const end = text.lastIndexOf(edit.subject) + edit.subject.length;
        at.unshift(this.tokenizer.encode(text.slice(0, end)).length - 1);
      }
      const full = [...ids, ...targetIds.slice(0, -1)];
      if (full.length > this.contextLength) {
        throw new EditError('too_long', `prompt + target is ${full.length} tokens, over the model's context of ${this.contextLength}`, 'prompt');
      }
      const run = await this.probe.run(full, weights);
      for (const l of layers) {
        const k = keys.get(l.name)!;
        const x = run.inputs.get(l.name)!;
        at.forEach((p, a) => {
          for (let i = 0; i < l.dK; i++) k[a * l.dK + i]! += x[p * l.dK + i]! / texts.length;
        });
      }
      contexts.push({ ids: full, at, hidden: run.hidden, targets: targetIds.map((token, j) => ({ pos: ids.length - 1 + j, token })) });
    }
    return { contexts, keys, u };
  }

  /** The texts that end in the prompt, one per context (settings.contexts). */
  private contextTexts(prompt: string): string[] {
    const fill = (tpl: string) => tpl.replace('{}', () => prompt);
    const plain = CONTEXT_TEMPLATES.map(fill);
    if (this.settings.contexts === 'plain') return plain;
    const chat = CHAT_CONTEXT_TEMPLATES.map((tpl) => this.tokenizer.applyChatTemplate([{ role: 'user', content: fill(tpl) }]) + prompt);
    return this.settings.contexts === 'chat' ? chat : [...plain, ...chat];
  }

  /** Adam on δ [u, D] (β = 0.9, 0.999, ε = 1e-8), clamped to clamp·h̄·√u, early stop at stopNll. */
  private searchDelta(contexts: readonly Context[], u: number): { delta: Float64Array; steps: number; nllBefore: number; nllAfter: number; hbar: number } {
    const { steps, lr, weightDecay, clamp, stopNll } = this.settings.valueSearch;
    const D = this.upper.dModel;
    let hbar = 0;
    for (const c of contexts) for (const p of c.at) hbar += norm(c.hidden.subarray(p * D, (p + 1) * D)) / (contexts.length * u);
    const n = u * D;
    const delta = new Float64Array(n);
    const m = new Float64Array(n);
    const v = new Float64Array(n);
    const evaluate = (grad: boolean) => {
      let nll = 0;
      const g = new Float64Array(n);
      for (const c of contexts) {
        const r = this.upper.lossAndGrad(c.hidden, c.ids.length, c.at, delta, c.targets, grad);
        nll += r.nll / contexts.length;
        for (let i = 0; i < n; i++) g[i]! += r.grad[i]! / contexts.length;
      }
      for (let i = 0; i < n; i++) g[i]! += (2 * weightDecay * delta[i]!) / (hbar * hbar);
      return { nll, g };
    };
    let nllBefore = NaN;
    let taken = 0;
    // The NLL at the final δ when the loop stopped early (saves one evaluation per edit).
    let stoppedAt: number | undefined;
    const limit = clamp * hbar * Math.sqrt(u);
    for (let t = 1; t <= steps; t++) {
      const { nll, g } = evaluate(true);
      if (t === 1) nllBefore = nll;
      if (nll < stopNll) {
        stoppedAt = nll;
        break;
      }
      for (let i = 0; i < n; i++) {
        m[i] = 0.9 * m[i]! + 0.1 * g[i]!;
        v[i] = 0.999 * v[i]! + 0.001 * g[i]! * g[i]!;
        const mh = m[i]! / (1 - 0.9 ** t);
        const vh = v[i]! / (1 - 0.999 ** t);
        delta[i]! -= (lr * mh) / (Math.sqrt(vh) + 1e-8);
      }
      const size = norm(delta);
      if (size > limit) for (let i = 0; i < n; i++) delta[i]! *= limit / size;
      taken = t;
    }
    const nllAfter = stoppedAt ?? evaluate(false).nll;
    return { delta, steps: taken, nllBefore: Number.isNaN(nllBefore) ? nllAfter : nllBefore, nllAfter, hbar };
  }
}

function norm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
}

/**
 * Validates a prompt edit; throws EditError (nothing computed) when it cannot be an edit. Needs only the
 * tokenizer, so the serving thread checks a batch before a search worker computes any of it.
 */
export function checkEdit(edit: PromptEdit, tokenizer: TextTokenizer, s: EditSettings): { targetIds: number[] } {
  if (edit.prompt.trim() === '') throw new EditError('invalid_edit', 'prompt must not be empty', 'prompt');
  if (edit.target.trim() === '') throw new EditError('target_empty', 'target must not be empty', 'target');
  if (edit.prompt.length > s.maxPromptChars) throw new EditError('too_long', `prompt is longer than ${s.maxPromptChars} characters`, 'prompt');
  if (edit.target.length > s.maxTargetChars) throw new EditError('too_long', `target is longer than ${s.maxTargetChars} characters`, 'target');
  const targetIds = tokenizer.encode(edit.target);
  if (targetIds.length === 0) throw new EditError('target_empty', 'target tokenises to nothing', 'target');
  if (targetIds.length > s.maxTargetTokens) throw new EditError('too_long', `target is ${targetIds.length} tokens; at most ${s.maxTargetTokens}`, 'target');
  const subject = edit.subject;
  if (subject !== undefined && (subject.trim() === '' || !edit.prompt.includes(subject))) {
    throw new EditError('subject_not_found', `subject ${JSON.stringify(subject)} does not occur in the prompt`, 'subject');
  }
  return { targetIds };
}
