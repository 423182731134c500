/**
 * Named merges persist as one JSON file, `<PATCHBAY_DATA_DIR>/merges.json` ({version, merges: [recipe…]}),
 * written atomically: a temporary file in the same directory, fsync, then rename over the old one, so a crash
 * leaves either the old or the new file, never a torn one. Only recipes are stored; factors are rebuilt lazily.
 */
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { MergeRecipe } from './merge-recipe.ts';

const VERSION = 1;

export class MergeStore {
  readonly file: string;
  /** Serialises writes: the last one to start is the last one to land. */
  private chain: Promise<void> = Promise.resolve();

  constructor(readonly dir: string) {
    this.file = join(dir, 'merges.json');
  }

  async load(): Promise<MergeRecipe[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const parsed = JSON.parse(text) as { version?: number; merges?: MergeRecipe[] };
    if (parsed.version !== VERSION || !Array.isArray(parsed.merges)) {
      throw new Error(`${this.file}: expected {version: ${VERSION}, merges: [...]}`);
    }
    return parsed.merges;
  }

  save(recipes: readonly MergeRecipe[]): Promise<void> {
    const body = JSON.stringify({ version: VERSION, merges: recipes }, null, 2) + '\n';
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
