/**
 * Bearer-token guard for the admin surface (`/admin/*` and the vLLM load/unload routes). Without a
 * configured token those routes are switched off (403) rather than open: changing what a shared server
 * serves must be an explicit operator decision. Refusals are thrown, so the one onError shapes them.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { PatchbayError } from '../errors.ts';
import type { AppEnv } from './env.ts';

/** Paths the guard covers, in hono's `use` syntax. */
export const ADMIN_PATHS = ['/admin/*', '/v1/load_lora_adapter', '/v1/unload_lora_adapter'] as const;

/** Hashing first gives equal-length inputs, so the comparison's time reveals neither content nor length. */
const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export function adminAuth(token: string | undefined): MiddlewareHandler<AppEnv> {
  const expected = token === undefined ? undefined : digest(token);
  return async function requireAdminToken(c, next) {
    if (!expected) {
      throw new PatchbayError({
        status: 403,
        code: 'admin_disabled',
        message: 'Admin routes are disabled on this server: set PATCHBAY_ADMIN_TOKEN to enable them.',
      });
    }
    const header = c.req.header('authorization');
    const m = header ? /^Bearer[ \t]+(\S.*)$/i.exec(header.trim()) : null;
    if (!m || !timingSafeEqual(digest(m[1]!), expected)) {
      // Set before throwing: hono keeps headers prepared on the context when onError builds the response.
      c.header('WWW-Authenticate', 'Bearer realm="patchbay-admin"');
      throw new PatchbayError({
        status: 401,
        code: m ? 'invalid_admin_token' : 'missing_authorization',
        message: m
          ? 'The bearer token is not valid for admin routes.'
          : "Admin routes need an 'Authorization: Bearer <PATCHBAY_ADMIN_TOKEN>' header.",
      });
    }
    await next();
  };
}
