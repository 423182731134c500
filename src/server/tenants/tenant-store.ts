/**
 * The live tenant keys: read from `PATCHBAY_KEYS_FILE` at start, re-read on SIGHUP (main.ts) or when the file
 * changes (polled, so editors that replace the file and mounted ConfigMaps are both seen). A reload that
 * fails keeps the previous keys and logs why: a typo must not lock every tenant out or open the server.
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { Logger } from 'pino';
import { hashKey, parseKeysFile, type ParsedKeys, type Tenant } from './keys-file.ts';

export interface TenantStoreOptions {
  path: string;
  logger: Logger;
  /** How often the file's mtime/size are polled; 0 turns watching off (SIGHUP still reloads). */
  pollMs?: number;
}

export class TenantStore {
  #keys: ParsedKeys;
  #watching = false;
  readonly path: string;
  private readonly logger: Logger;
  /** Successful reloads since start (the first load included). */
  generation = 1;

  /** Throws when the file cannot be read or is invalid: a server told to use keys must not start open. */
  constructor(opts: TenantStoreOptions) {
    this.path = opts.path;
    this.logger = opts.logger;
    this.#keys = parseKeysFile(readFileSync(opts.path, 'utf8'), opts.path);
    if ((opts.pollMs ?? 1000) > 0) this.watch(opts.pollMs ?? 1000);
  }

  get tenants(): readonly Tenant[] {
    return this.#keys.tenants;
  }

  /** The tenant a raw bearer key belongs to, or undefined. */
  authenticate(key: string): Tenant | undefined {
    return this.#keys.byHash.get(hashKey(key));
  }

  /** Re-reads the file; on any problem keeps the current keys. Returns whether the new keys took effect. */
  reload(reason: string): boolean {
    try {
      this.#keys = parseKeysFile(readFileSync(this.path, 'utf8'), this.path);
      this.generation++;
      this.logger.info({ path: this.path, reason, tenants: this.#keys.tenants.map((t) => t.name) }, 'tenant keys reloaded');
      return true;
    } catch (err) {
      this.logger.error({ path: this.path, reason, err }, 'tenant keys NOT reloaded: keeping the previous keys');
      return false;
    }
  }

  close(): void {
    if (this.#watching) unwatchFile(this.path);
    this.#watching = false;
  }

  private watch(pollMs: number): void {
    this.#watching = true;
    const onChange = (now: Stats, before: Stats) => {
      if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) this.reload('file changed');
    };
    // unref'd by Node for watchFile with persistent: false, so it never holds the process open.
    watchFile(this.path, { interval: pollMs, persistent: false }, onChange);
  }
}
