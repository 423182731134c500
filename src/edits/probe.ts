/**
 * The key probe: an ORT session on a rewritten copy of the base graph that exposes, for one prompt,
 *   - the input of every edited layer at every position  (keys: the edited map's input),
 *   - the residual stream right after the top edited block (where the value search adds δ),
 * with the edited layers' weights turned from constant initializers into graph inputs, so every probe run
 * sees the current W_t of the edit stream (the exact float32 values being served) without rebuilding a
 * session per edit. Only these few layers are fed; everything else stays constant and pre-packed.
 */
import { Tensor, type InferenceSession } from 'onnxruntime-node';
import { findLinearLayers } from '../runtime/graph/linear-layers.ts';
import { decodeModel, encodeModel, FLOAT, tensorDims, tensorValueInfo, type ModelProto } from '../runtime/graph/onnx.ts';
import { createSession, type Device } from '../runtime/session.ts';
import { pastNames } from '../runtime/batch-kv.ts';
import type { KvShape } from '../runtime/batch-kv.ts';
import { EditError } from './errors.ts';

export interface ProbeLayer {
  name: string;
  initializer: string;
  dK: number;
  dV: number;
  /** Graph tensor holding the layer's input. */
  inputTensor: string;
}

export interface ProbeResult {
  /** Tokens run. */
  length: number;
  /** Per edited layer, its input at every position, [length, d_k] row-major. */
  inputs: Map<string, Float32Array>;
  /** Residual stream after the top edited block, [length, d_model]. */
  hidden: Float32Array;
  /** Logits at every position, [length, vocab], when the probe was created with `logits: true` (evaluation). */
  logits?: Float32Array;
}

export class KeyProbe {
  private constructor(
    private readonly session: InferenceSession,
    readonly layers: readonly ProbeLayer[],
    private readonly hiddenTensor: string,
    readonly dModel: number,
    private readonly shape: KvShape,
    private readonly withLogits: boolean,
    private readonly aliases: ReadonlyMap<string, string>,
    private readonly offsets: ReadonlyMap<string, Float32Array>,
  ) {}

  /**
   * The initializer behind a weight name: exporters deduplicate equal tensors (tiny-llama's RMSNorm weights)
   * into one initializer read through `Identity` nodes named after the others.
   */
  initializerFor(name: string): string {
    return this.aliases.get(name) ?? name;
  }

  /**
   * `layerNames` in any order; the top one is the last in graph order. Throws EditError('unknown_layer') for
   * a name that is not a linear layer with a float weight.
   */
  /**
   * `opts.offsets`: initializer → tensor added to the fed weight on every run (another source's additive change
   * to an edited layer, e.g. a global patch: the probe then runs the weights as served, W_t + patch).
   */
  static async create(
    onnxBytes: Uint8Array,
    layerNames: readonly string[],
    shape: KvShape,
    device: Device,
    threads?: number,
    opts: { logits?: boolean; offsets?: ReadonlyMap<string, Float32Array> } = {},
  ): Promise<KeyProbe> {
    const model = decodeModel(onnxBytes);
    const graph = model.graph!;
    const linear = findLinearLayers(model);
    const chosen = linear.filter((l) => layerNames.includes(l.name));
    for (const n of layerNames) {
      if (!chosen.some((l) => l.name === n)) {
        throw new EditError('unknown_layer', `edit layer ${JSON.stringify(n)} is not a linear layer of this model`, 'layer');
      }
    }
    const top = chosen.at(-1)!;
    const hiddenTensor = residualAfter(model, top.outputTensor);
    const inits = graph.initializer ?? [];
    const initNames = new Set(inits.map((t) => t.name));
    const aliases = new Map<string, string>();
    for (const n of graph.node ?? []) {
      if (n.opType === 'Identity' && initNames.has(n.input?.[0]) && n.output?.[0]) aliases.set(n.output[0], n.input![0]!);
    }
    const layers: ProbeLayer[] = chosen.map((l) => ({ name: l.name, initializer: l.weightName, dK: l.dIn, dV: l.dOut, inputTensor: l.inputTensor }));
    // Weights of the edited layers become inputs (same name, so the MatMul nodes need no change).
    const fed = new Set(layers.map((l) => l.initializer));
    graph.initializer = inits.filter((t) => !fed.has(t.name ?? ''));
    for (const t of inits) if (fed.has(t.name ?? '')) graph.input!.push(tensorValueInfo(t.name!, FLOAT, tensorDims(t)));
    graph.output = [
      ...layers.map((l) => tensorValueInfo(l.inputTensor, FLOAT, [])),
      tensorValueInfo(hiddenTensor, FLOAT, []),
      ...(opts.logits ? [tensorValueInfo('logits', FLOAT, [])] : []),
    ].map((vi) => ({ name: vi.name, type: { tensorType: { elemType: FLOAT } } }));
    const dModel = top.dOut;
    const session = await createSession(encodeModel(model), { device, ...(threads ? { threads } : {}) });
    return new KeyProbe(session, layers, hiddenTensor, dModel, shape, opts.logits === true, aliases, opts.offsets ?? new Map());
  }

  /** Runs one unpadded sequence with the edited layers' current weights (initializer name → float32). */
  async run(ids: readonly number[], weights: ReadonlyMap<string, Float32Array>): Promise<ProbeResult> {
    const t = ids.length;
    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor('int64', BigInt64Array.from(ids, (i) => BigInt(i)), [1, t]),
      attention_mask: new Tensor('int64', new BigInt64Array(t).fill(1n), [1, t]),
      position_ids: new Tensor('int64', BigInt64Array.from({ length: t }, (_, i) => BigInt(i)), [1, t]),
    };
    for (const name of pastNames(this.shape.numLayers)) {
      feeds[name] = new Tensor('float32', new Float32Array(0), [1, this.shape.numKvHeads, 0, this.shape.headDim]);
    }
    for (const l of this.layers) {
      const w = weights.get(l.initializer)!;
      const off = this.offsets.get(l.initializer);
      feeds[l.initializer] = new Tensor('float32', off ? Float32Array.from(w, (x, i) => x + off[i]!) : w, [l.dK, l.dV]);
    }
    const out = await this.session.run(feeds, [...this.layers.map((l) => l.inputTensor), this.hiddenTensor, ...(this.withLogits ? ['logits'] : [])]);
    const inputs = new Map(this.layers.map((l) => [l.name, out[l.inputTensor]!.data as Float32Array]));
    return { length: t, inputs, hidden: out[this.hiddenTensor]!.data as Float32Array, ...(this.withLogits ? { logits: out['logits']!.data as Float32Array } : {}) };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The residual Add that consumes the layer's output: the block's output (GPT-2 `h.N/Add_1`, Llama `layers.N/Add_1`). */
function residualAfter(model: ModelProto, outputTensor: string): string {
  const add = (model.graph!.node ?? []).find((n) => n.opType === 'Add' && (n.input ?? []).includes(outputTensor));
  if (!add?.output?.[0]) {
    throw new EditError('unsupported_model', `no residual Add consumes ${outputTensor}: the edited layer must write into the residual stream`);
  }
  return add.output[0];
}
