/**
 * The `adapters` scenario needs more distinct adapter ids than the cache holds: copies of the shipped demo
 * adapters under new ids in a temporary adapter directory (real files, so the registry reads, validates and
 * compiles each one as it would a tenant's).
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SHIPPED = join(import.meta.dirname, '..', '..', 'adapters');

export interface AdapterCopies {
  dir: string;
  ids: string[];
  remove(): Promise<void>;
}

export async function copyAdapters(spec: { of: readonly string[]; count: number; prefix: string }): Promise<AdapterCopies> {
  const dir = await mkdtemp(join(tmpdir(), 'patchbay-load-'));
  const ids: string[] = [];
  for (let i = 0; i < spec.count; i++) {
    const id = `${spec.prefix}${i}`;
    await cp(join(SHIPPED, spec.of[i % spec.of.length]!), join(dir, id), { recursive: true });
    ids.push(id);
  }
  return { dir, ids, remove: () => rm(dir, { recursive: true, force: true }) };
}
