/**
 * Linear-layer weights of a checkpoint, in graph orientation [d_in, d_out] (y = x·W), keyed by Hugging Face
 * module path — from either
 *   - a Hugging Face safetensors checkpoint (a directory with model.safetensors and config.json, or the
 *     file): `<module>.weight` of every 2-D tensor; GPT-2's Conv1D weights are already [d_in, d_out]
 *     (config model_type "gpt2"), nn.Linear weights [d_out, d_in] are transposed; or
 *   - an ONNX model (a .onnx file, or a model directory with onnx/model.onnx or model.onnx): the
 *     initializers of the linear layers the runtime finds (runtime/graph/linear-layers.ts).
 * Used by the RWS extractor (rws-extract.ts).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SafetensorsFile } from '../adapters/safetensors.ts';
import { findLinearLayers } from '../runtime/graph/linear-layers.ts';
import { decodeModel } from '../runtime/graph/onnx.ts';
import { InitializerTable } from '../runtime/versions/initializer-table.ts';

export interface LinearWeight {
  dIn: number;
  dOut: number;
  /** Read on demand: row-major [dIn, dOut] float32. */
  read(): Promise<Float32Array>;
}

export interface Checkpoint {
  layers: Map<string, LinearWeight>;
  close(): Promise<void>;
}

function onnxPath(path: string): string | undefined {
  if (path.endsWith('.onnx')) return path;
  for (const p of [join(path, 'onnx', 'model.onnx'), join(path, 'model.onnx')]) if (existsSync(p)) return p;
  return undefined;
}

export async function openCheckpoint(path: string): Promise<Checkpoint> {
  if (!existsSync(path)) throw new Error(`${path} does not exist`);
  const onnx = onnxPath(path);
  if (onnx) return fromOnnx(onnx);
  const file = statSync(path).isDirectory() ? join(path, 'model.safetensors') : path;
  if (!existsSync(file)) throw new Error(`${path}: neither an ONNX model nor a safetensors checkpoint (no model.safetensors)`);
  return fromSafetensors(file);
}

async function fromOnnx(path: string): Promise<Checkpoint> {
  const bytes = new Uint8Array(await readFile(path));
  const table = InitializerTable.of(bytes);
  const layers = new Map<string, LinearWeight>();
  for (const l of findLinearLayers(decodeModel(bytes))) {
    if (table.get(l.weightName)) layers.set(l.name, { dIn: l.dIn, dOut: l.dOut, read: async () => table.read(l.weightName) });
  }
  return { layers, close: async () => {} };
}

async function fromSafetensors(file: string): Promise<Checkpoint> {
  const configPath = join(dirname(file), 'config.json');
  const modelType = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as { model_type?: string }).model_type : undefined;
  // GPT-2 (and its Conv1D relatives) store [d_in, d_out]; everything else is nn.Linear [d_out, d_in].
  const conv1d = modelType === 'gpt2';
  const st = await SafetensorsFile.open(file);
  const layers = new Map<string, LinearWeight>();
  for (const [name, info] of st.header.tensors) {
    if (!name.endsWith('.weight') || info.shape.length !== 2 || info.dtype === 'I32' || info.dtype === 'I64') continue;
    const module = name.slice(0, -'.weight'.length);
    const [r, c] = info.shape as [number, number];
    const [dIn, dOut] = conv1d ? [r, c] : [c, r];
    layers.set(module, {
      dIn,
      dOut,
      async read() {
        const w = (await st.read(name)).data as Float32Array;
        if (conv1d) return w;
        const t = new Float32Array(w.length);
        for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[j * r + i] = w[i * c + j]!;
        return t;
      },
    });
  }
  return { layers, close: () => st.close() };
}
