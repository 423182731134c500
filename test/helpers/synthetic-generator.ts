/**
 * Test data, not mocks: real generator directories (generator.json + an ONNX graph onnxruntime runs) built
 * with onnx-proto, for the cases a trained generator cannot show on demand — a graph that produces NaN for
 * some conditions, outputs of the wrong shape, a missing output, vector-only conditions.
 *
 * Graph: h = Sqrt(condition + shift) [1, d_c] (shift 1 by default: NaN where an entry < −1), then per target m
 *     <m>.A = Reshape(h·W_Am, [r, d_in]),  <m>.B = Reshape(h·W_Bm, [d_out, r])
 * with small seeded weights.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AttachTarget } from '../../src/adapters/index.ts';
import { encodeModel, FLOAT, int64Initializer, node, tensorValueInfo, type NodeProto, type TensorProto } from '../../src/runtime/graph/onnx.ts';

export interface SyntheticGeneratorSpec {
  /** Module paths of `target`. */
  modules: readonly string[];
  rank: number;
  conditionDim: number;
  seed: number;
  baseModel?: string;
  /** Declared and produced shape of one output, to test shape checks, e.g. {'m.A': [r, d_in + 1]}. */
  shapeOverride?: Record<string, [number, number]>;
  /** Outputs to leave out of the graph. */
  omit?: readonly string[];
  /** h = Sqrt(condition + shift); a negative shift makes even c = 0 produce NaN. Default 1. */
  shift?: number;
  /** Manifest fields to replace (or remove with undefined). */
  manifest?: Record<string, unknown>;
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 0.02;
  };
}

export async function writeSyntheticGenerator(dir: string, target: AttachTarget, spec: SyntheticGeneratorSpec): Promise<string> {
  const next = rng(spec.seed);
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [{ name: 'one', dataType: FLOAT, dims: [1], floatData: [spec.shift ?? 1] }];
  nodes.push(node('Add', 'plus_one', ['condition', 'one'], ['shifted']), node('Sqrt', 'sqrt', ['shifted'], ['h']));
  const outputs = [];
  for (const m of spec.modules) {
    const layer = target.layers.get(m);
    if (!layer) throw new Error(`${m} is not a layer of the target`);
    for (const [suffix, shape] of [['A', [spec.rank, layer.dIn]], ['B', [layer.dOut, spec.rank]]] as const) {
      const name = `${m}.${suffix}`;
      if (spec.omit?.includes(name)) continue;
      const [rows, cols] = spec.shapeOverride?.[name] ?? shape;
      const w = `${name}.w`;
      inits.push({ name: w, dataType: FLOAT, dims: [spec.conditionDim, rows * cols], floatData: Array.from({ length: spec.conditionDim * rows * cols }, next) });
      inits.push(int64Initializer(`${name}.shape`, [rows, cols]));
      nodes.push(node('MatMul', `${name}.matmul`, ['h', w], [`${name}.flat`]), node('Reshape', `${name}.reshape`, [`${name}.flat`, `${name}.shape`], [name]));
      outputs.push(tensorValueInfo(name, FLOAT, [rows, cols]));
    }
  }
  const model = encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: { name: 'synthetic-generator', node: nodes, initializer: inits, input: [tensorValueInfo('condition', FLOAT, [1, spec.conditionDim])], output: outputs },
  } as Parameters<typeof encodeModel>[0]);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'generator.onnx'), model);
  const manifest: Record<string, unknown> = {
    format: 'patchbay-generator',
    version: 1,
    base_model: spec.baseModel ?? 'tiny-gpt2',
    onnx: 'generator.onnx',
    condition_dim: spec.conditionDim,
    rank: spec.rank,
    scale: 2,
    targets: spec.modules,
    examples: [],
    ...spec.manifest,
  };
  for (const [k, v] of Object.entries(manifest)) if (v === undefined) delete manifest[k];
  await writeFile(path.join(dir, 'generator.json'), JSON.stringify(manifest, null, 2));
  return dir;
}
