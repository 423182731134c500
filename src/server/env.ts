/** Typed per-request state shared by middleware and routes (`c.get('requestId')`, never `as any`). */
import type { Logger } from 'pino';
import type { Tenant } from './tenants/keys-file.ts';

/** What a generation route reports for the access log and metrics once its response is complete. */
export interface RequestOutcome {
  model: string;
  promptTokens: number;
  completionTokens: number;
}

export interface AppEnv {
  Variables: {
    requestId: string;
    /** Child logger carrying the request id. */
    logger: Logger;
    /** `performance.now()` when the request arrived; latency and time-to-first-token count from here. */
    startedAt: number;
    /** Set by generation routes; filled in when the generation ends (possibly after the response began). */
    outcome: RequestOutcome | undefined;
    /** Set by streaming routes: settles when the last byte of the stream was written or the client left. */
    streamDone: Promise<void> | undefined;
    /** The caller's tenant (keys mode, set by tenants/tenant-auth.ts); undefined in open mode. */
    tenant: Tenant | undefined;
  };
}
