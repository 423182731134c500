/**
 * Where an MWA source's metric comes from, in order of precedence:
 *   1. a Hugging Face Trainer checkpoint: the adapter directory is `checkpoint-N/` holding `trainer_state.json`;
 *      step = its `global_step`; loss = the `eval_loss` logged at that step in `log_history`, else the training
 *      `loss` logged at that step;
 *   2. the adapter's safetensors `__metadata__`: `eval_loss`, else `loss` / `train_loss`; `step`, else `global_step`;
 *   3. the number given in the request (`sources[i].loss` / `sources[i].step`).
 * A source with none of these is a 400 naming it.
 */
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { WEIGHTS_FILE } from '../adapters/adapter-files.ts';
import { SafetensorsFile } from '../adapters/safetensors.ts';
import type { MetricOrigin } from './merge-recipe.ts';

interface LogEntry {
  step?: unknown;
  loss?: unknown;
  eval_loss?: unknown;
}

const positive = (v: unknown): number | undefined => {
  const n = typeof v === 'string' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : undefined;
};

async function fromTrainerState(dir: string, metric: 'loss' | 'steps'): Promise<number | undefined> {
  if (!/^checkpoint-\d+$/.test(basename(dir))) return undefined;
  let state: { global_step?: unknown; log_history?: unknown };
  try {
    state = JSON.parse(await readFile(join(dir, 'trainer_state.json'), 'utf8')) as typeof state;
  } catch {
    return undefined;
  }
  const step = positive(state.global_step) ?? positive(basename(dir).slice('checkpoint-'.length));
  if (metric === 'steps' || step === undefined) return metric === 'steps' ? step : undefined;
  const logged = (Array.isArray(state.log_history) ? (state.log_history as LogEntry[]) : []).filter((h) => h && h.step === step);
  const evalLoss = logged.map((h) => positive(h.eval_loss)).filter((v) => v !== undefined);
  const trainLoss = logged.map((h) => positive(h.loss)).filter((v) => v !== undefined);
  return evalLoss.at(-1) ?? trainLoss.at(-1);
}

async function fromMetadata(dir: string, metric: 'loss' | 'steps'): Promise<number | undefined> {
  let file: SafetensorsFile;
  try {
    file = await SafetensorsFile.open(join(dir, WEIGHTS_FILE));
  } catch {
    return undefined;
  }
  try {
    const md = file.header.metadata;
    const keys = metric === 'loss' ? ['eval_loss', 'loss', 'train_loss'] : ['step', 'global_step'];
    for (const k of keys) {
      const v = positive(md[k]);
      if (v !== undefined) return v;
    }
    return undefined;
  } finally {
    await file.close();
  }
}

/** The metric of one source and where it came from, or undefined when no source of it has one. */
export async function sourceMetric(
  dir: string,
  metric: 'loss' | 'steps',
  given: number | undefined,
): Promise<{ value: number; from: MetricOrigin } | undefined> {
  const trainer = await fromTrainerState(dir, metric);
  if (trainer !== undefined) return { value: trainer, from: 'trainer_state' };
  const meta = await fromMetadata(dir, metric);
  if (meta !== undefined) return { value: meta, from: 'safetensors_metadata' };
  return given !== undefined ? { value: given, from: 'request' } : undefined;
}
