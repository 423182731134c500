/**
 * Loading an RWS patch for the served base: header first (format, method, base model, levels, modules and
 * shapes checked before any tensor byte is read), then the tensors (ranges finite and ordered, every level
 * below `levels`), then the base fingerprint over the affected pristine weights. Every failure is a 400
 * naming the problem; nothing is kept from a patch that fails.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { badRequest } from '../errors.ts';
import { SafetensorsFile } from '../adapters/safetensors.ts';
import { fingerprint, MAX_LEVELS, MIN_LEVELS, moduleOf, PATCH_FILE, qName, rangeName, RWS_FORMAT, type Quantised, type RwsMetadata } from './rws-format.ts';

/** What a patch may touch: the base's linear layers and their pristine weights. */
export interface PatchTarget {
  /** Names an adapter's base model may go by (the served id, the model directory's name). */
  baseNames: readonly string[];
  linearWeight(module: string): { initializer: string; dIn: number; dOut: number } | undefined;
  pristine(initializer: string): Float32Array;
  /** How many graph nodes read an initializer (tied weights read by 2 cannot be patched per layer). */
  consumers(initializer: string): number;
}

export interface PatchLayer {
  module: string;
  initializer: string;
  dIn: number;
  dOut: number;
  signature: Quantised;
}

export interface RwsPatch {
  id: string;
  path: string;
  meta: RwsMetadata;
  layers: readonly PatchLayer[];
  /** Bytes of the quantised signatures (what the patch costs in memory). */
  bytes: number;
}

const invalid = (path: string, message: string, param: string | null = 'path') =>
  badRequest(`patch ${path}: ${message}`, param, 'invalid_patch');

/** The patch file inside a patch directory (or the file itself). */
export function patchFile(path: string): string {
  return existsSync(path) && statSync(path).isDirectory() ? join(path, PATCH_FILE) : path;
}

export function isPatchDir(path: string): boolean {
  return existsSync(join(path, PATCH_FILE));
}

function parseMetadata(path: string, m: Readonly<Record<string, string>>): RwsMetadata {
  const need = (k: string) => {
    const v = m[k];
    if (v === undefined || v === '') throw invalid(path, `__metadata__ has no ${k}`);
    return v;
  };
  if (need('format') !== RWS_FORMAT) throw invalid(path, `format is ${JSON.stringify(m.format)}, expected ${RWS_FORMAT}`);
  if (need('method') !== 'rws') throw invalid(path, `method is ${JSON.stringify(m.method)}, only "rws" is supported`);
  const levels = Number(need('levels'));
  if (!Number.isInteger(levels) || levels < MIN_LEVELS || levels > MAX_LEVELS) {
    throw invalid(path, `levels is ${JSON.stringify(m.levels)}, expected an integer in [${MIN_LEVELS}, ${MAX_LEVELS}]`);
  }
  const known = new Set(['format', 'method', 'base_model', 'base_fingerprint', 'levels', 'corruption', 'layers']);
  const extra = Object.fromEntries(Object.entries(m).filter(([k]) => !known.has(k)));
  return {
    format: RWS_FORMAT,
    method: 'rws',
    baseModel: need('base_model'),
    baseFingerprint: need('base_fingerprint'),
    levels,
    corruption: need('corruption'),
    layers: need('layers').split(',').filter(Boolean),
    extra,
  };
}

export async function loadRwsPatch(id: string, path: string, target: PatchTarget): Promise<RwsPatch> {
  const file = patchFile(path);
  if (!existsSync(file)) throw invalid(path, `no ${PATCH_FILE} there: not an RWS patch`);
  const st = await SafetensorsFile.open(file);
  try {
    const meta = parseMetadata(path, st.header.metadata);
    if (!target.baseNames.includes(meta.baseModel)) {
      throw invalid(path, `it was made for base model '${meta.baseModel}', this server serves '${target.baseNames[0]}'`);
    }
    const modules = new Set<string>();
    for (const name of st.header.tensors.keys()) {
      const m = moduleOf(name);
      if (!m) throw invalid(path, `tensor ${name} is not <module>.rws.q or <module>.rws.range`);
      modules.add(m.module);
    }
    if (modules.size === 0) throw invalid(path, 'it holds no tensors');
    const layers: PatchLayer[] = [];
    const pristine = new Map<string, Float32Array>();
    let bytes = 0;
    for (const module of [...modules].sort()) {
      const q = st.header.tensors.get(qName(module));
      const range = st.header.tensors.get(rangeName(module));
      if (!q || !range) throw invalid(path, `${module} needs both ${qName(module)} and ${rangeName(module)}`);
      const lw = target.linearWeight(module);
      if (!lw) throw invalid(path, `${module} is not a linear layer of the base model`);
      if (target.consumers(lw.initializer) !== 1) throw invalid(path, `${module}'s weight ${lw.initializer} is shared (tied) with other nodes; patching it is not supported`);
      const want = meta.levels <= 256 ? 'U8' : 'U16';
      if (q.dtype !== want) throw invalid(path, `${qName(module)} is ${q.dtype}, expected ${want} for ${meta.levels} levels`);
      if (q.shape.length !== 2 || q.shape[0] !== lw.dIn || q.shape[1] !== lw.dOut) {
        throw invalid(path, `${qName(module)} has shape [${q.shape.join(', ')}], the base layer is [${lw.dIn}, ${lw.dOut}] (d_in, d_out)`);
      }
      if (range.dtype !== 'F32' || range.shape.length !== 1 || range.shape[0] !== 2) throw invalid(path, `${rangeName(module)} must be F32 [2] (min, max)`);
      const [min, max] = (await st.read(rangeName(module))).data as Float32Array;
      if (!Number.isFinite(min!) || !Number.isFinite(max!) || min! > max!) throw invalid(path, `${rangeName(module)} is (${min}, ${max}): min and max must be finite with min ≤ max`);
      const data = (await st.read(qName(module))).data as Uint8Array | Uint16Array;
      for (let i = 0; i < data.length; i++) {
        if (data[i]! >= meta.levels) throw invalid(path, `${qName(module)}[${i}] = ${data[i]} is not below levels = ${meta.levels}`);
      }
      pristine.set(module, target.pristine(lw.initializer));
      layers.push({ module, initializer: lw.initializer, dIn: lw.dIn, dOut: lw.dOut, signature: { q: data, min: min!, max: max!, levels: meta.levels } });
      bytes += data.byteLength + 8;
    }
    const fp = fingerprint(pristine);
    if (fp !== meta.baseFingerprint) {
      throw invalid(path, `its base fingerprint ${meta.baseFingerprint.slice(0, 12)}… does not match this server's weights of ${[...modules].join(', ')} (${fp.slice(0, 12)}…): it was made for another base`);
    }
    return { id, path, meta, layers, bytes };
  } finally {
    await st.close();
  }
}
