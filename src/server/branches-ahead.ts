/**
 * The reduced-branch session (runtime/branch-sessions.ts) of the adapters a server finds at start, built
 * before it reports ready. Without it the first request for an adapter ran its prefill and first
 * BRANCH_SESSION_AFTER_STEPS steps on the full delta graph and then waited in the middle of its tokens while
 * ORT built the session synchronously (SmolLM2 q4 + lora-smollm2-bard: 5.8 s of an 11 s request under
 * load; bench/lora-served.ts "first adapter request").
 *
 * One session on the union of their layers covers every batch of them (alone or mixed); it is built only
 * when that union is smaller than the full set of branches (otherwise it would be the full graph again).
 * An adapter registered through the admin API later gets its own, built before the call answers, while the
 * bound (PATCHBAY_BRANCH_SESSIONS) allows: the build stalls serving once either way (ORT builds
 * synchronously), better during the admin call than in the middle of a request's tokens. Base versions
 * published later still build on use.
 */
import type { Logger } from 'pino';
import { checkAdapter, type AttachTarget } from '../adapters/index.ts';
import type { AdapterRegistry } from '../registry/adapter-registry.ts';
import type { ServingRuntime } from './contract.ts';

/**
 * Builds the start-up union's session, then hooks later admin registrations (AdapterRegistry.onRegistered).
 * The layers come from each adapter's header (AdapterKind.check, as the start-up scan reads it): nothing is
 * loaded, so the registry's cache and load metrics are as without this step.
 */
export async function prepareAdapterBranches(registry: AdapterRegistry, target: AttachTarget, runtime: ServingRuntime, log: Logger): Promise<void> {
  if (!runtime.prepareBranches) return;
  const entries = registry.list().filter((e) => e.source !== 'merge');
  const branches = target.layers.size;
  const union = new Set<string>();
  for (const e of entries) {
    try {
      for (const layer of await checkAdapter(e.path, target, e.id)) union.add(layer);
    } catch {
      // A damaged adapter fails where it is used, with its 400.
    }
  }
  await prepare(runtime, union, branches, log, { adapters: entries.length });
  registry.onRegistered = (entry, layers) => prepare(runtime, new Set(layers), branches, log, { adapter: entry.id });
}

async function prepare(runtime: ServingRuntime, layers: ReadonlySet<string>, branches: number, log: Logger, about: object): Promise<void> {
  if (!runtime.prepareBranches || layers.size === 0 || layers.size >= branches) return;
  const started = performance.now();
  try {
    const ready = await runtime.prepareBranches(layers);
    log.info({ ...about, layers: layers.size, branches, ready, ms: Math.round(performance.now() - started) }, 'session reduced to the adapters\' layers built ahead');
  } catch (err) {
    log.warn({ ...about, err }, 'could not build the reduced-branch session ahead; it is built on use');
  }
}
