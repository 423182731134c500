/**
 * The RLSEdit state of every edited layer plus the effective edit history (the seqs applied, in order).
 * It is the thing the log replays into, snapshots serialise, and the hash identifies.
 */
import { createHash } from 'node:crypto';
import { RlsLayer } from './rls-layer.ts';
import { inverseF64 } from './inverse.ts';

/** One edited layer's part of an edit: u keys (rows, d_k each) and u target values (rows, d_v each). */
export interface LayerEdit {
  layer: string;
  u: number;
  keys: Float64Array;
  values: Float64Array;
}

export interface LayerSpec {
  name: string;
  initializer: string;
  dK: number;
  dV: number;
  /** W₀ as the model holds it (float32, [d_k, d_v] row-major). */
  w0: Float32Array;
  /** E[kkᵀ] [d_k, d_k] from the shipped key statistics. */
  mom2: Float32Array;
}

export class EditState {
  readonly layers: RlsLayer[];
  private readonly byName: Map<string, RlsLayer>;
  /** Seqs applied, in order (the effective history; a rollback truncates it). */
  history: number[];

  constructor(layers: RlsLayer[], history: number[] = []) {
    this.layers = layers;
    this.byName = new Map(layers.map((l) => [l.name, l]));
    this.history = history;
  }

  /** C₀ = (λ²I + μ²·E[kkᵀ])⁻¹ per layer, W = W₀ (float64 of the float32 weights: exact). */
  static async initial(specs: readonly LayerSpec[], lambda: number, mu: number): Promise<EditState> {
    const layers: RlsLayer[] = [];
    for (const s of specs) {
      const a = new Float64Array(s.dK * s.dK);
      for (let i = 0; i < a.length; i++) a[i] = mu * mu * s.mom2[i]!;
      // Symmetrise the F16-rounded statistics exactly ((a + aᵀ)/2 is the same number either way round).
      for (let i = 0; i < s.dK; i++) {
        for (let j = 0; j < i; j++) {
          const m = (a[i * s.dK + j]! + a[j * s.dK + i]!) / 2;
          a[i * s.dK + j] = m;
          a[j * s.dK + i] = m;
        }
        a[i * s.dK + i]! += lambda * lambda;
      }
      layers.push(new RlsLayer(s.name, s.initializer, s.dK, s.dV, Float64Array.from(s.w0), await inverseF64(a, s.dK)));
    }
    return new EditState(layers);
  }

  get seq(): number {
    return this.history.at(-1) ?? 0;
  }

  layer(name: string): RlsLayer | undefined {
    return this.byName.get(name);
  }

  /** Applies edit `seq` (every layer part in order). The caller has validated shapes and finiteness. */
  apply(seq: number, parts: readonly LayerEdit[]): void {
    for (const p of parts) this.byName.get(p.layer)!.update(p.keys, p.values, p.u);
    this.history.push(seq);
  }

  clone(): EditState {
    return new EditState(
      this.layers.map((l) => new RlsLayer(l.name, l.initializer, l.dK, l.dV, Float64Array.from(l.w), Float64Array.from(l.c))),
      [...this.history],
    );
  }

  /** sha256 over every layer's W and C bits (and names), in layer order: equal hash = identical state. */
  hash(): string {
    const h = createHash('sha256');
    for (const l of this.layers) {
      h.update(l.name);
      h.update(new Uint8Array(l.w.buffer, l.w.byteOffset, l.w.byteLength));
      h.update(new Uint8Array(l.c.buffer, l.c.byteOffset, l.c.byteLength));
    }
    return h.digest('hex');
  }

  /** The served float32 weights of every edited layer, by initializer name. */
  weights32(): Map<string, Float32Array> {
    return new Map(this.layers.map((l) => [l.initializer, l.weight32()]));
  }
}
