/** Per-tenant series, labelled by tenant name (from the keys file) — never by key or key hash. */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { RejectReason } from './tenant-limits.ts';

export class TenantMetrics {
  readonly requests: Counter<'tenant' | 'status'>;
  readonly tokens: Counter<'tenant' | 'kind'>;
  readonly rejections: Counter<'tenant' | 'reason'>;
  readonly inFlight: Gauge<'tenant'>;

  constructor(registry: Registry, inFlight: () => ReadonlyMap<string, number>) {
    this.requests = new Counter({
      name: 'patchbay_tenant_requests_total',
      help: 'Requests on tenant-keyed public routes, by tenant and HTTP status.',
      labelNames: ['tenant', 'status'] as const,
      registers: [registry],
    });
    this.tokens = new Counter({
      name: 'patchbay_tenant_tokens_total',
      help: 'Prompt and completion tokens of finished generations, by tenant.',
      labelNames: ['tenant', 'kind'] as const,
      registers: [registry],
    });
    this.rejections = new Counter({
      name: 'patchbay_tenant_rejections_total',
      help: 'Requests refused with 429 by a tenant limit, by tenant and limit.',
      labelNames: ['tenant', 'reason'] as const,
      registers: [registry],
    });
    this.inFlight = new Gauge({
      name: 'patchbay_tenant_in_flight',
      help: 'Generations in flight, by tenant.',
      labelNames: ['tenant'] as const,
      registers: [registry],
      collect(this: Gauge<'tenant'>) {
        this.reset();
        for (const [tenant, n] of inFlight()) this.set({ tenant }, n);
      },
    });
  }

  rejected(tenant: string, reason: RejectReason): void {
    this.rejections.inc({ tenant, reason });
  }
}
