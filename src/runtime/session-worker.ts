/**
 * The worker side of session-host.ts: owns ORT sessions, builds them and runs them off the JS thread that
 * serves HTTP and schedules. onnxruntime-node creates a session and runs it synchronously on the calling
 * thread, so doing both here is what keeps the serving thread free while a new base version builds.
 */
import { parentPort } from 'node:worker_threads';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { createSession } from './session.ts';
import { composeWeights } from './versions/compose.ts';
import { errorToWire, fromWire, toWire, type Reply, type Request, type WireModel } from './session-wire.ts';

const port = parentPort;
if (!port) throw new Error('session-worker.ts runs as a worker thread (session-host.ts starts it)');
const sessions = new Map<number, InferenceSession>();

/** The model bytes ORT loads: the worker's own copy of the shared pristine bytes with the patches written in. */
function modelBytes(model: WireModel): Uint8Array {
  if ('bytes' in model) return model.bytes;
  const out = new Uint8Array(model.shared.byteLength);
  out.set(model.shared);
  for (const p of model.patches) out.set(new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength), p.offset);
  return out;
}

async function handle(req: Request): Promise<{ reply: Reply; transfer: ArrayBuffer[] }> {
  switch (req.op) {
    case 'compose': {
      // Shared memory in, shared memory out: nothing is copied across the hop.
      const composed = composeWeights(req.pristine, new Map(req.slots), req.parts);
      return { reply: { id: req.id, ok: true, composed: [...composed] }, transfer: [] };
    }
    case 'create': {
      const session = await createSession(modelBytes(req.model), req.options);
      sessions.set(req.sid, session);
      return { reply: { id: req.id, ok: true, names: { inputs: [...session.inputNames], outputs: [...session.outputNames] } }, transfer: [] };
    }
    case 'run': {
      const session = sessions.get(req.sid);
      if (!session) throw new Error(`session ${req.sid} was released`);
      const feeds: Record<string, Tensor> = {};
      for (const w of req.feeds) feeds[w.name] = fromWire(w);
      const out = await session.run(feeds, req.fetches);
      const outputs = [];
      const transfer: ArrayBuffer[] = [];
      // ORT's output tensors are this thread's alone: move their buffers (copying only a view of a larger one).
      for (const name of req.fetches) {
        const { wire, transfer: buffer } = toWire(name, out[name]!, true);
        outputs.push(wire);
        transfer.push(buffer);
      }
      return { reply: { id: req.id, ok: true, outputs }, transfer };
    }
    case 'release': {
      await sessions.get(req.sid)?.release();
      sessions.delete(req.sid);
      return { reply: { id: req.id, ok: true }, transfer: [] };
    }
  }
}

port.on('message', (req: Request) => {
  handle(req).then(
    ({ reply, transfer }) => port.postMessage(reply, transfer),
    (error: unknown) => port.postMessage({ id: req.id, ok: false, error: errorToWire(error) } satisfies Reply),
  );
});
