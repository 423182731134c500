/**
 * The worker side of search-host.ts: one LocalSearch (key probe session + upper stack) off the serving
 * thread. A prompt edit's probe runs (onnxruntime-node runs a session synchronously on the calling thread)
 * and its value search (seconds of float64 arithmetic on SmolLM2) happen here, so the thread that steps
 * the batch and answers HTTP never waits for them. Same code as on the serving thread (LocalSearch,
 * EditComputer), so the numbers are the same bits.
 */
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { HfTokenizer } from '../runtime/tokenizer.ts';
import { EditState } from './edit-state.ts';
import { LocalSearch } from './local-search.ts';
import { RlsLayer } from './rls-layer.ts';
import { searchErrorToWire, type SearchReply, type SearchRequest, type WireLayerState } from './search-wire.ts';

const port = parentPort;
if (!port) throw new Error('search-worker.ts runs as a worker thread (search-host.ts starts it)');
let search: LocalSearch | undefined;

/** The search's view of the edit state: W_t per layer (C is never read by a search; empty here). */
function stateOf(layers: readonly WireLayerState[]): EditState {
  return new EditState(layers.map((l) => new RlsLayer(l.name, l.initializer, l.dK, l.dV, l.w, new Float64Array(0))));
}

function ready(): LocalSearch {
  if (!search) throw new Error('edit search worker: no init before use');
  return search;
}

async function handle(req: SearchRequest): Promise<{ reply: SearchReply; transfer: ArrayBuffer[] }> {
  switch (req.op) {
    case 'init': {
      // Before the probe session exists, so ORT's pool threads (created by this thread) inherit it. Linux only:
      // there nice is per thread; elsewhere setpriority(0) would lower the whole server.
      if (req.init.nice && process.platform === 'linux') setPriority(req.init.nice);
      const tokenizer = await HfTokenizer.load(req.init.model.dir);
      search = await LocalSearch.create({ ...req.init, tokenizer });
      return { reply: { id: req.id, ok: true, layers: [...search.layers], promptEdits: search.promptEdits }, transfer: [] };
    }
    case 'rebase': {
      await ready().rebase({ baked: new Map(req.baked), offsets: new Map(req.offsets) });
      return { reply: { id: req.id, ok: true }, transfer: [] };
    }
    case 'compute': {
      const computed = await ready().compute(req.edit, stateOf(req.layers), () => port!.postMessage({ id: req.id, progress: 'search' } satisfies SearchReply));
      const transfer = computed.parts.flatMap((p) => [p.keys.buffer as ArrayBuffer, p.values.buffer as ArrayBuffer]);
      return { reply: { id: req.id, ok: true, computed }, transfer: [...new Set(transfer)] };
    }
    case 'inspect': {
      const r = await ready().inspect(req.edit, stateOf(req.layers));
      return { reply: { id: req.id, ok: true, inspected: { keys: [...r.keys], grad: r.grad, u: r.u } }, transfer: [] };
    }
  }
}

// One request at a time, in arrival order: a compute posted right behind init (or a rebase) runs after it.
let chain: Promise<void> = Promise.resolve();
port.on('message', (req: SearchRequest) => {
  chain = chain.then(() =>
    handle(req).then(
      ({ reply, transfer }) => port.postMessage(reply, transfer),
      (error: unknown) => port.postMessage({ id: req.id, ok: false, error: searchErrorToWire(error) } satisfies SearchReply),
    ),
  );
});
