/** The admin side of a load scenario: placeholders discovered from admin listings, setup calls, calls during the load. */
import { expandBody, expandPath, type AdminCall, type Scenario, type Vars } from './scenario.ts';

export class AdminClient {
  constructor(
    private readonly url: string,
    private readonly token: string,
  ) {}

  async call(call: AdminCall, vars: Vars): Promise<unknown> {
    const path = expandPath(call.path, vars);
    const body = expandBody(call.body ?? (call.method === 'POST' ? {} : undefined), vars);
    const res = await fetch(`${this.url}${path}`, {
      method: call.method,
      headers: { authorization: `Bearer ${this.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body } : {}),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${call.method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
    return text ? JSON.parse(text) : undefined;
  }

  /** The first id an admin listing returns (a bare array, or `data` / any array-valued field of an object). */
  async firstId(path: string): Promise<string> {
    const listing = await this.call({ method: 'GET', path }, {});
    const items = Array.isArray(listing)
      ? listing
      : Object.values((listing ?? {}) as Record<string, unknown>).find((v): v is unknown[] => Array.isArray(v) && v.length > 0);
    const id = (items?.[0] as { id?: unknown } | undefined)?.id;
    if (typeof id !== 'string') throw new Error(`GET ${path} lists no id`);
    return id;
  }

  async discover(spec: Record<string, string>): Promise<Record<string, string>> {
    const found: Record<string, string> = {};
    for (const [name, path] of Object.entries(spec)) found[name] = await this.firstId(path);
    return found;
  }
}

/** Cycles the scenario's `during` calls until stopped; counts calls and remembers the first failure. */
export function startDuring(admin: AdminClient, scenario: Scenario, vars: Vars): { stop(): Promise<{ calls: number; error?: Error }> } {
  const during = scenario.admin?.during;
  if (!during) return { stop: async () => ({ calls: 0 }) };
  let stopped = false;
  let calls = 0;
  let error: Error | undefined;
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      await new Promise((r) => setTimeout(r, during.everyMs));
      if (stopped) break;
      try {
        await admin.call(during.calls[i % during.calls.length]!, vars);
        calls++;
      } catch (err) {
        error ??= err as Error;
      }
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return error ? { calls, error } : { calls };
    },
  };
}
