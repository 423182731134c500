import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import { EditComputer } from '../../src/edits/compute.ts';
import { EditService } from '../../src/edits/edit-service.ts';
import { EditState } from '../../src/edits/edit-state.ts';
import { llamaUpper } from '../../src/edits/llama-upper.ts';
import { KeyProbe } from '../../src/edits/probe.ts';
import { DEFAULT_EDIT_SETTINGS } from '../../src/edits/settings.ts';
import { loadRuntime } from '../../src/runtime/index.ts';
import { InitializerTable } from '../../src/runtime/versions/initializer-table.ts';
import { relErr } from './fixture.ts';

/**
 * Keys and value-search gradients see a global patch published on top (another BaseVersions source): with a
 * patch that adds to a weight below the edited layer (its keys), to the edited layer itself (the probe's fed
 * W_t) and to the block above (the upper stack), the service's keys and ∂L/∂δ equal those of a model whose
 * ONNX weights are the patched ones (rel 1e-9: the same float32 weights either way), differ from the
 * unpatched ones, and return to them exactly when the patch is withdrawn.
 */
const dir = 'models/tiny-llama';
const runtime = await loadRuntime({ modelDir: dir, device: 'cpu', maxBatch: 4, maxQueue: 16, threads: 1 });
const { versions } = runtime;
const edits = await EditService.create({
  model: runtime.model, tokenizer: runtime.tokenizer, versions, dataDir: mkdtempSync(join(tmpdir(), 'edits-patch-')),
  settings: DEFAULT_EDIT_SETTINGS, device: 'cpu', threads: 1,
});
after(async () => {
  await edits.close();
  await runtime.close();
});

function noise(name: string, seed: number, scale: number): Float32Array {
  const n = versions.pristine(name).length;
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * scale;
  });
}

test('keys and gradients are computed on the weights as served under a global patch', async () => {
  const edit = { prompt: 'The capital of Veldor is', target: ' Quillon', subject: 'Veldor' };
  const plain = await edits.inspect(edit);
  const add = new Map([
    ['model.layers.0.mlp.up_proj.weight', noise('model.layers.0.mlp.up_proj.weight', 1, 0.2)],
    ['model.layers.0.mlp.down_proj.weight', noise('model.layers.0.mlp.down_proj.weight', 2, 0.2)],
    ['model.layers.1.mlp.gate_proj.weight', noise('model.layers.1.mlp.gate_proj.weight', 3, 0.2)],
  ]);
  await versions.publish('patches', { add }, { test: 1 });
  const patched = await edits.inspect(edit);

  // Reference: the model with the patched weights written into its ONNX bytes, no patch source at all.
  const served = versions.composedWithout('edits');
  const bytes = InitializerTable.of(new Uint8Array(readFileSync(runtime.model.onnxPath))).patched(served);
  const table = InitializerTable.of(bytes);
  const layers = edits.layers;
  const probe = await KeyProbe.create(bytes, layers, runtime.model, 'cpu', 1);
  after(() => probe.release());
  const computer = new EditComputer(probe, llamaUpper(runtime.model, (n) => table.read(probe.initializerFor(n)), layers), runtime.tokenizer, DEFAULT_EDIT_SETTINGS, runtime.model.contextLength);
  const stats = decodeSafetensors(new Uint8Array(readFileSync(`${dir}/edit_stats.safetensors`)));
  const specs = layers.map((name) => {
    const w0 = table.read(`${name}.weight`);
    const mom2 = stats.tensor(`${name}.mom2`).data as Float32Array;
    const dK = Math.sqrt(mom2.length);
    return { name, initializer: `${name}.weight`, dK, dV: w0.length / dK, w0, mom2 };
  });
  const ref = await computer.inspect(edit, await EditState.initial(specs, 1, 1));
  for (const name of layers) {
    assert.ok(relErr(patched.keys.get(name)!, ref.keys.get(name)!) < 1e-9, `${name}: keys under the patch`);
    assert.ok(relErr(plain.keys.get(name)!, ref.keys.get(name)!) > 1e-3, `${name}: the patch did not change the keys (test cannot fail)`);
  }
  assert.ok(relErr(patched.grad, ref.grad) < 1e-9, `gradient under the patch: ${relErr(patched.grad, ref.grad)}`);
  assert.ok(relErr(plain.grad, ref.grad) > 1e-3, 'the patch did not change the gradient');

  await versions.publish('patches', undefined);
  const again = await edits.inspect(edit);
  for (const name of layers) assert.deepEqual(again.keys.get(name), plain.keys.get(name));
  assert.deepEqual(again.grad, plain.grad);
});
