/**
 * Knowledge-edit administration (API.md, "Edits"): `POST /admin/edits` (answers once the edits are durable
 * and visible), `POST /admin/edits/stream` (NDJSON in, NDJSON progress out; a malformed line is answered
 * with its line number and skipped), `GET /admin/edits`, `POST /admin/edits/rollback {seq}`.
 * Authentication is the admin guard in auth.ts. A rejected edit changes nothing (the store validates before
 * it logs).
 */
import type { Context, Hono } from 'hono';
import { stream as honoStream } from 'hono/streaming';
import { z } from 'zod';
import type { EditAck, EditEvent, EditService } from '../../edits/edit-service.ts';
import type { LayerEdit } from '../../edits/edit-state.ts';
import { EditError } from '../../edits/errors.ts';
import { PatchbayError } from '../../errors.ts';
import { BaseVersionError } from '../../runtime/index.ts';
import { parseJsonBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { fromZodError } from '../errors.ts';
import type { ServingState } from '../state.ts';

const PromptItem = z.strictObject({ prompt: z.string(), target: z.string(), subject: z.string().optional() });
const RawItem = z.strictObject({
  layer: z.string().min(1),
  keys: z.array(z.array(z.number())).min(1),
  values: z.array(z.array(z.number())).min(1),
});
const EditItem = z.union([PromptItem, RawItem]);
type EditItemT = z.infer<typeof EditItem>;
const EditsBody = z.object({ edits: z.array(EditItem).min(1).max(64) });
const RollbackBody = z.object({ seq: z.number().int().min(0) });

const STATUS: Record<EditError['code'], number> = {
  invalid_edit: 400,
  unknown_layer: 400,
  shape_mismatch: 400,
  non_finite: 400,
  target_empty: 400,
  subject_not_found: 400,
  too_long: 400,
  unsupported_model: 400,
  unknown_seq: 404,
  log_mismatch: 500,
  edits_unavailable: 503,
  search_failed: 500,
};

export function editHttpError(err: unknown): unknown {
  if (err instanceof EditError) return new PatchbayError({ status: STATUS[err.code], code: err.code, message: err.message, param: err.param ?? null, cause: err });
  if (err instanceof BaseVersionError) {
    // The edit is durable and applied; only its publication failed (the next edit or a restart publishes it).
    return new PatchbayError({ status: 500, code: `publish_${err.code}`, message: `the edit is durable but could not be published: ${err.message}`, cause: err });
  }
  return err;
}

function serviceOf(state: ServingState): EditService {
  const edits = state.loaded().edits;
  if (!edits) {
    throw new PatchbayError({ status: 503, code: 'edits_unavailable', message: 'Knowledge edits are not available on this server (no key statistics for the model, or PATCHBAY_EDITS=off).' });
  }
  return edits;
}

/** A raw item as one layer part: keys u × d_k, values u × d_v (the store checks the sizes). */
function rawPart(item: z.infer<typeof RawItem>): LayerEdit {
  const u = item.keys.length;
  if (item.values.length !== u) throw new EditError('shape_mismatch', `keys has ${u} rows but values has ${item.values.length}`, 'values');
  return { layer: item.layer, u, keys: Float64Array.from(item.keys.flat()), values: Float64Array.from(item.values.flat()) };
}

function ackView(a: EditAck) {
  return {
    seq: a.seq,
    layers: a.parts,
    ...(a.positions ? { key_positions: a.positions } : {}),
    ...(a.search ? { value_search: a.search } : {}),
    ms: a.ms,
  };
}

async function commitItem(svc: EditService, item: EditItemT, onEvent?: (e: EditEvent) => void): Promise<EditAck[]> {
  return 'layer' in item ? [await svc.commitRaw([rawPart(item)], onEvent)] : svc.commitPrompts([item], onEvent);
}

async function guarded<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw editHttpError(err);
  }
}

export function adminEditRoutes(app: Hono<AppEnv>, state: ServingState): void {
  app.get('/admin/edits', function listEdits(c) {
    return c.json({ object: 'edits', ...serviceOf(state).status() });
  });

  app.post('/admin/edits', async function postEdits(c) {
    const svc = serviceOf(state);
    const body = await parseJsonBody(c, EditsBody);
    const t0 = performance.now();
    const acks = await guarded(async () => {
      // Prompt items are checked up front as a batch so a bad one rejects the request before anything commits.
      const prompts = body.edits.filter((e): e is z.infer<typeof PromptItem> => !('layer' in e));
      if (prompts.length === body.edits.length) return svc.commitPrompts(prompts);
      const out: EditAck[] = [];
      for (const item of body.edits) out.push(...(await commitItem(svc, item)));
      return out;
    });
    await guarded(() => svc.visible());
    return c.json({ object: 'edit.ack', seq: acks.at(-1)!.seq, edits: acks.map(ackView), visible_ms: performance.now() - t0 });
  });

  app.post('/admin/edits/rollback', async function rollback(c) {
    const svc = serviceOf(state);
    const { seq } = await parseJsonBody(c, RollbackBody);
    const out = await guarded(() => svc.rollback(seq));
    return c.json({ object: 'edit.rollback', seq: out.seq });
  });

  app.post('/admin/edits/stream', function streamEdits(c) {
    const svc = serviceOf(state);
    c.header('content-type', 'application/x-ndjson');
    return honoStream(c, async function writeProgress(out) {
      const write = (obj: object) => out.write(`${JSON.stringify(obj)}\n`);
      let accepted = 0;
      let rejected = 0;
      let chain = Promise.resolve();
      const onEvent = (e: EditEvent) => {
        if (e.kind === 'visible') chain = chain.then(() => write({ visible: { edit_seq: e.editSeq, base_version: e.baseVersion, ms: e.ms } }).then(() => undefined));
      };
      let line = 0;
      for await (const text of lines(c, MAX_STREAM_LINE_BYTES)) {
        line++;
        if (text === undefined) {
          // A line over the limit: answered with its number; the rest of the body is not read.
          rejected++;
          await write({ line, error: { message: `line ${line}: longer than ${MAX_STREAM_LINE_BYTES} bytes; the stream stops here`, type: 'invalid_request_error', param: null, code: 'request_too_large' } });
          break;
        }
        if (text.trim() === '') continue;
        const t0 = performance.now();
        let item: EditItemT;
        try {
          item = EditItem.parse(JSON.parse(text), { reportInput: true });
        } catch (err) {
          rejected++;
          const e = err instanceof z.ZodError ? fromZodError(err) : new PatchbayError({ status: 400, code: 'invalid_json', message: 'not valid JSON' });
          await write({ line, error: { ...e.toBody().error, message: `line ${line}: ${e.message}` } });
          continue;
        }
        try {
          const acks = await commitItem(svc, item);
          accepted += acks.length;
          for (const a of acks) await write({ line, ...ackView(a), status: 'durable', ack_ms: performance.now() - t0 });
          // Visibility follows asynchronously; edits arriving meanwhile coalesce into the next version.
          void svc.visible(onEvent).catch(() => undefined);
        } catch (err) {
          rejected++;
          const e = editHttpError(err);
          const body = e instanceof PatchbayError ? e.toBody().error : { message: 'internal error', type: 'server_error', param: null, code: 'internal_error' };
          await write({ line, error: { ...body, message: `line ${line}: ${body.message}` } });
        }
      }
      await svc.visible(onEvent).catch(() => undefined);
      await chain;
      await write({ done: true, accepted, rejected, seq: svc.seq });
    });
  });
}

/**
 * One stream line's limit. The route reads its body as it arrives (the global body limit is skipped for it,
 * body-limit.ts STREAMED_BODY_PATHS), so the limit holds per line: a raw edit of u keys is about
 * u·(d_k + d_v)·20 bytes of JSON.
 */
export const MAX_STREAM_LINE_BYTES = 8 << 20;

/**
 * The request body's lines as they arrive (UTF-8, '\n' separated, a trailing '\r' dropped); `undefined` for
 * a line longer than `maxLine` characters, after which nothing more is read.
 */
async function* lines(c: Context<AppEnv>, maxLine: number): AsyncGenerator<string | undefined> {
  const body = c.req.raw.body;
  if (!body) return;
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      if (nl > maxLine) return yield undefined;
      yield buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
    }
    if (buf.length > maxLine) return yield undefined;
  }
  buf += decoder.decode();
  if (buf.length > 0) yield buf.replace(/\r$/, '');
}
