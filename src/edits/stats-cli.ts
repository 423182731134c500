/**
 * Key statistics for RLSEdit from the ONNX model itself: E[kkᵀ] of the edited layers' inputs over corpus
 * tokens, written next to the model as edit_stats.safetensors (what EditService loads; the same format as
 * tools/edits/edit_stats.py writes for the embedded models). For imported models (SmolLM2) that have no
 * PyTorch checkpoint here, run at setup time:
 *
 *   npm run edits:stats -- --model models/smollm2-135m --layers 24,25,26 [--tokens 16384] [--corpus FILE]
 *
 * Keys come from the KeyProbe graph (the served float32 graph with the edited weights fed as inputs), so they
 * are exactly the keys the editor will see. Corpus: tools/.cache/corpus/train.txt (tools/corpus.py:
 * Shakespeare's plays, public domain), documents separated by <|endoftext|>, spread deterministically:
 * ⌊tokens/chunk⌋ chunks of `chunk` tokens from text windows at an even stride over the whole corpus. Accumulated in float64,
 * stored F32 (SmolLM2's 1536² matrices are 9 MB per layer; they are not committed).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeSafetensors } from '../adapters/safetensors-writer.ts';
import { readModelInfo } from '../runtime/model-config.ts';
import { HfTokenizer } from '../runtime/tokenizer.ts';
import { InitializerTable } from '../runtime/versions/initializer-table.ts';
import { EDIT_STATS_FILE } from './edit-service.ts';
import { KeyProbe } from './probe.ts';

const EOT = '<|endoftext|>';

/** The MLP output projection of block i in the model family's HF module naming. */
export function mlpOutLayer(architecture: string, i: number): string {
  if (architecture === 'gpt2') return `transformer.h.${i}.mlp.c_proj`;
  if (architecture === 'llama') return `model.layers.${i}.mlp.down_proj`;
  throw new Error(`no MLP output projection naming for architecture ${architecture}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      layers: { type: 'string' },
      tokens: { type: 'string', default: '16384' },
      chunk: { type: 'string', default: '128' },
      corpus: { type: 'string', default: 'tools/.cache/corpus/train.txt' },
      threads: { type: 'string', default: '2' },
    },
  });
  if (!values.model || !values.layers) {
    console.error('usage: npm run edits:stats -- --model <dir> --layers <i,j,…> [--tokens N] [--chunk N] [--corpus FILE] [--threads N]');
    process.exit(2);
  }
  const tokens = Number(values.tokens);
  const chunk = Number(values.chunk);
  if (!(tokens > 0 && chunk > 0)) throw new Error('--tokens and --chunk must be positive');
  const model = await readModelInfo(values.model);
  const names = values.layers.split(',').map((x) => mlpOutLayer(model.architecture, Number(x)));
  const tokenizer = await HfTokenizer.load(model.dir);
  // Windows of text at an even stride over the corpus (documents joined; separators dropped), each tokenised
  // on its own and cut to `chunk` tokens: tokenising only what is used keeps this fast on big tokenizers.
  const text = readFileSync(values.corpus, 'utf8').split(EOT).filter((d) => d.trim() !== '').join('\n');
  const nChunks = Math.floor(tokens / chunk);
  const window = chunk * 12; // characters; ≥ chunk tokens for English text with any BPE vocabulary here
  const stride = Math.max(1, Math.floor((text.length - window) / nChunks));
  const pieces: number[][] = [];
  for (let c = 0; c < nChunks; c++) {
    const ids = tokenizer.encode(text.slice(c * stride, c * stride + window)).slice(0, chunk);
    if (ids.length > 0) pieces.push(ids);
  }
  const bytes = new Uint8Array(readFileSync(model.onnxPath));
  const table = InitializerTable.of(bytes);
  const probe = await KeyProbe.create(bytes, names, model, 'cpu', Number(values.threads));
  const weights = new Map(probe.layers.map((l) => [l.initializer, table.read(l.initializer)]));
  const acc = new Map(probe.layers.map((l) => [l.name, new Float64Array(l.dK * l.dK)]));
  let count = 0;
  const t0 = performance.now();
  for (const [c, piece] of pieces.entries()) {
    const run = await probe.run(piece, weights);
    for (const l of probe.layers) {
      const x = run.inputs.get(l.name)!;
      const m = acc.get(l.name)!;
      const d = l.dK;
      // Upper triangle of Σ_t x_t x_tᵀ (mirrored at the end).
      for (let t = 0; t < piece.length; t++) {
        const o = t * d;
        for (let i = 0; i < d; i++) {
          const xi = x[o + i]!;
          if (xi === 0) continue;
          const row = i * d;
          for (let j = i; j < d; j++) m[row + j]! += xi * x[o + j]!;
        }
      }
    }
    count += piece.length;
    if ((c + 1) % 16 === 0) console.log(`${c + 1}/${nChunks} chunks, ${count} tokens, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  await probe.release();
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const l of probe.layers) {
    const m = acc.get(l.name)!;
    const d = l.dK;
    const out = new Float32Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = i; j < d; j++) {
        const v = m[i * d + j]! / count;
        out[i * d + j] = v;
        out[j * d + i] = v;
      }
    }
    let trace = 0;
    for (let i = 0; i < d; i++) trace += out[i * d + i]!;
    console.log(`${l.name}: d_k=${d} trace=${trace.toFixed(3)}`);
    tensors[`${l.name}.mom2`] = { dtype: 'F32', shape: [d, d], data: out };
  }
  const path = join(model.dir, EDIT_STATS_FILE);
  writeFileSync(
    path,
    encodeSafetensors(tensors, {
      tokens: String(count),
      corpus: values.corpus,
      layers: JSON.stringify(probe.layers.map((l) => l.name)),
      note: 'mom2 = E[k k^T] of the module input over corpus tokens (float64 sum, stored F32), from src/edits/stats-cli.ts',
    }),
  );
  console.log(`wrote ${path} (${count} tokens, ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}

await main();
