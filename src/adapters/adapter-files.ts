/**
 * Reading an adapter directory: existence (404), its JSON config and its safetensors file (400).
 *
 * A load reads each file once: `adapterSource(…, 'load')` reads adapter_config.json and, at the same time
 * (two reads in flight on the libuv pool instead of a chain), the whole weights file in one read; the kind
 * then validates config, names and shapes from the in-memory header before it decodes a tensor. Every
 * awaited file operation is a round trip through the thread pool that a loaded machine makes slow, so the
 * cold path keeps their number small (it used to be ~30: the config twice, header, then tensor by tensor).
 */
import { open, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { notFound } from '../errors.ts';
import { invalidAdapter } from './attach-target.ts';
import { SafetensorsFile } from './safetensors.ts';

export const CONFIG_FILE = 'adapter_config.json';
export const WEIGHTS_FILE = 'adapter_model.safetensors';
/**
 * Weights files up to this size are read whole in one read when loading; larger ones header first, then
 * tensor by tensor (a corrupt multi-GB file is refused from its header before its bytes are read).
 */
export const WHOLE_READ_LIMIT = 256 << 20;

/** One adapter directory as a loader sees it: config parsed once, weights opened on request. */
export interface AdapterSource {
  id: string;
  dir: string;
  /** The parsed adapter_config.json; undefined when the file is absent. */
  config: unknown;
  /** The weights file (400 `… is missing` when absent): read whole when loading, header-only when checking. */
  weights(): Promise<SafetensorsFile>;
  /** Closes weights read ahead that the kind never asked for (it refused the config first). Idempotent. */
  release(): void;
}

export async function assertAdapterDir(id: string, dir: string): Promise<void> {
  const s = await stat(dir).catch(() => undefined);
  if (!s?.isDirectory()) throw notFound(`adapter ${id} not found`, 'model', 'adapter_not_found');
}

/**
 * Reads `dir`'s config (404 when `dir` is no directory). `load` starts reading the weights now, in
 * parallel; `check` opens only their header when asked.
 */
export async function adapterSource(id: string, dir: string, mode: 'load' | 'check'): Promise<AdapterSource> {
  const path = join(dir, WEIGHTS_FILE);
  const open = () => SafetensorsFile.open(path, mode === 'load' ? { wholeUpTo: WHOLE_READ_LIMIT } : {});
  let early: Promise<SafetensorsFile> | undefined;
  if (mode === 'load') {
    early = open();
    // Settled here if the config fails first and nobody asks for the weights: closed, never unhandled.
    early.catch(() => undefined);
  }
  let taken = false;
  const release = () => {
    if (early && !taken) void early.then((f) => f.close(), () => undefined);
    taken = true;
  };
  let config: unknown;
  try {
    config = await readConfigJson(dir, id);
    if (config === undefined) await assertAdapterDir(id, dir);
  } catch (err) {
    release();
    throw err;
  }
  return {
    release,
    id,
    dir,
    config,
    async weights() {
      const pending = early && !taken ? early : open();
      taken = true;
      try {
        return await pending;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EISDIR') throw invalidAdapter(id, `${WEIGHTS_FILE} is missing`);
        throw err;
      }
    },
  };
}

/** The parsed adapter_config.json, or undefined when the file is absent (for `detect`). */
export async function readConfigJson(dir: string, id: string): Promise<unknown> {
  let text: string;
  try {
    text = await readSmallText(join(dir, CONFIG_FILE));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw invalidAdapter(id, `${CONFIG_FILE} cannot be read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidAdapter(id, `${CONFIG_FILE} is not valid JSON (${(e as Error).message})`);
  }
}

/** Configs are a few hundred bytes: one read of this size takes them whole (larger ones read on). */
const CONFIG_READ_BYTES = 64 << 10;

/**
 * A small UTF-8 file in two thread-pool round trips (open, one read) instead of readFile's four or five
 * (open, fstat, read, read to EOF, close); the close is not waited for.
 */
async function readSmallText(path: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(CONFIG_READ_BYTES);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    if (bytesRead < buf.length) return buf.toString('utf8', 0, bytesRead);
    // Positional reads leave the file offset at 0: readFile reads it all from the start.
    return await handle.readFile({ encoding: 'utf8' });
  } finally {
    void handle.close().catch(() => undefined);
  }
}

/** A parsed config's `peft_type`, or undefined. */
export function configPeftType(config: unknown): string | undefined {
  return typeof config === 'object' && config !== null && typeof (config as { peft_type?: unknown }).peft_type === 'string'
    ? (config as { peft_type: string }).peft_type
    : undefined;
}

/** The config's `peft_type`; undefined when there is no config. Invalid JSON is a 400, not "no kind". */
export async function peftType(dir: string): Promise<string | undefined> {
  return configPeftType(await readConfigJson(dir, basename(dir)));
}
