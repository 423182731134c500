/**
 * HY-WU-style generators: an ONNX model that maps a condition c [1, d_c] to LoRA factors for the base,
 * one pair per target module, compiled exactly like a PEFT LoRA (lora.ts):
 *
 *     outputs  <m>.A [r, d_in],  <m>.B [d_out, r]          ΔW_m(c) = s·B_m(c)·A_m(c)
 *     a = Aᵀ [d_in, r],  b = s·Bᵀ [r, d_out]               y += (x·a)·b on the request's own batch row
 *
 * Loading validates everything that can be known before a request: the manifest (zod), the base identity,
 * that every target is an attachable layer of this base, the ONNX graph's input and declared output shapes,
 * the string-embedding projection, and one trial run on c = 0 (shapes and finiteness of what it produced).
 * The generator runs on CPU, one thread: it is small next to the base, and it must not compete with it.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Tensor, type InferenceSession } from 'onnxruntime-node';
import { PatchbayError, badRequest } from '../errors.ts';
import { createSession } from '../runtime/session.ts';
import { decodeModel, valueInfoDims, type Dim } from '../runtime/graph/onnx.ts';
import type { LayerFactors } from '../runtime/types.ts';
import { checkBaseModel, resolveModules, type AttachLayer, type AttachTarget } from './attach-target.ts';
import { embedString, vectorCondition, type Projection, type StringEmbeddingSource } from './generator-condition.ts';
import { GENERATOR_MANIFEST, readGeneratorManifest, type GeneratorManifest } from './generator-manifest.ts';
import { loadedAdapter, type LoadedAdapter } from './kind.ts';
import { compileLora } from './lora.ts';
import { SafetensorsFile } from './safetensors.ts';

export { GENERATOR_MANIFEST } from './generator-manifest.ts';

export interface GeneratorContext {
  /** The served base's tokenizer and embedding table; without it, string conditions are refused. */
  strings?: StringEmbeddingSource;
}

export interface LoadedGenerator {
  id: string;
  kind: 'generator';
  manifest: GeneratorManifest;
  /** Targeted layers, in manifest order. */
  modules: string[];
  /** The request's condition → c [condition_dim] (400 `condition` for anything that does not fit). */
  condition(raw: readonly unknown[] | string): Promise<Float32Array>;
  /** One generator run → compiled factors under `key`; 400 if the generator produced NaN/Inf. */
  generate(c: Float32Array, key: string): Promise<LoadedAdapter>;
  close(): Promise<void>;
}

export const generatorKind = {
  kind: 'generator' as const,
  /** A directory is a generator when it has a generator.json (cheap: one stat). */
  async detect(dir: string): Promise<boolean> {
    return (await stat(join(dir, GENERATOR_MANIFEST)).catch(() => undefined))?.isFile() === true;
  },
  load: loadGenerator,
  /**
   * What `load` checks before opening the ONNX file: the manifest, the base identity and that every target
   * is an attachable layer of this base. Cheap enough to run on every generator directory at startup.
   */
  async check(dir: string, target: AttachTarget, id: string): Promise<GeneratorManifest> {
    const manifest = await readGeneratorManifest(dir, id);
    asGenerator(id, () => checkBaseModel(id, manifest.base_model, target));
    asGenerator(id, () => resolveModules(id, manifest.targets, target));
    return manifest;
  },
};

/** Check failures that mean "made for another base", as opposed to a damaged file. */
export const GENERATOR_MISFIT_CODES: ReadonlySet<string> = new Set(['generator_base_mismatch', 'generator_not_attachable', 'generator_shape_mismatch']);

export function invalidGenerator(id: string, message: string, code = 'invalid_generator'): PatchbayError {
  return badRequest(`generator ${id}: ${message}`, 'generator', code);
}

/** The shared attach checks word their errors for adapters; say "generator" instead. */
function asGenerator<T>(id: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof PatchbayError)) throw e;
    throw new PatchbayError({ status: e.status, code: e.code.replace(/^adapter_/, 'generator_'), param: 'generator', message: e.message.replace(`adapter ${id}:`, `generator ${id}:`), cause: e });
  }
}

async function loadGenerator(dir: string, target: AttachTarget, id: string, ctx: GeneratorContext = {}): Promise<LoadedGenerator> {
  const manifest = await generatorKind.check(dir, target, id);
  const layers = asGenerator(id, () => resolveModules(id, manifest.targets, target));
  const projection = manifest.string_condition?.projection ? await readProjection(dir, id, manifest) : undefined;
  if (manifest.string_condition && ctx.strings) {
    const table = await ctx.strings.embedding();
    const width = projection ? projection.inDim : manifest.condition_dim;
    if (width !== table.dim) {
      throw invalidGenerator(id, `string conditions need ${width}-wide token embeddings (${projection ? 'its projection' : 'condition_dim, no projection'}), but this base's are ${table.dim} wide`, 'generator_base_mismatch');
    }
  }
  const bytes = await readOnnx(dir, id, manifest.onnx);
  checkGraph(id, bytes, manifest, layers);
  let session: InferenceSession;
  try {
    session = await createSession(bytes, { device: 'cpu', threads: 1 });
  } catch (e) {
    throw invalidGenerator(id, `${manifest.onnx} cannot be loaded by onnxruntime (${(e as Error).message})`);
  }
  const outputs = manifest.targets.flatMap((m) => [`${m}.A`, `${m}.B`]);
  const { rank, scale, condition_dim: dim } = manifest;

  // close() waits for runs in flight: releasing a session under a running `run` is undefined behaviour in ORT.
  const running = new Set<Promise<unknown>>();
  let closed = false;
  const run = (c: Float32Array): Promise<Map<string, LayerFactors>> => {
    if (closed) return Promise.reject(invalidGenerator(id, 'was unregistered', 'generator_not_found'));
    const p = runOnce(c);
    running.add(p);
    void p.then(() => running.delete(p), () => running.delete(p));
    return p;
  };
  const runOnce = async (c: Float32Array): Promise<Map<string, LayerFactors>> => {
    const out = await session.run({ condition: new Tensor('float32', c, [1, dim]) }, outputs);
    const factors = new Map<string, LayerFactors>();
    for (const m of manifest.targets) {
      const { dIn, dOut } = layers.get(m)!;
      const A = factor(id, out, `${m}.A`, [rank, dIn]);
      const B = factor(id, out, `${m}.B`, [dOut, rank]);
      factors.set(m, compileLora(A, B, rank, dIn, dOut, scale));
    }
    return factors;
  };

  try {
    await run(new Float32Array(dim));
  } catch (e) {
    await session.release();
    throw e instanceof PatchbayError ? invalidGenerator(id, `trial run on a zero condition: ${e.message.replace(`generator ${id}: `, '')}`) : e;
  }

  return {
    id,
    kind: 'generator',
    manifest,
    modules: [...manifest.targets],
    async condition(raw) {
      if (typeof raw !== 'string') return vectorCondition(raw, dim, id);
      const spec = manifest.string_condition;
      if (!spec) throw badRequest(`generator ${id} takes vector conditions only (${dim} numbers); its manifest declares no string embedding`, 'condition', 'invalid_condition');
      if (!ctx.strings) throw badRequest('this server cannot embed string conditions (no base tokenizer / embedding table)', 'condition', 'invalid_condition');
      return embedString(raw, spec, ctx.strings, projection, id);
    },
    async generate(c, key) {
      return loadedAdapter(key, 'generator', await run(c));
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled([...running]);
      await session.release();
    },
  };
}

/** One output as float32 of exactly `shape`, all finite (NaN/Inf would poison the request's row). */
function factor(id: string, out: InferenceSession.ReturnType, name: string, shape: [number, number]): Float32Array {
  const t = out[name];
  if (!t) throw new PatchbayError({ status: 400, code: 'generator_output_invalid', param: 'condition', message: `generator ${id}: produced no output ${name}` });
  if (t.type !== 'float32' || t.dims.length !== 2 || t.dims[0] !== shape[0] || t.dims[1] !== shape[1]) {
    throw new PatchbayError({ status: 400, code: 'generator_output_invalid', param: 'condition', message: `generator ${id}: output ${name} is ${t.type} [${t.dims.join(', ')}], expected float32 [${shape.join(', ')}]` });
  }
  const data = t.data as Float32Array;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new PatchbayError({ status: 400, code: 'generator_output_not_finite', param: 'condition', message: `generator ${id}: produced ${data[i]} in ${name} for this condition; nothing was served with it` });
    }
  }
  return data;
}

async function readOnnx(dir: string, id: string, file: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(join(dir, file)));
  } catch (e) {
    throw invalidGenerator(id, `${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Declared I/O before any session exists: one input `condition` [1, d_c], outputs exactly <m>.A / <m>.B. */
function checkGraph(id: string, bytes: Uint8Array, manifest: GeneratorManifest, layers: ReadonlyMap<string, AttachLayer>): void {
  let graph;
  try {
    graph = decodeModel(bytes).graph;
  } catch (e) {
    throw invalidGenerator(id, `${manifest.onnx} is not an ONNX model (${(e as Error).message})`);
  }
  if (!graph) throw invalidGenerator(id, `${manifest.onnx} has no graph`);
  const inits = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = (graph.input ?? []).filter((i) => !inits.has(i.name));
  const fits = (dims: Dim[] | undefined, want: number[]) => !dims || (dims.length === want.length && dims.every((d, k) => typeof d !== 'number' || d === want[k]));
  const shown = (dims: Dim[] | undefined) => `[${(dims ?? []).map((d) => d ?? '?').join(', ')}]`;
  if (inputs.length !== 1 || inputs[0]!.name !== 'condition') {
    throw invalidGenerator(id, `${manifest.onnx} must have exactly one input named condition; it has ${inputs.map((i) => i.name).join(', ') || 'none'}`);
  }
  const inDims = valueInfoDims(inputs[0]!);
  if (!fits(inDims, [1, manifest.condition_dim])) {
    throw invalidGenerator(id, `input condition is ${shown(inDims)} but the manifest says condition_dim ${manifest.condition_dim} ([1, ${manifest.condition_dim}])`, 'generator_shape_mismatch');
  }
  const declared = new Map((graph.output ?? []).map((o) => [o.name ?? '', valueInfoDims(o)]));
  const problems: string[] = [];
  for (const m of manifest.targets) {
    const { dIn, dOut } = layers.get(m)!;
    for (const [name, want] of [[`${m}.A`, [manifest.rank, dIn]], [`${m}.B`, [dOut, manifest.rank]]] as const) {
      if (!declared.has(name)) problems.push(`no output ${name}`);
      else if (!fits(declared.get(name), [...want])) problems.push(`output ${name} is ${shown(declared.get(name))}, expected [${want.join(', ')}] (rank ${manifest.rank}, layer ${dIn}→${dOut})`);
      declared.delete(name);
    }
  }
  for (const extra of declared.keys()) problems.push(`output ${extra} names no target of the manifest`);
  if (problems.length > 0) throw invalidGenerator(id, problems.slice(0, 5).join('; ') + (problems.length > 5 ? `; and ${problems.length - 5} more` : ''), 'generator_shape_mismatch');
}

async function readProjection(dir: string, id: string, manifest: GeneratorManifest): Promise<Projection> {
  const file = manifest.string_condition!.projection!;
  let st: SafetensorsFile;
  try {
    st = await SafetensorsFile.open(join(dir, file));
  } catch (e) {
    throw invalidGenerator(id, `${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const w = st.header.tensors.get('weight');
    if (!w || w.shape.length !== 2 || w.shape[0] !== manifest.condition_dim) {
      throw invalidGenerator(id, `${file} must hold weight [condition_dim=${manifest.condition_dim}, d_model]${w ? `, it holds [${w.shape.join(', ')}]` : ''}`, 'generator_shape_mismatch');
    }
    const b = st.header.tensors.get('bias');
    if (b && (b.shape.length !== 1 || b.shape[0] !== manifest.condition_dim)) {
      throw invalidGenerator(id, `${file}: bias is [${b.shape.join(', ')}], expected [${manifest.condition_dim}]`, 'generator_shape_mismatch');
    }
    const weight = (await st.read('weight')).data;
    const bias = b ? (await st.read('bias')).data : undefined;
    if (!(weight instanceof Float32Array) || (bias && !(bias instanceof Float32Array))) throw invalidGenerator(id, `${file} must hold float tensors`);
    if (!weight.every(Number.isFinite) || (bias && !bias.every(Number.isFinite))) throw invalidGenerator(id, `${file} holds NaN or Inf`);
    return { weight, ...(bias ? { bias: bias as Float32Array } : {}), outDim: w.shape[0]!, inDim: w.shape[1]! };
  } finally {
    await st.close();
  }
}
