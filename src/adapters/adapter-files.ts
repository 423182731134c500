/** Reading an adapter directory: existence (404), its JSON config and its safetensors file (400). */
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { notFound } from '../errors.ts';
import { invalidAdapter } from './attach-target.ts';
import { SafetensorsFile } from './safetensors.ts';

export const CONFIG_FILE = 'adapter_config.json';
export const WEIGHTS_FILE = 'adapter_model.safetensors';

export async function assertAdapterDir(id: string, dir: string): Promise<void> {
  const s = await stat(dir).catch(() => undefined);
  if (!s?.isDirectory()) throw notFound(`adapter ${id} not found`, 'model', 'adapter_not_found');
}

/** The parsed adapter_config.json, or undefined when the file is absent (for `detect`). */
export async function readConfigJson(dir: string, id: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(join(dir, CONFIG_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw invalidAdapter(id, `${CONFIG_FILE} cannot be read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidAdapter(id, `${CONFIG_FILE} is not valid JSON (${(e as Error).message})`);
  }
}

/** The config's `peft_type`; undefined when there is no config. Invalid JSON is a 400, not "no kind". */
export async function peftType(dir: string): Promise<string | undefined> {
  const cfg = await readConfigJson(dir, basename(dir));
  return typeof cfg === 'object' && cfg !== null && typeof (cfg as { peft_type?: unknown }).peft_type === 'string'
    ? (cfg as { peft_type: string }).peft_type
    : undefined;
}

export async function openWeights(dir: string, id: string): Promise<SafetensorsFile> {
  const path = join(dir, WEIGHTS_FILE);
  if (!(await stat(path).catch(() => undefined))?.isFile()) throw invalidAdapter(id, `${WEIGHTS_FILE} is missing`);
  return SafetensorsFile.open(path);
}
