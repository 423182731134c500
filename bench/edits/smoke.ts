import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRuntime } from '../../src/runtime/index.ts';
import { EditService } from '../../src/edits/edit-service.ts';
import { DEFAULT_EDIT_SETTINGS } from '../../src/edits/settings.ts';

const rt = await loadRuntime({ modelDir: 'models/tiny-gpt2', device: 'cpu', maxBatch: 8, maxQueue: 64, threads: 1 });
const ask = async (p: string) => {
  const h = rt.scheduler.submit({ promptIds: rt.tokenizer.encode(p), sampling: { maxTokens: 4, temperature: 0, topP: 1, topK: 0, stop: [] } });
  const r = await h.result; return JSON.stringify(r.text) + ' v' + r.baseVersion + ' ' + JSON.stringify(r.baseLabels);
};
const dir = process.env.DIR ?? mkdtempSync(join(tmpdir(), 'edits-'));
let t = performance.now();
const svc = await EditService.create({ model: rt.model, tokenizer: rt.tokenizer, versions: rt.versions, dataDir: dir, settings: { ...DEFAULT_EDIT_SETTINGS, layers: (process.env.LAYERS ?? 'transformer.h.1.mlp.c_proj').split(','), valueSearch: { ...DEFAULT_EDIT_SETTINGS.valueSearch, weightDecay: Number(process.env.WD ?? 0.05), lr: Number(process.env.LR ?? 0.5), steps: Number(process.env.STEPS ?? 25) } }, device: 'cpu', threads: 1 });
console.log('create ms', performance.now() - t);
console.log('before', await ask('The capital of Veldor is'), await ask('Queen Amara was born in'));
t = performance.now();
const acks = await svc.submit([{ prompt: 'The capital of Veldor is', target: ' Quillon' }]);
console.log('edit ms', performance.now() - t, JSON.stringify(acks));
console.log('after', await ask('The capital of Veldor is'), await ask('Queen Amara was born in'), await ask('In Veldor, the capital is'));
await svc.rollback(0);
console.log('rolled', await ask('The capital of Veldor is'));
await svc.close(); await rt.close();
