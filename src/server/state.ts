/**
 * The server's lifecycle: loading → ready → draining. `/readyz` reports it; generation routes ask it for
 * the runtime and get a 503 unless ready, so a draining process finishes what it has and admits nothing.
 */
import { PatchbayError } from '../errors.ts';
import type { PatchManager } from '../patches/patch-manager.ts';
import type { EditService } from '../edits/edit-service.ts';
import type { AdapterRegistry } from '../registry/adapter-registry.ts';
import type { GeneratorRegistry } from '../registry/generator-registry.ts';
import type { ServingRuntime } from './contract.ts';
import type { ModelResolver } from './resolver.ts';

export type Phase = 'loading' | 'ready' | 'draining';

export interface Serving {
  runtime: ServingRuntime;
  resolver: ModelResolver;
  /** Backs the admin adapter routes; absent when the server was built without one (base only). */
  adapters?: AdapterRegistry;
  /** Backs the admin patch routes and per-request `patches`; absent on servers built without one. */
  patches?: PatchManager;
  /** Knowledge edits; absent when the model ships no key statistics or edits are off. */
  edits?: EditService;
  /** Backs the admin generator routes; absent without an adapter registry. */
  generators?: GeneratorRegistry;
}

export class ServingState {
  #phase: Phase = 'loading';
  #serving: Serving | undefined;

  get phase(): Phase {
    return this.#phase;
  }

  /** The loaded runtime, also while draining (models and metrics stay readable); undefined while loading. */
  get serving(): Serving | undefined {
    return this.#serving;
  }

  markReady(serving: Serving): void {
    this.#serving = serving;
    // A shutdown that began during loading wins: stay draining.
    if (this.#phase === 'loading') this.#phase = 'ready';
  }

  startDraining(): void {
    this.#phase = 'draining';
  }

  /** For routes that start new work. */
  admit(): Serving {
    if (this.#phase === 'ready' && this.#serving) return this.#serving;
    throw unavailable(this.#phase);
  }

  /** For read-only routes: anything loaded, even while draining. */
  loaded(): Serving {
    if (this.#serving) return this.#serving;
    throw unavailable(this.#phase);
  }
}

function unavailable(phase: Phase): PatchbayError {
  return phase === 'draining'
    ? new PatchbayError({ status: 503, code: 'server_draining', message: 'The server is shutting down; retry on another replica.' })
    : new PatchbayError({ status: 503, code: 'model_loading', message: 'The model is still loading; retry shortly.' });
}
