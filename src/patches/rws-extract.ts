/**
 * `npm run rws:extract -- --base <ckpt> --clean <ckpt> --robust <ckpt> --levels 256 --layers 0,1
 *                         --corruption typos --out adapters/rws-typos [--base-model tiny-gpt2]`
 *
 * Robust weight signature (Cai et al. 2023), per selected linear layer, on the flattened weights:
 *
 *     τ_c = θ_robust − θ_base,   a = θ_clean − θ_base,   RWS = τ_c − (aᵀτ_c / aᵀa)·a
 *
 * (the part of the robust fine-tune's change orthogonal to the clean fine-tune's; float64 math), then
 * quantised per tensor to `levels` levels (rws-format.ts) and written as <out>/patch.safetensors.
 * Checkpoints are Hugging Face safetensors or ONNX models (checkpoint.ts). `--layers`: comma-separated
 * block indices (`0,1`: every linear layer of blocks 0 and 1), `all` (every block), or module regexes.
 * Prints, per layer, |RWS|/|τ_c| and the quantisation error, and the file's size against a float32 copy
 * of the affected weights.
 */
import { mkdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeSafetensors, type TensorToWrite } from '../adapters/safetensors-writer.ts';
import { openCheckpoint, type Checkpoint } from './checkpoint.ts';
import { dequantise, fingerprint, MAX_LEVELS, MIN_LEVELS, PATCH_FILE, qName, quantise, rangeName, RWS_FORMAT } from './rws-format.ts';

/** RWS = τ − (aᵀτ / aᵀa)·a for flattened τ = robust − base, a = clean − base. */
export function robustSignature(base: Float32Array, clean: Float32Array, robust: Float32Array): { rws: Float64Array; coef: number; tauNorm: number } {
  const n = base.length;
  const tau = new Float64Array(n);
  const a = new Float64Array(n);
  let aa = 0;
  let at = 0;
  let tt = 0;
  for (let i = 0; i < n; i++) {
    tau[i] = robust[i]! - base[i]!;
    a[i] = clean[i]! - base[i]!;
    aa += a[i]! * a[i]!;
    at += a[i]! * tau[i]!;
    tt += tau[i]! * tau[i]!;
  }
  const coef = aa > 0 ? at / aa : 0;
  for (let i = 0; i < n; i++) tau[i] = tau[i]! - coef * a[i]!;
  return { rws: tau, coef, tauNorm: Math.sqrt(tt) };
}

/** Modules of `ckpt` picked by `--layers`. */
export function selectModules(ckpt: Checkpoint, layers: string): string[] {
  const all = [...ckpt.layers.keys()].filter((m) => /(^|\.)(h|layers)\.\d+\./.test(m));
  if (layers === 'all') return all;
  const parts = layers.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.every((p) => /^\d+$/.test(p))) return all.filter((m) => parts.some((p) => new RegExp(`(^|\\.)(h|layers)\\.${p}\\.`).test(m)));
  const res = parts.map((p) => new RegExp(p));
  return [...ckpt.layers.keys()].filter((m) => res.some((r) => r.test(m)));
}

export interface ExtractOptions {
  base: string;
  clean: string;
  robust: string;
  levels: number;
  layers: string;
  corruption: string;
  out: string;
  baseModel: string;
}

export async function extract(o: ExtractOptions, log: (line: string) => void = console.log): Promise<{ patchBytes: number; copyBytes: number }> {
  if (!Number.isInteger(o.levels) || o.levels < MIN_LEVELS || o.levels > MAX_LEVELS) throw new Error(`--levels must be an integer in [${MIN_LEVELS}, ${MAX_LEVELS}]`);
  const [base, clean, robust] = await Promise.all([openCheckpoint(o.base), openCheckpoint(o.clean), openCheckpoint(o.robust)]);
  try {
    return await extractFrom(o, base, clean, robust, log);
  } finally {
    await Promise.all([base.close(), clean.close(), robust.close()]);
  }
}

async function extractFrom(o: ExtractOptions, base: Checkpoint, clean: Checkpoint, robust: Checkpoint, log: (line: string) => void): Promise<{ patchBytes: number; copyBytes: number }> {
  const modules = selectModules(base, o.layers);
  if (modules.length === 0) throw new Error(`--layers ${o.layers} selects no linear layer of ${o.base}`);
  const tensors: Record<string, TensorToWrite> = {};
  const pristine = new Map<string, Float32Array>();
  let copyBytes = 0;
  for (const m of modules) {
    const b = base.layers.get(m)!;
    const c = clean.layers.get(m);
    const r = robust.layers.get(m);
    if (!c || !r) throw new Error(`${m} is missing from ${!c ? o.clean : o.robust}`);
    if (c.dIn !== b.dIn || c.dOut !== b.dOut || r.dIn !== b.dIn || r.dOut !== b.dOut) {
      throw new Error(`${m}: shapes differ: base [${b.dIn}, ${b.dOut}], clean [${c.dIn}, ${c.dOut}], robust [${r.dIn}, ${r.dOut}]`);
    }
    const w0 = await b.read();
    const { rws, coef, tauNorm } = robustSignature(w0, await c.read(), await r.read());
    const qt = quantise(rws, o.levels);
    const back = dequantise(qt);
    let err = 0;
    let norm = 0;
    for (let i = 0; i < rws.length; i++) {
      err += (back[i]! - rws[i]!) ** 2;
      norm += rws[i]! ** 2;
    }
    log(`${m}  [${b.dIn}, ${b.dOut}]  aᵀτ/aᵀa = ${coef.toFixed(4)}  |RWS|/|τ_c| = ${(Math.sqrt(norm) / (tauNorm || 1)).toFixed(4)}  quantisation error |ΔRWS|/|RWS| = ${(Math.sqrt(err / (norm || 1))).toExponential(2)}`);
    tensors[qName(m)] = { dtype: o.levels <= 256 ? 'U8' : 'U16', shape: [b.dIn, b.dOut], data: qt.q };
    tensors[rangeName(m)] = { dtype: 'F32', shape: [2], data: new Float32Array([qt.min, qt.max]) };
    pristine.set(m, w0);
    copyBytes += b.dIn * b.dOut * 4;
  }
  const metadata = {
    format: RWS_FORMAT,
    method: 'rws',
    base_model: o.baseModel,
    base_fingerprint: fingerprint(pristine),
    levels: String(o.levels),
    corruption: o.corruption,
    layers: modules.join(','),
    base: basename(resolve(o.base)),
    clean: basename(resolve(o.clean)),
    robust: basename(resolve(o.robust)),
  };
  await mkdir(o.out, { recursive: true });
  const file = join(o.out, PATCH_FILE);
  await writeSafetensors(file, tensors, metadata);
  const patchBytes = (await stat(file)).size;
  log(`wrote ${file}: ${modules.length} layers, ${patchBytes} bytes; a float32 copy of the affected weights is ${copyBytes} bytes → ${(copyBytes / patchBytes).toFixed(2)}× smaller`);
  return { patchBytes, copyBytes };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      base: { type: 'string' },
      clean: { type: 'string' },
      robust: { type: 'string' },
      levels: { type: 'string', default: '256' },
      layers: { type: 'string', default: 'all' },
      corruption: { type: 'string' },
      out: { type: 'string' },
      'base-model': { type: 'string' },
    },
  });
  for (const k of ['base', 'clean', 'robust', 'out', 'corruption'] as const) {
    if (!values[k]) throw new Error(`--${k} is required (usage: npm run rws:extract -- --base B --clean C --robust R --corruption NAME --out DIR [--levels 256] [--layers 0,1|all|regex] [--base-model ID])`);
  }
  await extract({
    base: values.base!,
    clean: values.clean!,
    robust: values.robust!,
    levels: Number(values.levels),
    layers: values.layers!,
    corruption: values.corruption!,
    out: values.out!,
    baseModel: values['base-model'] ?? basename(resolve(values.base!)),
  });
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  main().catch((err: unknown) => {
    process.stderr.write(`rws:extract: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
