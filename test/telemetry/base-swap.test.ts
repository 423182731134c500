/** A base-version switch on the real runtime becomes a `base.swap` span and moves the base metrics. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { loadRuntime, type Runtime } from '../../src/runtime/index.ts';
import { ServerMetrics } from '../../src/server/metrics.ts';
import { traceSwap } from '../../src/telemetry/base-spans.ts';

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const metrics = new ServerMetrics();
let rt: Runtime;

before(async () => {
  provider.register();
  rt = await loadRuntime({
    modelDir: 'models/tiny-llama',
    device: 'cpu',
    maxBatch: 2,
    maxQueue: 2,
    threads: 1,
    onSwap(e) {
      traceSwap(e);
      metrics.base.recordSwap(e);
    },
  });
  metrics.base.watch(() => rt.versions);
});
after(async () => {
  await rt.close();
  await provider.shutdown();
  trace.disable();
});

test('publish → base.swap span with from/to, source, labels, timings; version gauge, swap counter, build histogram', async () => {
  const { initializer } = rt.versions.linearWeight('model.layers.0.mlp.down_proj')!;
  const delta = new Float32Array(rt.versions.pristine(initializer).length).fill(1e-3);
  const swap = await rt.versions.publish('patches', { add: new Map([[initializer, delta]]) }, [{ id: 'p', alpha: 0.5 }]);
  const span = exporter.getFinishedSpans().find((s) => s.name === 'base.swap');
  assert.ok(span, 'a base.swap span');
  assert.equal(span.attributes['patchbay.base.from'], 0);
  assert.equal(span.attributes['patchbay.base.to'], swap.to);
  assert.equal(span.attributes['patchbay.base.source'], 'patches');
  assert.deepEqual(span.attributes['patchbay.base.changed_initializers'], [initializer]);
  assert.equal(typeof span.attributes['patchbay.base.build_ms'], 'number');
  assert.equal(span.attributes['patchbay.base.labels'], JSON.stringify({ patches: [{ id: 'p', alpha: 0.5 }] }));
  const text = await metrics.registry.metrics();
  assert.match(text, new RegExp(`^patchbay_base_version ${swap.to}$`, 'm'));
  assert.match(text, /^patchbay_base_swaps_total\{source="patches",outcome="ok"\} 1$/m);
  assert.match(text, /^patchbay_base_build_seconds_count\{source="patches"\} 1$/m);
  assert.match(text, /^patchbay_base_versions_resident 1$/m);
});
