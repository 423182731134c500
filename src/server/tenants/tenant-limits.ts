/**
 * Per-tenant limits (keys-file.ts `limits`), enforced before any work: requests in flight, tokens per minute
 * (a token bucket refilled continuously at tokens_per_minute / 60 per second, charged with each
 * generation's prompt + completion tokens when it ends, so a large request can drive it negative and the
 * tenant waits it off), and distinct `adapters: [...]` combinations first used within the last minute.
 * Every refusal is a 429 with `Retry-After`. State is kept by tenant name, so it survives a keys reload.
 */
import { PatchbayError } from '../../errors.ts';
import type { Tenant } from './keys-file.ts';

const MINUTE_MS = 60_000;

export type RejectReason = 'in_flight' | 'tokens_per_minute' | 'combinations_per_minute';

interface Usage {
  inFlight: number;
  /** Token bucket level and when it was last brought up to date. */
  tokens: number;
  at: number;
  /** Combination key → when it was first used in the current window. */
  combos: Map<string, number>;
}

/** A held slot; `done` returns it and charges the tokens used (idempotent). */
export interface Ticket {
  done(tokens: number): void;
}

const tooMany = (tenant: string, what: string, retryAfterSeconds: number) =>
  new PatchbayError({
    status: 429,
    code: 'rate_limit_exceeded',
    message: `Tenant '${tenant}' is over its limit of ${what}; retry after ${Math.ceil(retryAfterSeconds)} s.`,
    retryAfterSeconds,
  });

export class TenantLimiter {
  private readonly usage = new Map<string, Usage>();

  constructor(
    private readonly onReject: (tenant: string, reason: RejectReason) => void = () => {},
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Takes an in-flight slot if the tenant has room and tokens left; throws 429 otherwise. */
  admit(tenant: Tenant): Ticket {
    const u = this.of(tenant);
    const { maxInFlight, tokensPerMinute } = tenant.limits;
    if (maxInFlight !== undefined && u.inFlight >= maxInFlight) {
      this.onReject(tenant.name, 'in_flight');
      throw tooMany(tenant.name, `${maxInFlight} requests in flight`, 1);
    }
    if (tokensPerMinute !== undefined) {
      this.refill(u, tokensPerMinute);
      if (u.tokens <= 0) {
        this.onReject(tenant.name, 'tokens_per_minute');
        // Time until the bucket is back above zero.
        throw tooMany(tenant.name, `${tokensPerMinute} tokens per minute`, Math.max(1, ((1 - u.tokens) * MINUTE_MS) / tokensPerMinute / 1000));
      }
    }
    u.inFlight++;
    let open = true;
    return {
      done: (tokens) => {
        if (!open) return;
        open = false;
        u.inFlight--;
        if (tokensPerMinute !== undefined) {
          this.refill(u, tokensPerMinute);
          u.tokens -= tokens;
        }
      },
    };
  }

  /** Records the use of combination `key`; throws 429 if it is new and the minute's quota is used up. */
  combination(tenant: Tenant, key: string): void {
    const limit = tenant.limits.combinationsPerMinute;
    if (limit === undefined) return;
    const u = this.of(tenant);
    const now = this.now();
    for (const [k, at] of u.combos) if (now - at >= MINUTE_MS) u.combos.delete(k);
    if (u.combos.has(key)) return;
    if (u.combos.size >= limit) {
      this.onReject(tenant.name, 'combinations_per_minute');
      const oldest = Math.min(...u.combos.values());
      throw tooMany(tenant.name, `${limit} new adapter combinations per minute`, Math.max(1, (oldest + MINUTE_MS - now) / 1000));
    }
    u.combos.set(key, now);
  }

  inFlight(name: string): number {
    return this.usage.get(name)?.inFlight ?? 0;
  }

  /** Tenant name → requests in flight, for the metrics gauge. */
  inFlightAll(): Map<string, number> {
    return new Map([...this.usage].map(([name, u]) => [name, u.inFlight]));
  }

  private of(tenant: Tenant): Usage {
    let u = this.usage.get(tenant.name);
    if (!u) {
      u = { inFlight: 0, tokens: tenant.limits.tokensPerMinute ?? 0, at: this.now(), combos: new Map() };
      this.usage.set(tenant.name, u);
    }
    return u;
  }

  private refill(u: Usage, perMinute: number): void {
    const now = this.now();
    u.tokens = Math.min(perMinute, u.tokens + ((now - u.at) * perMinute) / MINUTE_MS);
    u.at = now;
  }
}
