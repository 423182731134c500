/**
 * The computation behind a prompt edit — key probe (ORT) and value search (the family's upper stack) — on
 * the weights as served under every other base-version source (the basis), behind one seam (`EditSearch`)
 * with two homes: this thread (`LocalSearch`) or a worker thread (search-host.ts, which runs a LocalSearch
 * in the worker). EditService only sequences, logs and publishes.
 */
import { readFileSync } from 'node:fs';
import type { ModelInfo, TextTokenizer } from '../runtime/index.ts';
import type { Device } from '../runtime/session.ts';
import { InitializerTable } from '../runtime/versions/initializer-table.ts';
import { EditComputer, type ComputedEdit, type PromptEdit } from './compute.ts';
import type { EditState } from './edit-state.ts';
import { EditError } from './errors.ts';
import { Gpt2Upper } from './gpt2-upper.ts';
import { llamaUpper } from './llama-upper.ts';
import { KeyProbe, type ProbeLayer } from './probe.ts';
import type { EditSettings } from './settings.ts';
import type { UpperStack } from './upper.ts';

/**
 * The other sources' changes under the edits (BaseVersions.composedWithout('edits')), split as the probe and
 * the upper stack use them: `offsets` = additive change to an edited layer (added to the fed W_t), `baked` =
 * full values of any other weight (written into the probe's model bytes, read by the upper stack).
 */
export interface SearchBasis {
  baked: ReadonlyMap<string, Float32Array>;
  offsets: ReadonlyMap<string, Float32Array>;
}

export type Inspected = { keys: Map<string, Float64Array>; grad: Float64Array; u: number };

export interface EditSearch {
  /** The edited layers in graph order (the store applies parts in this order). */
  readonly layers: readonly ProbeLayer[];
  /** False for a model family without an upper stack: raw edits only. */
  readonly promptEdits: boolean;
  /** Switches to keys and values computed on `basis` (a new probe session and upper stack). */
  rebase(basis: SearchBasis): Promise<void>;
  /** `onSearch`: the probe runs are done and the value search begins (EditComputer.compute). */
  compute(edit: PromptEdit, state: EditState, onSearch?: () => void): Promise<ComputedEdit>;
  inspect(edit: PromptEdit, state: EditState): Promise<Inspected>;
  close(): Promise<void>;
}

export interface SearchOptions {
  model: ModelInfo;
  tokenizer: TextTokenizer;
  settings: EditSettings;
  device: Device;
  threads?: number | undefined;
  /** Edited layers (HF module paths), any order. */
  layers: readonly string[];
  /**
   * The pristine float32 weight of an initializer (a copy). Default: read from the model's ONNX file (the
   * worker's source; the serving thread passes BaseVersions.pristine).
   */
  pristine?: (initializer: string) => Float32Array;
}

export class LocalSearch implements EditSearch {
  /** The search on the current basis, and the probe built for it (released on the next rebase). */
  private current: { computer: EditComputer | undefined; probe?: KeyProbe };

  private constructor(
    private readonly opts: SearchOptions,
    private readonly probe: KeyProbe,
    private readonly pristineComputer: EditComputer | undefined,
  ) {
    this.current = { computer: pristineComputer };
  }

  static async create(opts: SearchOptions): Promise<LocalSearch> {
    const raw = new Uint8Array(readFileSync(opts.model.onnxPath));
    const probe = await KeyProbe.create(raw, opts.layers, opts.model, opts.device, opts.threads);
    const read = opts.pristine ?? fileReader(raw);
    const upper = upperStack(opts.model, (name) => read(probe.initializerFor(name)), opts.layers);
    return new LocalSearch(opts, probe, upper && new EditComputer(probe, upper, opts.tokenizer, opts.settings, opts.model.contextLength));
  }

  get layers(): readonly ProbeLayer[] {
    return this.probe.layers;
  }

  get promptEdits(): boolean {
    return this.pristineComputer !== undefined;
  }

  async rebase({ baked, offsets }: SearchBasis): Promise<void> {
    const { model, settings, tokenizer } = this.opts;
    await this.current.probe?.release();
    this.current = { computer: this.pristineComputer };
    if (!this.pristineComputer || (baked.size === 0 && offsets.size === 0)) return;
    const raw = new Uint8Array(readFileSync(model.onnxPath));
    const table = InitializerTable.of(raw);
    const bytes = baked.size > 0 ? table.patched(baked) : raw;
    const probe = await KeyProbe.create(bytes, this.opts.layers, model, this.opts.device, this.opts.threads, { offsets });
    const init = (name: string) => this.probe.initializerFor(name);
    const read = this.opts.pristine ?? ((name: string) => table.read(name));
    const upper = upperStack(model, (name) => baked.get(init(name)) ?? read(init(name)), this.opts.layers)!;
    this.current = { probe, computer: new EditComputer(probe, upper, tokenizer, settings, model.contextLength) };
  }

  compute(edit: PromptEdit, state: EditState, onSearch?: () => void): Promise<ComputedEdit> {
    return this.computer().compute(edit, state, onSearch);
  }

  inspect(edit: PromptEdit, state: EditState): Promise<Inspected> {
    return this.computer().inspect(edit, state);
  }

  async close(): Promise<void> {
    await this.probe.release();
    await this.current.probe?.release();
  }

  private computer(): EditComputer {
    if (!this.current.computer) {
      throw new EditError('unsupported_model', `prompt edits need the value search, implemented for GPT-2 and Llama only (this model is ${this.opts.model.architecture}); send raw {layer, keys, values}`);
    }
    return this.current.computer;
  }
}

/** Pristine weights read from the model's own ONNX bytes (a copy each). */
function fileReader(raw: Uint8Array): (initializer: string) => Float32Array {
  const table = InitializerTable.of(raw);
  return (name) => table.read(name);
}

/** The model family's upper stack for the value search; undefined: raw edits only. */
export function upperStack(model: ModelInfo, read: (name: string) => Float32Array, layers: readonly string[]): UpperStack | undefined {
  if (model.architecture === 'gpt2') return gpt2Upper(model, read, layers);
  if (model.architecture === 'llama') return llamaUpper(model, read, layers);
  return undefined;
}

function gpt2Upper(model: ModelInfo, read: (name: string) => Float32Array, layers: readonly string[]): Gpt2Upper {
  const top = Math.max(...layers.map((name) => Number(/\.h\.(\d+)\./.exec(name)?.[1] ?? NaN)));
  if (!Number.isFinite(top)) throw new EditError('unsupported_model', 'GPT-2 edit layers must be transformer.h.<i>.* modules', 'layer');
  const numHeads = model.numKvHeads; // GPT-2 has no GQA: KV heads = heads
  const dModel = model.numKvHeads * model.headDim;
  return new Gpt2Upper(read, top + 1, model.numLayers, dModel, numHeads, model.vocabSize);
}
