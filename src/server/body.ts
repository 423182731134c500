/** Reads a JSON request body and validates it; malformed JSON and schema violations both become 400s. */
import type { Context } from 'hono';
import type { z } from 'zod';
import { PatchbayError } from '../errors.ts';
import type { AppEnv } from './env.ts';

export async function parseJsonBody<S extends z.ZodType>(c: Context<AppEnv>, schema: S): Promise<z.output<S>> {
  let body: unknown;
  try {
    body = JSON.parse(await c.req.text());
  } catch (cause) {
    throw new PatchbayError({
      status: 400,
      code: 'invalid_json',
      message: 'The request body is not valid JSON.',
      cause,
    });
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new PatchbayError({ status: 400, code: 'invalid_json', message: 'The request body must be a JSON object.' });
  }
  // reportInput lets the error handler tell a missing field from a wrong one; thrown ZodErrors are
  // turned into 400s naming the field by the one error handler.
  return schema.parse(body, { reportInput: true });
}
