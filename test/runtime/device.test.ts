import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { loadRuntime } from '../../src/runtime/index.ts';
import { PatchbayError } from '../../src/errors.ts';

// The CUDA provider ships only with the opt-in install (README, "GPU (CUDA)"); where it is absent,
// PATCHBAY_DEVICE=cuda must fail at load with an error that says what to do, not with ORT's bare message.
const ortDir = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
const cudaProvider = join(ortDir, 'bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so');

test('device cuda without the CUDA provider fails with cuda_unavailable and the fix', { skip: existsSync(cudaProvider) && 'CUDA provider installed' }, async () => {
  await assert.rejects(
    loadRuntime({ modelDir: 'models/tiny-llama', device: 'cuda', maxBatch: 1, maxQueue: 1 }),
    (e: unknown) => e instanceof PatchbayError && e.code === 'cuda_unavailable' && /README, "GPU \(CUDA\)"/.test(e.message),
  );
});
