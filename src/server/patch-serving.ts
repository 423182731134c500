/**
 * Builds the PatchManager the server uses: its target is the runtime's base versions, and every patch
 * directory in the adapter directory (one holding patch.safetensors) is registered at start — validated,
 * listed by GET /admin/patches, applied by nobody until an operator says so. A patch that fails validation
 * is logged and skipped; it does not stop the server.
 */
import { readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { PatchManager } from '../patches/patch-manager.ts';
import { confineAdapterDir } from '../registry/path-confinement.ts';
import { isPatchDir } from '../patches/rws-patch.ts';
import type { BaseVersions } from '../runtime/versions/base-versions.ts';

export interface PatchServingOptions {
  versions: BaseVersions;
  baseNames: readonly string[];
  deltaLayers: readonly { name: string }[];
  adapterDir?: string | undefined;
  /** PATCHBAY_ADAPTER_ROOTS: where admin-registered patch paths must lie (default: the adapter dir). */
  adapterRoots?: readonly string[] | undefined;
  logger: Logger;
}

export async function createPatchManager(opts: PatchServingOptions): Promise<PatchManager> {
  const { versions } = opts;
  const manager = new PatchManager({
    versions,
    target: {
      baseNames: opts.baseNames,
      linearWeight: (m) => versions.linearWeight(m),
      pristine: (i) => versions.pristine(i),
      consumers: (i) => versions.consumers(i),
    },
    deltaLayers: new Set(opts.deltaLayers.map((l) => l.name)),
    adminRoots: opts.adapterRoots ?? (opts.adapterDir ? [opts.adapterDir] : []),
  });
  const log = opts.logger.child({ component: 'patches' });
  const dir = opts.adapterDir;
  if (dir && existsSync(dir)) {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      if (!isPatchDir(path)) continue;
      try {
        // As for adapters in this directory: nothing in it may link outside it.
        await confineAdapterDir(path, { roots: [dir], setting: 'PATCHBAY_ADAPTER_DIR', showPaths: true }, 'path');
        const p = await manager.register(name, path);
        log.info({ patch: p.id, corruption: p.meta.corruption, layers: p.layers.length, bytes: p.bytes }, 'patch registered (not applied)');
      } catch (err) {
        log.warn({ patch: name, err }, 'patch skipped: it does not fit this base or links outside the adapter directory');
      }
    }
  }
  return manager;
}
