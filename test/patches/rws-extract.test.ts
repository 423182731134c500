import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import { openCheckpoint } from '../../src/patches/checkpoint.ts';
import { dequantise, qName, quantise, rangeName, RWS_FORMAT } from '../../src/patches/rws-format.ts';
import { extract, robustSignature } from '../../src/patches/rws-extract.ts';
import { readFile } from 'node:fs/promises';
import { modelDir, removeTempDirs, tempDir } from '../registry/fixtures.ts';
import { MODULES, noise, writeTuned } from './fixtures.ts';

after(removeTempDirs);

test('RWS = τ − (aᵀτ/aᵀa)·a: orthogonal to a, and τ exactly when τ ∥ nothing (a = 0)', () => {
  const base = noise(1000, 1, 1);
  const a = noise(1000, 2, 0.1);
  const t = noise(1000, 3, 0.1);
  const clean = base.map((v, i) => v + a[i]!);
  const robust = base.map((v, i) => v + t[i]! + 0.5 * a[i]!);
  const { rws, coef } = robustSignature(base, clean, robust);
  // Reference in plain float64 from the float32 inputs.
  let aa = 0, at = 0, dot = 0;
  const A = Array.from(clean, (v, i) => v - base[i]!);
  const T = Array.from(robust, (v, i) => v - base[i]!);
  A.forEach((v, i) => { aa += v * v; at += v * T[i]!; });
  assert.ok(Math.abs(coef - at / aa) < 1e-12);
  rws.forEach((v, i) => { assert.ok(Math.abs(v - (T[i]! - (at / aa) * A[i]!)) < 1e-12); dot += v * A[i]!; });
  assert.ok(Math.abs(dot) < 1e-9, `aᵀRWS = ${dot}`);
  const same = robustSignature(base, base, robust);
  assert.equal(same.coef, 0);
  same.rws.forEach((v, i) => assert.equal(v, T[i]));
});

test('quantisation: levels in range, error at most half a step, min and max kept', () => {
  const v = noise(5000, 9, 0.3);
  for (const levels of [2, 16, 256, 4096]) {
    const q = quantise(v, levels);
    const back = dequantise(q);
    const step = (q.max - q.min) / (levels - 1);
    v.forEach((x, i) => {
      assert.ok(q.q[i]! < levels);
      assert.ok(Math.abs(back[i]! - x) <= step / 2 + 1e-7, `levels ${levels}: |${back[i]} − ${x}| > ${step / 2}`);
    });
    assert.equal(levels <= 256 ? q.q.constructor : Uint16Array, levels <= 256 ? Uint8Array : Uint16Array);
  }
});

test('rws:extract writes the format with metadata, and the patch is ~4× smaller than an fp32 copy at 256 levels', async () => {
  const root = await tempDir('patchbay-rws-');
  const clean = await writeTuned(path.join(root, 'clean'), 5);
  const robust = await writeTuned(path.join(root, 'robust'), 6);
  const lines: string[] = [];
  const out = path.join(root, 'patch');
  const { patchBytes, copyBytes } = await extract({ base: modelDir('tiny-gpt2'), clean, robust, levels: 256, layers: 'mlp.c_fc$,attn.c_attn$', corruption: 'synthetic', out, baseModel: 'tiny-gpt2' }, (l) => lines.push(l));
  assert.ok(copyBytes / patchBytes > 3.9 && copyBytes / patchBytes < 4, `ratio ${copyBytes / patchBytes}`);
  assert.match(lines.at(-1)!, /smaller/);
  const st = decodeSafetensors(new Uint8Array(await readFile(path.join(out, 'patch.safetensors'))));
  assert.equal(st.header.metadata.format, RWS_FORMAT);
  assert.equal(st.header.metadata.method, 'rws');
  assert.equal(st.header.metadata.levels, '256');
  assert.equal(st.header.metadata.corruption, 'synthetic');
  assert.equal(st.header.metadata.base_model, 'tiny-gpt2');
  // Every selected module: (the RWS of the selected blocks' c_fc and c_attn = the 4 + 4 layers)
  const mods = [...st.header.tensors.keys()].filter((k) => k.endsWith('.rws.q')).map((k) => k.slice(0, -'.rws.q'.length));
  assert.equal(mods.length, 8);
  // Tuned modules carry the projected difference; untouched modules an all-zero signature.
  const [b, c, r] = await Promise.all([openCheckpoint(modelDir('tiny-gpt2')), openCheckpoint(clean), openCheckpoint(robust)]);
  for (const m of MODULES) {
    const q = st.tensor(qName(m)).data as Uint8Array;
    const [min, max] = st.tensor(rangeName(m)).data as Float32Array;
    const got = dequantise({ q, min: min!, max: max!, levels: 256 });
    const want = robustSignature(await b.layers.get(m)!.read(), await c.layers.get(m)!.read(), await r.layers.get(m)!.read()).rws;
    const step = (max! - min!) / 255;
    for (let i = 0; i < want.length; i += 101) assert.ok(Math.abs(got[i]! - want[i]!) <= step / 2 + 1e-6);
  }
  const [zmin, zmax] = st.tensor(rangeName('transformer.h.3.mlp.c_fc')).data as Float32Array;
  assert.deepEqual([zmin, zmax], [0, 0]);
  await Promise.all([b.close(), c.close(), r.close()]);
});

test('rws:extract refuses levels out of range and a selection that matches nothing', async () => {
  const root = await tempDir('patchbay-rws-');
  const ck = await writeTuned(path.join(root, 'ck'), 3);
  const o = { base: modelDir('tiny-gpt2'), clean: ck, robust: ck, layers: 'all', corruption: 'x', out: path.join(root, 'o'), baseModel: 'tiny-gpt2' };
  await assert.rejects(extract({ ...o, levels: 1 }), /--levels/);
  await assert.rejects(extract({ ...o, levels: 70000 }), /--levels/);
  await assert.rejects(extract({ ...o, levels: 256, layers: '9' }), /selects no linear layer/);
  await assert.rejects(extract({ ...o, levels: 256, clean: modelDir('tiny-llama') }), /missing|differ/);
});
