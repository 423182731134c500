/**
 * ORT sessions hosted by a worker thread (session-worker.ts), with the surface the engine uses
 * (`ModelSession`: inputNames, outputNames, run, release).
 *
 * Why: onnxruntime-node 1.30 builds a session (`loadModel`) and runs it synchronously on the calling
 * thread. On the serving thread a base-version build therefore stalls every running sequence (and HTTP)
 * for the whole build — seconds on SmolLM2. A version hosted here builds on its own thread while the
 * running version keeps stepping; its `run` also leaves the serving thread free.
 *
 * The hop: feeds are copied once into buffers that are then moved to the worker (the scheduler keeps its
 * feeds — the batch cache, factor tensors — across steps, so they cannot be moved themselves); outputs are
 * moved back without a copy. Cost per step: bench/patches.ts, README "Base versions".
 */
import { Worker } from 'node:worker_threads';
import type { Tensor } from 'onnxruntime-node';
import type { ModelSession, SessionOptions } from './session.ts';
import type { ComposePart, ComposeSlot } from './versions/compose.ts';
import { errorFromWire, fromWire, toWire, type Reply, type Request, type WireModel, type WireTensor } from './session-wire.ts';

/**
 * Starts the worker module `name` (without extension) next to `base` (the caller's import.meta.url): as .ts
 * under tsx (tests, `npm start`), as .js from the production build. Loader hooks registered on the main
 * thread do not reach workers in Node 20, and `--import tsx` in a worker's execArgv does not either (tried):
 * from source, a tiny bootstrap registers tsx in the worker, then imports the .ts worker.
 */
export function startModuleWorker(base: string, name: string): Worker {
  const fromSource = base.endsWith('.ts');
  const url = new URL(`./${name}${fromSource ? '.ts' : '.js'}`, base);
  if (!fromSource) return new Worker(url);
  const api = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return new Worker(`import(${api}).then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); })`, { eval: true });
}

type Pending = { resolve: (r: Extract<Reply, { ok: true }>) => void; reject: (e: Error) => void };
type Body = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;

/** One worker thread holding one or more sessions (a base version's: the delta graph and the plain one). */
export class SessionHost {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private nextSid = 1;
  private live = 0;
  private dead: Error | undefined;

  constructor() {
    this.worker = startModuleWorker(import.meta.url, 'session-worker');
    this.worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.worker.unref();
      if (reply.ok) p.resolve(reply);
      else p.reject(errorFromWire(reply.error));
    });
    const fail = (error: Error) => {
      this.dead ??= error;
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`session worker exited (code ${code})`)));
    // Idle workers do not hold the process open; a request in flight does (see call()). After the listeners:
    // attaching a 'message' listener refs the worker again.
    this.worker.unref();
  }

  /**
   * Builds a session in the worker. `model.bytes` is moved into the worker (the caller must not use it
   * afterwards); `model.shared` must be backed by a SharedArrayBuffer and is only read.
   */
  async create(model: WireModel, options: SessionOptions): Promise<ModelSession> {
    const sid = this.nextSid++;
    const transfer = 'bytes' in model ? [model.bytes.buffer as ArrayBuffer] : [];
    const reply = await this.call({ op: 'create', sid, model, options }, transfer);
    this.live++;
    return new HostedSession(this, sid, reply.names!.inputs, reply.names!.outputs);
  }

  /**
   * Runs composeWeights (versions/compose.ts) in the worker: `pristine` is shared memory; the result is too.
   * The parts' tensors are copied to the worker once (structured clone) unless they are shared already.
   */
  async compose(pristine: Uint8Array, slots: ReadonlyMap<string, ComposeSlot>, parts: ComposePart[]): Promise<Map<string, Float32Array>> {
    const reply = await this.call({ op: 'compose', pristine, slots: [...slots], parts });
    return new Map(reply.composed);
  }

  /** @internal */
  call(body: Body, transfer: ArrayBuffer[] = []): Promise<Extract<Reply, { ok: true }>> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ ...body, id } as Request, transfer);
    });
  }

  /** @internal A session was released: the worker ends with its last one. */
  async released(): Promise<void> {
    if (--this.live <= 0) await this.close();
  }

  /** Ends the worker (and every session in it). */
  async close(): Promise<void> {
    this.dead ??= new Error('session host closed');
    await this.worker.terminate();
  }
}

class HostedSession implements ModelSession {
  private released: Promise<void> | undefined;

  constructor(
    private readonly host: SessionHost,
    private readonly sid: number,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  async run(feeds: Record<string, Tensor>, fetches: string[]): Promise<Record<string, Tensor>> {
    const wires: WireTensor[] = [];
    const transfer: ArrayBuffer[] = [];
    for (const [name, tensor] of Object.entries(feeds)) {
      const { wire, transfer: buffer } = toWire(name, tensor, false);
      wires.push(wire);
      transfer.push(buffer);
    }
    const reply = await this.host.call({ op: 'run', sid: this.sid, feeds: wires, fetches }, transfer);
    const out: Record<string, Tensor> = {};
    for (const w of reply.outputs!) out[w.name] = fromWire(w);
    return out;
  }

  release(): Promise<void> {
    this.released ??= this.host.call({ op: 'release', sid: this.sid }).then(
      () => this.host.released(),
      () => this.host.released(),
    );
    return this.released;
  }
}
