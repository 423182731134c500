import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseImportArgs } from '../../src/import/cli.ts';
import { IMPLEMENTED_WEIGHTS_MODES, WEIGHTS_MODES } from '../../src/import/emit-linear.ts';
import { GGUF_FIXTURE } from './fixture.ts';

test('model:import argument parsing: clear messages for bad arguments', () => {
  assert.deepEqual(parseImportArgs(['m.gguf', '--out', 'models/m']), { gguf: 'm.gguf', out: 'models/m', weights: 'f32' });
  assert.throws(() => parseImportArgs([]), /expected exactly one GGUF file, got 0/);
  assert.throws(() => parseImportArgs(['a.gguf', 'b.gguf', '--out', 'x']), /expected exactly one GGUF file, got 2/);
  assert.throws(() => parseImportArgs(['m.gguf']), /--out <directory> is required/);
  assert.throws(() => parseImportArgs(['m.gguf', '--out', 'x', '--weights', 'q3']), /--weights must be one of f32, q4, q8, got "q3"/);
  assert.throws(() => parseImportArgs(['m.gguf', '--out', 'x', '--bogus']), /Unknown option '--bogus'/);
  assert.equal(parseImportArgs(['m.gguf', '--out', 'x', '--attention', 'concat']).attention, 'concat');
  // gqa graphs exist for bench:kv-context only; the runtime does not serve them.
  assert.throws(() => parseImportArgs(['m.gguf', '--out', 'x', '--attention', 'gqa']), /--attention must be one of append, concat, got "gqa"/);
  for (const mode of WEIGHTS_MODES.filter((m) => !IMPLEMENTED_WEIGHTS_MODES.includes(m))) {
    assert.throws(() => parseImportArgs(['m.gguf', '--out', 'x', '--weights', mode]), new RegExp(`--weights ${mode} is not yet supported`));
  }
});

test('model:import CLI: exit codes and messages on a real run, a bad file and bad arguments', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'patchbay-gguf-cli-'));
  try {
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/import/cli.ts', ...args], { encoding: 'utf8' });
    const good = run(GGUF_FIXTURE, '--out', join(dir, 'tiny'));
    assert.equal(good.status, 0, good.stderr);
    assert.match(good.stdout, /imported .*llama, 2 layers, vocab 4096/);
    assert.ok(existsSync(join(dir, 'tiny', 'onnx', 'model.onnx')));
    await writeFile(join(dir, 'bad.gguf'), 'definitely not gguf');
    const bad = run(join(dir, 'bad.gguf'), '--out', join(dir, 'bad'));
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /model:import: invalid GGUF .*bad\.gguf: bad magic/);
    const missing = run(join(dir, 'nope.gguf'), '--out', join(dir, 'nope'));
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cannot open/);
    const usage = run('--out', join(dir, 'x'));
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /usage: npm run model:import/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
