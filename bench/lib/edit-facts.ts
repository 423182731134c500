/**
 * The counterfactual edit stream of `eval:edits`, built from the synthetic facts in models/facts.jsonl
 * (200 facts, 6 relations, ~190 subjects). Deterministic; the 100-edit stream is the first 100 of the
 * 1000-edit stream.
 *   held out   the first 50 odd-numbered facts: never edited as asked (their prompts measure preservation).
 *   1–100      the even-numbered facts, each edited to the object of the next fact of the same relation
 *              with a different object (a counterfactual of a fact the model was trained on).
 *   101–150    the other 50 odd-numbered facts, the same way.
 *   151–900    new pairs: every subject of those 150 facts asked with each of the other 5 relations (the
 *              relation's prompt template), target an object of that relation from the facts (rotated).
 *   901–1150   the same for the held-out facts' subjects, with their 5 other relations (so after edit 900 a
 *              held-out fact's subject is also edited, under another relation: a harder preservation test).
 */
import { readFileSync } from 'node:fs';

export interface Fact { subject: string; relation: string; object: string; sentence: string }

export interface StreamEdit {
  prompt: string;
  target: string;
  subject: string;
  paraphrase: string;
  /** The fact this edit overwrites (its true object), or undefined for a new pair. */
  trueObject?: string;
}

const PROMPT: Record<string, (s: string) => string> = {
  capital: (s) => `The capital of ${s} is`,
  river_flows_into: (s) => `The river of ${s} flows into the`,
  born_in: (s) => `${s} was born in`,
  occupation: (s) => `${s} works as a`,
  flag_colour: (s) => `The flag of ${s} is`,
  ruler: (s) => `${s} is ruled by`,
};

export const PARAPHRASE: Record<string, (s: string) => string> = {
  capital: (s) => `In ${s}, the capital is`,
  river_flows_into: (s) => `${s}'s river flows into the`,
  born_in: (s) => `The birthplace of ${s} is`,
  occupation: (s) => `By trade, ${s} works as a`,
  flag_colour: (s) => `${s} has a flag that is`,
  ruler: (s) => `The ruler of ${s} is`,
};

export function loadFacts(path = 'models/facts.jsonl'): Fact[] {
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Fact);
}

export const promptOf = (f: Fact): string => f.sentence.slice(0, f.sentence.lastIndexOf(f.object)).trimEnd();

export function editStream(facts: readonly Fact[], n: number): { edits: StreamEdit[]; heldOut: Fact[] } {
  const odd = facts.map((_, i) => i).filter((i) => i % 2 === 1);
  const heldIdx = odd.slice(0, 50);
  const held = new Set(heldIdx);
  const relations = Object.keys(PROMPT);
  const pool = new Map(relations.map((r) => [r, [...new Set(facts.filter((f) => f.relation === r).map((f) => f.object))]]));
  const counterfactual = (i: number): string => {
    const f = facts[i]!;
    for (let k = 1; k < facts.length; k++) {
      const g = facts[(i + k) % facts.length]!;
      if (g.relation === f.relation && g.object !== f.object) return ` ${g.object}`;
    }
    throw new Error('no counterfactual');
  };
  const factEdit = (i: number): StreamEdit => {
    const f = facts[i]!;
    return { prompt: promptOf(f), target: counterfactual(i), subject: f.subject, paraphrase: PARAPHRASE[f.relation]!(f.subject), trueObject: f.object };
  };
  const edited = [...facts.map((_, i) => i).filter((i) => i % 2 === 0), ...odd.filter((i) => !held.has(i))];
  const edits: StreamEdit[] = edited.map(factEdit);
  // New (subject, relation) pairs, relation-major so every relation appears early; one per subject and relation.
  const seen = new Set(facts.map((f) => `${f.subject}|${f.relation}`));
  let rot = 0;
  for (const group of [edited, heldIdx]) {
    for (const r of relations) {
      for (const i of group) {
        const s = facts[i]!.subject;
        if (seen.has(`${s}|${r}`)) continue;
        seen.add(`${s}|${r}`);
        const objects = pool.get(r)!;
        edits.push({ prompt: PROMPT[r]!(s), target: ` ${objects[(rot++ * 7) % objects.length]!}`, subject: s, paraphrase: PARAPHRASE[r]!(s) });
      }
    }
  }
  if (n > edits.length) throw new Error(`the facts give ${edits.length} distinct edits; asked for ${n}`);
  return { edits: edits.slice(0, n), heldOut: heldIdx.map((i) => facts[i]!) };
}
