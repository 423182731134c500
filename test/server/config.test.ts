/** Configuration: defaults, env vars, flag precedence, and startup errors that name what to fix. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { REPO_ROOT } from './helpers.ts';

test('defaults: API.md values, paths inside the repository', () => {
  const c = loadConfig([], {});
  assert.equal(c.port, 8080);
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.modelDir, path.join(REPO_ROOT, 'models', 'tiny-gpt2'));
  assert.equal(c.adapterDir, path.join(REPO_ROOT, 'adapters'));
  assert.equal(c.dataDir, path.join(REPO_ROOT, 'data'));
  assert.equal(c.device, 'cpu');
  assert.equal(c.cacheBytes, 256 * 1024 * 1024);
  assert.equal(c.maxBatch, 8);
  assert.equal(c.maxQueue, 64);
  assert.equal(c.maxBodyBytes, undefined, 'unset: derived from the context length at load (server/body-limit.ts)');
  assert.equal(c.adminToken, undefined);
  assert.equal(c.otlpEndpoint, undefined);
  assert.equal(c.serviceName, 'patchbay');
});

test('environment variables; user paths resolve against the working directory', () => {
  const c = loadConfig([], {
    PORT: '9000',
    PATCHBAY_MODEL_DIR: 'some/model',
    PATCHBAY_DEVICE: 'cuda',
    PATCHBAY_CACHE_BYTES: '64Mi',
    PATCHBAY_MAX_BATCH: '4',
    PATCHBAY_ADMIN_TOKEN: 's3cret',
    PATCHBAY_THREADS: '',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
    OTEL_SERVICE_NAME: 'patchbay-eu',
  });
  assert.equal(c.port, 9000);
  assert.equal(c.modelDir, path.resolve('some/model'));
  assert.equal(c.device, 'cuda');
  assert.equal(c.cacheBytes, 64 * 1024 * 1024);
  assert.equal(c.maxBatch, 4);
  assert.equal(c.adminToken, 's3cret');
  assert.equal(c.threads, undefined, 'an empty variable counts as unset');
  assert.equal(c.otlpEndpoint, 'http://collector:4318');
  assert.equal(c.serviceName, 'patchbay-eu');
});

test('CLI flags win over the environment', () => {
  const c = loadConfig(['--port', '7000', '--model-dir=/m', '--max-body-bytes', '2048'], { PORT: '9000' });
  assert.equal(c.port, 7000);
  assert.equal(c.modelDir, '/m');
  assert.equal(c.maxBodyBytes, 2048);
});

test('bad values fail with every problem, naming the variable or flag', () => {
  assert.throws(
    () => loadConfig(['--max-batch', '0'], { PORT: 'eighty', PATCHBAY_DEVICE: 'tpu', PATCHBAY_CACHE_BYTES: 'lots' }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const text = err.message;
      for (const name of ['PORT', 'PATCHBAY_DEVICE', 'PATCHBAY_CACHE_BYTES', '--max-batch']) assert.match(text, new RegExp(name));
      assert.equal(err.problems.length, 4);
      return true;
    },
  );
  assert.throws(() => loadConfig(['--no-such-flag'], {}), ConfigError);
});

test('PATCHBAY_DELTA_TARGETS: unset = runtime default, names, none, comma-separated regexes; bad regex named', () => {
  assert.equal(loadConfig([], {}).deltaTargets, undefined);
  for (const v of ['attention', 'all-linear', 'none'] as const) assert.equal(loadConfig([], { PATCHBAY_DELTA_TARGETS: v }).deltaTargets, v);
  assert.deepEqual(loadConfig(['--delta-targets', '.*q_proj, .*v_proj'], {}).deltaTargets, ['.*q_proj', '.*v_proj']);
  assert.throws(
    () => loadConfig([], { PATCHBAY_DELTA_TARGETS: '.*q_proj,(' }),
    (err: unknown) => err instanceof ConfigError && /PATCHBAY_DELTA_TARGETS/.test(err.message) && /"\("/.test(err.message),
  );
  assert.throws(() => loadConfig([], { PATCHBAY_DELTA_TARGETS: ' , ' }), ConfigError);
});

test('PATCHBAY_ORT_SPINNING: on by default (as ORT), off turns pool spinning off, anything else names the variable', () => {
  assert.equal(loadConfig([], {}).ortSpinning, 'on');
  assert.equal(loadConfig([], { PATCHBAY_ORT_SPINNING: 'off' }).ortSpinning, 'off');
  assert.equal(loadConfig(['--ort-spinning', 'on'], { PATCHBAY_ORT_SPINNING: 'off' }).ortSpinning, 'on');
  assert.throws(() => loadConfig([], { PATCHBAY_ORT_SPINNING: 'maybe' }), /PATCHBAY_ORT_SPINNING="maybe"/);
});

test('PATCHBAY_WIDE_SESSION / PATCHBAY_WIDE_MIN_ROWS: off and 2 by default, f32|int8 accepted, bad values name the variable', () => {
  const d = loadConfig([], {});
  assert.equal(d.wideSession, 'off');
  assert.equal(d.wideMinRows, 2);
  assert.equal(loadConfig([], { PATCHBAY_WIDE_SESSION: 'f32' }).wideSession, 'f32');
  assert.equal(loadConfig(['--wide-session', 'int8'], { PATCHBAY_WIDE_SESSION: 'f32' }).wideSession, 'int8');
  assert.equal(loadConfig([], { PATCHBAY_WIDE_MIN_ROWS: '4' }).wideMinRows, 4);
  assert.throws(() => loadConfig([], { PATCHBAY_WIDE_SESSION: 'fp16' }), /PATCHBAY_WIDE_SESSION="fp16"/);
  assert.throws(() => loadConfig([], { PATCHBAY_WIDE_MIN_ROWS: '1' }), /PATCHBAY_WIDE_MIN_ROWS="1"/);
});

test('PATCHBAY_NBITS_ACCURACY: unset keeps the model file, 0-4 accepted, anything else names the variable', () => {
  assert.equal(loadConfig([], {}).nbitsAccuracy, undefined);
  assert.equal(loadConfig([], { PATCHBAY_NBITS_ACCURACY: '4' }).nbitsAccuracy, 4);
  assert.equal(loadConfig(['--nbits-accuracy', '0'], { PATCHBAY_NBITS_ACCURACY: '4' }).nbitsAccuracy, 0);
  assert.throws(() => loadConfig([], { PATCHBAY_NBITS_ACCURACY: 'fast' }), /PATCHBAY_NBITS_ACCURACY="fast"/);
});

test('PATCHBAY_KV_BLOCK: unset = the runtime default, a positive integer accepted, anything else names the variable', () => {
  assert.equal(loadConfig([], {}).kvBlock, undefined);
  assert.equal(loadConfig([], { PATCHBAY_KV_BLOCK: '64' }).kvBlock, 64);
  assert.equal(loadConfig(['--kv-block', '128'], {}).kvBlock, 128);
  for (const bad of ['0', '-3', '1.5', 'lots']) {
    assert.throws(() => loadConfig([], { PATCHBAY_KV_BLOCK: bad }), (err: unknown) => err instanceof ConfigError && /PATCHBAY_KV_BLOCK/.test(err.message));
  }
});

test('edit μ and anchor subjects: unset leaves the model statistics\' defaults; set (even to none) overrides them', () => {
  const unset = loadConfig([], {});
  assert.equal(unset.editMu, undefined);
  assert.equal(unset.editAnchors, undefined);
  const set = loadConfig(['--edit-anchors', 'Verona, Mantua'], { PATCHBAY_EDIT_MU: '2.5' });
  assert.equal(set.editMu, 2.5);
  assert.deepEqual(set.editAnchors, ['Verona', 'Mantua']);
  assert.deepEqual(loadConfig([], { PATCHBAY_EDIT_ANCHORS: 'none' }).editAnchors, []);
  assert.throws(() => loadConfig([], { PATCHBAY_EDIT_MU: '-1' }), ConfigError);
});

test('PATCHBAY_EDIT_CONTEXTS: plain by default, plain|chat|plain+chat accepted (flag too), anything else names the variable', () => {
  assert.equal(loadConfig([], {}).editContexts, 'plain');
  for (const v of ['plain', 'chat', 'plain+chat'] as const) assert.equal(loadConfig([], { PATCHBAY_EDIT_CONTEXTS: v }).editContexts, v);
  assert.equal(loadConfig(['--edit-contexts', 'chat'], { PATCHBAY_EDIT_CONTEXTS: 'plain' }).editContexts, 'chat');
  for (const bad of ['Chat', 'chat+plain', 'template']) {
    assert.throws(() => loadConfig([], { PATCHBAY_EDIT_CONTEXTS: bad }), (err: unknown) => err instanceof ConfigError && /PATCHBAY_EDIT_CONTEXTS/.test(err.message));
  }
});
