import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import { EditComputer } from '../../src/edits/compute.ts';
import { EditState, type LayerSpec } from '../../src/edits/edit-state.ts';
import { LlamaUpper, llamaUpper } from '../../src/edits/llama-upper.ts';
import { KeyProbe } from '../../src/edits/probe.ts';
import { DEFAULT_EDIT_SETTINGS } from '../../src/edits/settings.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import { InitializerTable } from '../../src/runtime/versions/initializer-table.ts';
import { probe as probeProduct, probe2, relErr, type Reference } from './fixture.ts';

/**
 * The Llama value search against PyTorch (tools/edits/make_llama_fixture.py) on models/tiny-llama:
 *  - LlamaUpper's NLL and ∂NLL/∂δ through both blocks (δ at the embeddings) and through the top block, given the
 *    same float32 hidden states, vs float64 autograd: rel 1e-6 (the one difference is RoPE's cos/sin, float32 in
 *    HF, float64 here);
 *  - a 3-edit stream at model.layers.0.mlp.down_proj, each edit with the weights as edited so far: keys (ORT
 *    probe) rel 1e-4, the gradient at δ = 0 rel 1e-3 (float32 PyTorch vs float32 ORT hidden + float64 TS),
 *    the searched values after the Adam search rel 1e-3, Adam step count exact, and the final ΔW and C as
 *    seeded probe products rel 1e-6.
 */
interface BlockCase {
  first_block: number;
  ids: number[];
  at: number[];
  targets: { pos: number; token: number }[];
  hidden: number[][];
  delta: number[][];
  nll: number;
  grad: number[][];
}
const reference = JSON.parse(readFileSync('test/fixtures/edits/llama-reference.json', 'utf8')) as Reference & { blocks: BlockCase[] };

const dir = 'models/tiny-llama';
const bytes = new Uint8Array(readFileSync(`${dir}/onnx/model.onnx`));
const model = await readModelInfo(dir);
const table = InitializerTable.of(bytes);
const probe = await KeyProbe.create(bytes, reference.layers, model, 'cpu', 1);
after(() => probe.release());
const read = (n: string) => table.read(probe.initializerFor(n));

test('LlamaUpper: NLL and ∂NLL/∂δ through one and two Llama blocks match float64 autograd', () => {
  assert.equal(reference.blocks.length, 2);
  for (const c of reference.blocks) {
    const upper = new LlamaUpper(read, c.first_block, LlamaUpper.shapeFromConfig(dir));
    const r = upper.lossAndGrad(Float32Array.from(c.hidden.flat()), c.ids.length, c.at, Float64Array.from(c.delta.flat()), c.targets, true);
    assert.ok(Math.abs(r.nll - c.nll) / c.nll < 1e-6, `block ${c.first_block}: nll ${r.nll} vs ${c.nll}`);
    const e = relErr(r.grad, c.grad.flat());
    assert.ok(e < 1e-6, `block ${c.first_block}: gradient rel err ${e}`);
    // The cached prefix path (second call on the same hidden array) gives the same numbers.
    const hidden = Float32Array.from(c.hidden.flat());
    upper.lossAndGrad(hidden, c.ids.length, c.at, new Float64Array(c.delta.flat().length), c.targets, false);
    const again = upper.lossAndGrad(hidden, c.ids.length, c.at, Float64Array.from(c.delta.flat()), c.targets, true);
    assert.ok(relErr(again.grad, r.grad) < 1e-12 && Math.abs(again.nll - r.nll) < 1e-12, `block ${c.first_block}: cached prefix changes the result`);
  }
});

test('keys, gradients, values and the final state of a 3-edit Llama stream match PyTorch', async () => {
  const computer = new EditComputer(probe, llamaUpper(model, read, reference.layers), await HfTokenizer.load(dir), DEFAULT_EDIT_SETTINGS, model.contextLength);
  const stats = decodeSafetensors(new Uint8Array(readFileSync(`${dir}/edit_stats.safetensors`)));
  const specs: LayerSpec[] = reference.layers.map((name) => {
    const w0 = table.read(`${name}.weight`);
    const mom2 = stats.tensor(`${name}.mom2`).data as Float32Array;
    const dK = Math.sqrt(mom2.length);
    return { name, initializer: `${name}.weight`, dK, dV: w0.length / dK, w0, mom2 };
  });
  const state = await EditState.initial(specs, reference.lambda, reference.mu);
  for (const [t, ref] of reference.edits.entries()) {
    const edit = { prompt: ref.prompt, target: ref.target, subject: ref.subject };
    const { keys, grad, u } = await computer.inspect(edit, state);
    assert.equal(u, ref.u);
    for (const name of reference.layers) {
      const e = relErr(keys.get(name)!, ref.keys[name]!.flat());
      assert.ok(e < 1e-4, `edit ${t + 1} ${name}: keys rel err ${e}`);
    }
    const eg = relErr(grad, ref.grad0.flat());
    assert.ok(eg < 1e-3, `edit ${t + 1}: gradient rel err ${eg}`);
    const computed = await computer.compute(edit, state);
    assert.equal(computed.search.steps, ref.steps, `edit ${t + 1}: Adam steps`);
    for (const p of computed.parts) {
      const ev = relErr(p.values, ref.values[p.layer]!.flat());
      assert.ok(ev < 1e-3, `edit ${t + 1} ${p.layer}: values rel err ${ev}`);
    }
    // Stay on PyTorch's stream: the next edit's keys are computed with the reference's weights.
    state.apply(t + 1, reference.layers.map((name) => ({ layer: name, u: ref.u, keys: Float64Array.from(ref.keys[name]!.flat()), values: Float64Array.from(ref.values[name]!.flat()) })));
  }
  for (const l of state.layers) {
    const f = reference.final[l.name]!;
    const w0 = specs.find((s) => s.name === l.name)!.w0;
    const dw = Float64Array.from(l.w, (x, i) => x - w0[i]!);
    const edw = relErr(probeProduct(f.probes, dw, l.dK, l.dV), f.dw_probe.flat());
    assert.ok(edw < 1e-6, `${l.name}: ΔW rel err ${edw}`);
    const ec = relErr(probe2(f.probes, l.c, l.dK), f.c_probe.flat());
    assert.ok(ec < 1e-6, `${l.name}: C rel err ${ec}`);
  }
});
