/**
 * S²FT adapter (format in s2ft-format.ts) → delta factors, exactly: S²FT is a rank-k factorisation
 * whose one factor is a selection matrix (one-hot E).
 *
 *   axis output (ΔW[idx,:] = S, S [k, d_in]):   a = Sᵀ [d_in, k],   b = E [k, d_out], b[j, idx[j]] = 1
 *   axis input  (ΔW[:,idx] = S, S [d_out, k]):  a = E [d_in, k], a[idx[j], j] = 1,   b = Sᵀ [k, d_out]
 *
 * so (x·a)·b = x·ΔWᵀ. Attach cost is O(k·d) per module (a transpose and a scatter of ones), no
 * d×d GEMM. Validation (header first): config schema, every configured module has exactly its idx and
 * S tensors (and nothing else is in the file), S shaped for its axis, then after reading idx: ids in
 * range and unique.
 */
import { z } from 'zod';
import type { LayerFactors } from '../runtime/types.ts';
import { CONFIG_FILE, configPeftType, type AdapterSource } from './adapter-files.ts';
import { checkBaseModel, invalidAdapter, resolveModules, type AttachLayer, type AttachTarget } from './attach-target.ts';
import { Slicer } from './cooperative.ts';
import { allFinite, assertFinite } from './finite.ts';
import { loadedAdapter, type AdapterKind, type LoadedAdapter } from './kind.ts';
import { idxName, S2ftConfigSchema, sName, type S2ftAxis } from './s2ft-format.ts';

export const s2ftKind: AdapterKind = {
  kind: 's2ft',
  detect(config) {
    return configPeftType(config) === 'S2FT';
  },
  load: loadS2ft,
  async check(src, target) {
    const { file, modules } = await planS2ft(src, target);
    await file.close();
    return modules;
  },
};

/** Everything checked before a tensor byte is read: config, base, modules, tensor names and shapes. */
async function planS2ft(src: AdapterSource, target: AttachTarget) {
  const { id } = src;
  const raw = src.config;
  if (raw === undefined) throw invalidAdapter(id, `${CONFIG_FILE} is missing`);
  const parsed = S2ftConfigSchema.safeParse(raw);
  if (!parsed.success) throw invalidAdapter(id, `${CONFIG_FILE}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`);
  const cfg = parsed.data;
  checkBaseModel(id, cfg.base_model_name_or_path, target);
  const modules = Object.keys(cfg.modules);
  if (modules.length === 0) throw invalidAdapter(id, 'S2FT config lists no modules');
  const layers = resolveModules(id, modules, target);

  const file = await src.weights();
  try {
    const expected = new Set(modules.flatMap((m) => [idxName(m), sName(m)]));
    for (const name of file.header.tensors.keys()) {
      if (!expected.has(name)) throw invalidAdapter(id, `unexpected tensor ${name} (config modules: ${modules.join(', ')})`);
    }
    for (const m of modules) checkHeader(id, m, cfg.modules[m]!.axis, layers.get(m)!, file.header.tensors);
    return { file, cfg, modules, layers };
  } catch (err) {
    await file.close();
    throw err;
  }
}

async function loadS2ft(src: AdapterSource, target: AttachTarget): Promise<LoadedAdapter> {
  const { id } = src;
  const { file, cfg, modules, layers } = await planS2ft(src, target);
  try {
    const factors = new Map<string, LayerFactors>();
    const slicer = new Slicer();
    for (const m of modules) {
      const idxT = await file.read(idxName(m));
      const idx = idxT.dtype === 'I64' ? Int32Array.from(idxT.data, Number) : (idxT.data as Int32Array);
      // A view of the file's buffer (F32): compileS2ft makes the one copy the factors need.
      const S = (await file.read(sName(m), { view: true })).data as Float32Array;
      if (!allFinite(S)) assertFinite(id, sName(m), S);
      const layer = layers.get(m)!;
      const axis = cfg.modules[m]!.axis;
      checkIdx(id, m, idx, axis === 'output' ? layer.dOut : layer.dIn, axis);
      factors.set(m, compileS2ft(axis, idx, S, layer.dIn, layer.dOut));
      await slicer.pause();
    }
    return loadedAdapter(id, 's2ft', factors);
  } finally {
    await file.close();
  }
}

function checkHeader(id: string, m: string, axis: S2ftAxis, layer: AttachLayer, tensors: ReadonlyMap<string, { dtype: string; shape: number[] }>): void {
  const idx = tensors.get(idxName(m));
  const S = tensors.get(sName(m));
  if (!idx) throw invalidAdapter(id, `module ${m}: tensor ${idxName(m)} is missing`);
  if (!S) throw invalidAdapter(id, `module ${m}: tensor ${sName(m)} is missing`);
  if (idx.dtype !== 'I32' && idx.dtype !== 'I64') throw invalidAdapter(id, `module ${m}: idx is ${idx.dtype}, expected I32`);
  if (S.dtype !== 'F32' && S.dtype !== 'F16' && S.dtype !== 'BF16') throw invalidAdapter(id, `module ${m}: S is ${S.dtype}, expected a float dtype`);
  if (idx.shape.length !== 1) throw invalidAdapter(id, `module ${m}: idx is [${idx.shape.join(', ')}], expected 1-D [k]`);
  const k = idx.shape[0]!;
  const want = axis === 'output' ? [k, layer.dIn] : [layer.dOut, k];
  if (S.shape.length !== 2 || S.shape[0] !== want[0] || S.shape[1] !== want[1]) {
    const dims = axis === 'output' ? `[k, d_in] = [${want.join(', ')}]` : `[d_out, k] = [${want.join(', ')}]`;
    throw invalidAdapter(id, `module ${m}: S is [${S.shape.join(', ')}] but axis ${axis} with k=${k} on a layer [d_in=${layer.dIn}, d_out=${layer.dOut}] needs ${dims}`, 'adapter_shape_mismatch');
  }
}

function checkIdx(id: string, m: string, idx: Int32Array, size: number, axis: S2ftAxis): void {
  const seen = new Set<number>();
  for (const i of idx) {
    if (i < 0 || i >= size) throw invalidAdapter(id, `module ${m}: idx holds ${i}, outside the ${size} ${axis} channels`, 'adapter_shape_mismatch');
    if (seen.has(i)) throw invalidAdapter(id, `module ${m}: idx holds channel ${i} twice`);
    seen.add(i);
  }
}

/** The exact factors of one S²FT module; see the file comment for the formulas. */
export function compileS2ft(axis: S2ftAxis, idx: Int32Array, S: Float32Array, dIn: number, dOut: number): LayerFactors {
  const k = idx.length;
  const a = new Float32Array(dIn * k);
  const b = new Float32Array(k * dOut);
  if (axis === 'output') {
    for (let j = 0; j < k; j++) {
      for (let i = 0; i < dIn; i++) a[i * k + j] = S[j * dIn + i]!;
      b[j * dOut + idx[j]!] = 1;
    }
  } else {
    for (let j = 0; j < k; j++) {
      a[idx[j]! * k + j] = 1;
      for (let o = 0; o < dOut; o++) b[j * dOut + o] = S[o * k + j]!;
    }
  }
  return { rank: k, a, b };
}
