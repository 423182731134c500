/**
 * Stop strings over a growing text, in time linear in the text: an Aho–Corasick automaton over the stop
 * strings is fed each generated character once and keeps its state between tokens.
 *
 * The state is the longest suffix of the text so far that is a prefix of some stop string, which is
 * exactly what must be held back from streaming (it may still become a stop string): `held` = its length.
 * A match is reported at the first character that completes any stop string; among the stops completing
 * there, the longest (it starts earliest). Its start is where the text is cut. Because the decision is made
 * per character, it does not depend on how the text was split into tokens.
 *
 * Cost: building is O(Σ|stop| · σ) with σ the distinct characters of the stops; feeding n characters
 * takes at most 2n state moves (each failure move shortens the state, which grows by ≤ 1 per character).
 * The previous scan re-tested every held-back suffix against every stop prefix per token, O(L²) per token
 * for a stop of length L. `steps` counts state moves, so tests can check the bound without clocks.
 */

/** Longest stop string accepted, in UTF-16 units (the HTTP schema and the runtime both enforce it). */
export const MAX_STOP_CHARS = 256;
/** Most stop strings per request (OpenAI's limit). */
export const MAX_STOPS = 4;

interface Node {
  next: Map<number, number>;
  fail: number;
  depth: number;
  /** Length of the longest stop string that is a suffix of this node's string; 0 if none. */
  out: number;
}

export class StopScanner {
  private readonly nodes: Node[] = [{ next: new Map(), fail: 0, depth: 0, out: 0 }];
  private state = 0;
  /** Characters fed so far (the absolute position of the next character). */
  private fed = 0;
  /** State moves (goto + failure) made while feeding; linear in the characters fed. */
  steps = 0;

  constructor(stops: readonly string[]) {
    for (const stop of stops) this.insert(stop);
    this.link();
  }

  /** Length of the text's suffix that could still grow into a stop string: not yet safe to stream. */
  get held(): number {
    return this.nodes[this.state]!.depth;
  }

  /**
   * Feeds the next piece of text (all of it). Returns the position (in all text fed so far) where the first
   * stop string completed within this piece starts, or -1.
   */
  push(piece: string): number {
    const nodes = this.nodes;
    let first = -1;
    for (let i = 0; i < piece.length; i++) {
      const ch = piece.charCodeAt(i);
      let s = this.state;
      let to = nodes[s]!.next.get(ch);
      while (to === undefined && s !== 0) {
        s = nodes[s]!.fail;
        this.steps++;
        to = nodes[s]!.next.get(ch);
      }
      this.steps++;
      this.state = to ?? 0;
      this.fed++;
      const out = nodes[this.state]!.out;
      if (out > 0 && first < 0) first = this.fed - out;
    }
    return first;
  }

  private insert(stop: string): void {
    if (stop.length === 0) return;
    let s = 0;
    for (let i = 0; i < stop.length; i++) {
      const ch = stop.charCodeAt(i);
      let to = this.nodes[s]!.next.get(ch);
      if (to === undefined) {
        to = this.nodes.length;
        this.nodes.push({ next: new Map(), fail: 0, depth: i + 1, out: 0 });
        this.nodes[s]!.next.set(ch, to);
      }
      s = to;
    }
    this.nodes[s]!.out = stop.length;
  }

  /** Breadth-first failure links; `out` inherits the fail target's when the node ends no stop itself. */
  private link(): void {
    const queue: number[] = [...this.nodes[0]!.next.values()];
    for (let q = 0; q < queue.length; q++) {
      const u = queue[q]!;
      const node = this.nodes[u]!;
      for (const [ch, v] of node.next) {
        let f = node.fail;
        while (f !== 0 && !this.nodes[f]!.next.has(ch)) f = this.nodes[f]!.fail;
        const target = this.nodes[f]!.next.get(ch);
        const child = this.nodes[v]!;
        child.fail = target ?? 0;
        if (child.out === 0) child.out = this.nodes[child.fail]!.out;
        queue.push(v);
      }
    }
  }
}
