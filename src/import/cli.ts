/**
 * `npm run model:import -- <file.gguf> --out models/<name> [--weights f32|q4|q8]`: import a GGUF model.
 * Bad arguments or a bad file print one clear line to stderr and exit non-zero.
 */
import { parseArgs } from 'node:util';
import { PatchbayError } from '../errors.ts';
import { IMPLEMENTED_WEIGHTS_MODES, WEIGHTS_MODES, type WeightsMode } from './emit-linear.ts';
import { importGguf } from './import-gguf.ts';
import type { ImportAccuracy } from './quant/nbits-linear.ts';
import { ATTENTION_MODES, type AttentionMode } from './attention-core.ts';

const USAGE = 'usage: npm run model:import -- <file.gguf> --out models/<name> [--weights f32|q4|q8] [--accuracy-level auto|0|4] [--attention append|concat]';

export interface ImportArgs {
  gguf: string;
  out: string;
  weights: WeightsMode;
  /** q4/q8: MatMulNBits accuracy_level (0 = float32 compute, 4 = int8 activations); default in quant/nbits-linear.ts. */
  accuracyLevel?: ImportAccuracy;
  /** Attention core (src/import/attention-core.ts); default `append`. `gqa` is for bench/kv-context only. */
  attention?: AttentionMode;
}

/** Parse argv (without node and script); throws a message-only Error on bad input. */
export function parseImportArgs(argv: string[]): ImportArgs {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { out: { type: 'string' }, weights: { type: 'string', default: 'f32' }, 'accuracy-level': { type: 'string' }, attention: { type: 'string' } } });
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${USAGE}`);
  }
  const { positionals, values } = parsed;
  if (positionals.length !== 1) throw new Error(`expected exactly one GGUF file, got ${positionals.length}\n${USAGE}`);
  if (!values.out) throw new Error(`--out <directory> is required\n${USAGE}`);
  const weights = values.weights as WeightsMode;
  if (!(WEIGHTS_MODES as readonly string[]).includes(weights)) throw new Error(`--weights must be one of ${WEIGHTS_MODES.join(', ')}, got "${values.weights}"`);
  if (!IMPLEMENTED_WEIGHTS_MODES.includes(weights)) {
    throw new Error(`--weights ${weights} is not yet supported by this importer (available: ${IMPLEMENTED_WEIGHTS_MODES.join(', ')})`);
  }
  const level = values['accuracy-level'];
  if (level !== undefined && !/^([0-4]|auto)$/.test(level)) throw new Error(`--accuracy-level must be auto, 0, 1, 2, 3 or 4, got "${level}"`);
  const accuracyLevel = level === undefined ? undefined : level === 'auto' ? 'auto' : (Number(level) as ImportAccuracy);
  const attention = values.attention;
  // `gqa` graphs are not served (attention-core.ts): the importer writes only what the runtime loads.
  const servable = ATTENTION_MODES.filter((m) => m !== 'gqa');
  if (attention !== undefined && !(servable as readonly string[]).includes(attention)) throw new Error(`--attention must be one of ${servable.join(', ')}, got "${attention}"`);
  return {
    gguf: positionals[0]!,
    out: values.out,
    weights,
    ...(accuracyLevel !== undefined ? { accuracyLevel } : {}),
    ...(attention !== undefined ? { attention: attention as AttentionMode } : {}),
  };
}

export async function main(argv: string[]): Promise<number> {
  let args: ImportArgs;
  try {
    args = parseImportArgs(argv);
  } catch (e) {
    process.stderr.write(`model:import: ${(e as Error).message}\n`);
    return 2;
  }
  try {
    const r = await importGguf(args.gguf, args.out, args.weights, {
      ...(args.accuracyLevel !== undefined ? { accuracyLevel: args.accuracyLevel } : {}),
      ...(args.attention !== undefined ? { attention: args.attention } : {}),
    });
    const types = Object.entries(r.tensorTypes).map(([t, n]) => `${n}×${t}`).join(', ');
    process.stdout.write(
      `imported ${args.gguf} (${r.hparams.name}: ${r.hparams.architecture}, ${r.hparams.layers} layers, vocab ${r.hparams.vocabSize}; tensors ${types})\n` +
        `  → ${r.outDir} (--weights ${args.weights}, attention ${args.attention ?? 'append'}, ONNX ${(r.onnxBytes / 1e6).toFixed(1)} MB) in ${r.seconds.toFixed(1)} s\n`,
    );
    return 0;
  } catch (e) {
    const msg = e instanceof PatchbayError ? e.message : `import failed: ${(e as Error).message}`;
    process.stderr.write(`model:import: ${msg}\n`);
    return 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
