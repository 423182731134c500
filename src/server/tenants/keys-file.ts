/**
 * The tenant keys file (`PATCHBAY_KEYS_FILE`): who may call the public routes, with what, and how much.
 * Keys are stored hashed (`sha256:<hex>` of the raw key), so the file grants nothing if it leaks; the raw
 * key only ever travels in `Authorization: Bearer <key>`. Ids are exact or glob patterns (`*`, `?`).
 *
 *     {"tenants": [{"name": "acme", "keys": ["sha256:…"], "adapters": ["acme-*"], "merges": [],
 *       "generators": [], "patches": [], "base": true,
 *       "limits": {"max_in_flight": 4, "tokens_per_minute": 20000, "combinations_per_minute": 10}}]}
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

const idPattern = z.string().min(1).max(256);
const positive = z.number().int().positive();

const TenantSchema = z.strictObject({
  name: z.string().regex(/^[\w.-]{1,64}$/, 'tenant names are 1-64 letters, digits, _ . - (they become metric labels)'),
  keys: z.array(z.string().regex(/^sha256:[0-9a-f]{64}$/, 'keys are "sha256:" + the 64 hex digits of the key\'s SHA-256')).min(1),
  /** May the tenant use the base model alone (and as the root of its adapters)? */
  base: z.boolean().default(true),
  adapters: z.array(idPattern).default([]),
  merges: z.array(idPattern).default([]),
  generators: z.array(idPattern).default([]),
  patches: z.array(idPattern).default([]),
  limits: z
    .strictObject({
      max_in_flight: positive.optional(),
      tokens_per_minute: positive.optional(),
      combinations_per_minute: positive.optional(),
    })
    .default({}),
});

export const KeysFileSchema = z.strictObject({ tenants: z.array(TenantSchema) });

export interface TenantLimits {
  maxInFlight?: number;
  tokensPerMinute?: number;
  combinationsPerMinute?: number;
}

/** One tenant as the server uses it: the name (metrics, logs), what it may use, its limits. */
export interface Tenant {
  readonly name: string;
  readonly base: boolean;
  /** An adapter, merge or generator id (they share the `model` namespace). */
  allows(id: string): boolean;
  allowsPatch(id: string): boolean;
  readonly limits: TenantLimits;
}

/** sha256 hex of a raw key, as written in the keys file after `sha256:`. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** `*` = any run of characters, `?` = one; everything else literal; the whole id must match. */
export function globMatcher(patterns: readonly string[]): (id: string) => boolean {
  if (patterns.length === 0) return () => false;
  const source = patterns
    .map((p) => p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.'))
    .join('|');
  const re = new RegExp(`^(?:${source})$`, 's');
  return (id) => re.test(id);
}

export interface ParsedKeys {
  /** Key hash (hex) → tenant. */
  byHash: Map<string, Tenant>;
  tenants: Tenant[];
}

/** Parses and validates the file's text; throws an Error naming the first problem. */
export function parseKeysFile(text: string, source = 'keys file'): ParsedKeys {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = KeysFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${source}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const byHash = new Map<string, Tenant>();
  const names = new Set<string>();
  const tenants: Tenant[] = [];
  for (const t of parsed.data.tenants) {
    if (names.has(t.name)) throw new Error(`${source}: tenant name "${t.name}" appears twice`);
    names.add(t.name);
    const models = globMatcher([...t.adapters, ...t.merges, ...t.generators]);
    const patches = globMatcher(t.patches);
    const tenant: Tenant = {
      name: t.name,
      base: t.base,
      allows: models,
      allowsPatch: patches,
      limits: {
        ...(t.limits.max_in_flight ? { maxInFlight: t.limits.max_in_flight } : {}),
        ...(t.limits.tokens_per_minute ? { tokensPerMinute: t.limits.tokens_per_minute } : {}),
        ...(t.limits.combinations_per_minute ? { combinationsPerMinute: t.limits.combinations_per_minute } : {}),
      },
    };
    tenants.push(tenant);
    for (const key of t.keys) {
      const hex = key.slice('sha256:'.length);
      if (byHash.has(hex)) throw new Error(`${source}: a key is listed twice (tenants "${byHash.get(hex)!.name}" and "${t.name}")`);
      byHash.set(hex, tenant);
    }
  }
  return { byHash, tenants };
}
