/**
 * Extract an S²FT adapter from a base and a fine-tuned Hugging Face checkpoint whose changes are
 * confined to a few output rows or input columns per linear layer.
 *
 *   tsx src/adapters/s2ft-convert.ts --base <dir|file.safetensors> --tuned <dir|file.safetensors> --out <dir>
 *       [--tol 0] [--max-fraction 0.5] [--model-type gpt2]
 *
 * Per 2-D linear weight, in PyTorch layout W [d_out, d_in], ΔW = W_tuned − W_base (float32), an entry
 * "changed" when |ΔW| > tol. Changed rows R and columns C are counted; the axis with fewer channels
 * wins (ties: output), and the adapter stores idx = those channels and S = the full rows ΔW[idx, :]
 * (output) or columns ΔW[:, idx] (input) — exact for every change above tol. A layer counts as
 * confined when its k ≤ max-fraction × (that axis's size); otherwise the run fails naming the module and
 * the channel counts. Any other changed tensor (embedding, norm, bias) fails too: S²FT cannot carry it.
 *
 * GPT-2 (`model_type` gpt2, also openai-gpt / imagegpt) stores its Conv1D weights (c_attn, c_proj,
 * c_fc, q_attn) transposed, as [d_in, d_out]; they are read as Wᵀ so "output" always means output
 * features. The model type comes from `config.json` beside the weights, or `--model-type`.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SafetensorsFile, type TensorInfo } from './safetensors.ts';
import { writeS2ftAdapter, type S2ftModule } from './s2ft-format.ts';

const CONV1D_MODEL_TYPES = new Set(['gpt2', 'openai-gpt', 'imagegpt']);
const CONV1D_MODULE = /(^|\.)(c_attn|c_proj|c_fc|q_attn)$/;
const EMBEDDING = /(^|\.)(wte|wpe|embed_tokens|embed_positions|word_embeddings|position_embeddings|embed_in)(\.|$)/;

export interface ConvertOptions {
  base: string;
  tuned: string;
  out: string;
  tol?: number;
  maxFraction?: number;
  modelType?: string;
}

export interface ConvertedModule {
  module: string;
  axis: 'output' | 'input';
  k: number;
  changedRows: number;
  changedCols: number;
  dIn: number;
  dOut: number;
}

export class ConvertError extends Error {}

/** A checkpoint: one safetensors file, or a directory with model.safetensors or a sharded index. */
class Checkpoint {
  private constructor(readonly files: Map<string, SafetensorsFile>, readonly modelType: string | undefined) {}

  static async open(path: string, modelType?: string): Promise<Checkpoint> {
    const isDir = (await stat(path)).isDirectory();
    const dir = isDir ? path : dirname(path);
    const type = modelType ?? (await readJson(join(dir, 'config.json')))?.model_type;
    let shards: string[];
    if (!isDir) shards = [path];
    else {
      const index = await readJson(join(dir, 'model.safetensors.index.json'));
      shards = index ? [...new Set(Object.values(index.weight_map as Record<string, string>))].map((f) => join(dir, f)) : [join(dir, 'model.safetensors')];
    }
    const files = new Map<string, SafetensorsFile>();
    for (const s of shards) {
      const f = await SafetensorsFile.open(s);
      for (const name of f.header.tensors.keys()) files.set(name, f);
    }
    return new Checkpoint(files, typeof type === 'string' ? type : undefined);
  }

  info(name: string): TensorInfo | undefined {
    return this.files.get(name)?.header.tensors.get(name);
  }

  async read(name: string): Promise<Float32Array> {
    const t = await this.files.get(name)!.read(name);
    if (t.dtype !== 'F32') throw new ConvertError(`tensor ${name} is ${t.dtype}; only float checkpoints can be diffed`);
    return t.data;
  }

  async close(): Promise<void> {
    for (const f of new Set(this.files.values())) await f.close();
  }
}

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

export async function convertS2ft(opts: ConvertOptions): Promise<ConvertedModule[]> {
  const tol = opts.tol ?? 0;
  const maxFraction = opts.maxFraction ?? 0.5;
  const base = await Checkpoint.open(opts.base, opts.modelType);
  const tuned = await Checkpoint.open(opts.tuned, opts.modelType ?? base.modelType);
  try {
    const conv1d = CONV1D_MODEL_TYPES.has(base.modelType ?? '');
    const names = [...base.files.keys()];
    const missing = names.filter((n) => !tuned.info(n)).concat([...tuned.files.keys()].filter((n) => !base.info(n)));
    if (missing.length > 0) throw new ConvertError(`checkpoints hold different tensors: ${missing.slice(0, 5).join(', ')}`);

    const modules = new Map<string, S2ftModule>();
    const report: ConvertedModule[] = [];
    for (const name of names) {
      const bi = base.info(name)!;
      const ti = tuned.info(name)!;
      if (bi.shape.join() !== ti.shape.join()) throw new ConvertError(`tensor ${name} is [${bi.shape}] in base but [${ti.shape}] in tuned`);
      const b = await base.read(name);
      const t = await tuned.read(name);
      const changed = countChanged(b, t, tol);
      if (changed === 0) continue;
      const module = name.endsWith('.weight') ? name.slice(0, -'.weight'.length) : name;
      if (bi.shape.length !== 2 || !name.endsWith('.weight') || EMBEDDING.test(name)) {
        throw new ConvertError(`tensor ${name} changed in ${changed} entries, but S²FT only carries changes to linear weights`);
      }
      const transposed = conv1d && CONV1D_MODULE.test(module);
      const [dOut, dIn] = transposed ? [bi.shape[1]!, bi.shape[0]!] : [bi.shape[0]!, bi.shape[1]!];
      const delta = (o: number, i: number) => {
        const at = transposed ? i * dOut + o : o * dIn + i;
        return Math.fround(t[at]! - b[at]!);
      };
      const rows: number[] = [];
      const cols = new Set<number>();
      for (let o = 0; o < dOut; o++) {
        let any = false;
        for (let i = 0; i < dIn; i++) {
          if (Math.abs(delta(o, i)) > tol) {
            any = true;
            cols.add(i);
          }
        }
        if (any) rows.push(o);
      }
      const axis = rows.length <= cols.size ? 'output' : 'input';
      const idx = Int32Array.from(axis === 'output' ? rows : [...cols].sort((x, y) => x - y));
      const k = idx.length;
      const size = axis === 'output' ? dOut : dIn;
      if (k > maxFraction * size) {
        throw new ConvertError(
          `module ${module}: changes touch ${rows.length} of ${dOut} output rows and ${cols.size} of ${dIn} input columns; ` +
            `not confined to selected channels (limit ${Math.round(maxFraction * 100)}% of an axis)`,
        );
      }
      const S = new Float32Array(k * (axis === 'output' ? dIn : dOut));
      if (axis === 'output') for (let j = 0; j < k; j++) for (let i = 0; i < dIn; i++) S[j * dIn + i] = delta(idx[j]!, i);
      else for (let o = 0; o < dOut; o++) for (let j = 0; j < k; j++) S[o * k + j] = delta(o, idx[j]!);
      modules.set(module, { axis, idx, S, other: axis === 'output' ? dIn : dOut });
      report.push({ module, axis, k, changedRows: rows.length, changedCols: cols.size, dIn, dOut });
    }
    if (modules.size === 0) throw new ConvertError('the checkpoints do not differ (above --tol); nothing to convert');
    await writeS2ftAdapter(opts.out, modules, opts.base);
    return report;
  } finally {
    await base.close();
    await tuned.close();
  }
}

function countChanged(b: Float32Array, t: Float32Array, tol: number): number {
  let n = 0;
  for (let i = 0; i < b.length; i++) if (Math.abs(Math.fround(t[i]! - b[i]!)) > tol) n++;
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      base: { type: 'string' },
      tuned: { type: 'string' },
      out: { type: 'string' },
      tol: { type: 'string', default: '0' },
      'max-fraction': { type: 'string', default: '0.5' },
      'model-type': { type: 'string' },
    },
  });
  if (!values.base || !values.tuned || !values.out) {
    console.error('usage: tsx src/adapters/s2ft-convert.ts --base <ckpt> --tuned <ckpt> --out <dir> [--tol 0] [--max-fraction 0.5] [--model-type gpt2]');
    process.exit(2);
  }
  try {
    const report = await convertS2ft({
      base: values.base,
      tuned: values.tuned,
      out: values.out,
      tol: Number(values.tol),
      maxFraction: Number(values['max-fraction']),
      ...(values['model-type'] ? { modelType: values['model-type'] } : {}),
    });
    for (const r of report) console.log(`${r.module}\t${r.axis}\tk=${r.k}\t(rows changed ${r.changedRows}/${r.dOut}, cols ${r.changedCols}/${r.dIn})`);
    console.log(`wrote ${values.out} (${report.length} modules)`);
  } catch (e) {
    console.error(`s2ft-convert: ${(e as Error).message}`);
    process.exit(1);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) void main();
