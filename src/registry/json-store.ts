/**
 * One JSON file of registry state in `PATCHBAY_DATA_DIR` (`{version, <key>: [...]}`), written atomically: a
 * temporary file in the same directory, fsync, then rename over the old one, so a crash leaves either the
 * old or the new file, never a torn one. Writes are serialised: the last one to start is the last to land.
 * Used for named merges (merges.json) and admin-registered adapters (adapters.json).
 */
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

const VERSION = 1;

export class JsonListStore<T> {
  readonly file: string;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly dir: string,
    name: string,
    private readonly key: string,
  ) {
    this.file = join(dir, name);
  }

  /** The stored list; [] when there is no file yet. A file of another shape is an error (never overwritten blindly). */
  async load(): Promise<unknown[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const parsed = JSON.parse(text) as { version?: number } & Record<string, unknown>;
    const list = parsed[this.key];
    if (parsed.version !== VERSION || !Array.isArray(list)) {
      throw new Error(`${this.file}: expected {version: ${VERSION}, ${this.key}: [...]}`);
    }
    return list;
  }

  save(items: readonly T[]): Promise<void> {
    const body = JSON.stringify({ version: VERSION, [this.key]: items }, null, 2) + '\n';
    const next = this.chain.then(() => this.write(body));
    this.chain = next.catch(() => {});
    return next;
  }

  private async write(body: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(body, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, this.file);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }
}
