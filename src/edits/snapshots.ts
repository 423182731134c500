/**
 * Snapshots of the full RLSEdit state (W and C of every layer, float64, plus the effective history), so a
 * restart or a rollback replays only the log records after the nearest snapshot instead of the whole log.
 *
 * File `<dir>/snap-<seq>.bin`: [json length u32][json {seq, fingerprint, history, layers:[{name,dK,dV}]}]
 * [padding to 8][W then C of each layer, float64]. Written to a temporary name, fsynced, renamed, directory
 * fsynced: a snapshot file either exists complete or not at all. A snapshot is only used when its
 * fingerprint and its history equal a prefix of the history being rebuilt.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EditState } from './edit-state.ts';
import { fsyncDir } from './edit-log.ts';
import { RlsLayer } from './rls-layer.ts';

interface SnapshotHead {
  seq: number;
  fingerprint: string;
  history: number[];
  layers: { name: string; initializer: string; dK: number; dV: number }[];
}

export class SnapshotStore {
  constructor(
    readonly dir: string,
    private readonly fingerprint: string,
    /** Snapshots kept besides seq 0 (oldest dropped first). */
    private readonly keep: number,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  seqs(): number[] {
    return readdirSync(this.dir)
      .map((f) => /^snap-(\d+)\.bin$/.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }

  has(seq: number): boolean {
    return existsSync(this.file(seq));
  }

  write(state: EditState): void {
    const head: SnapshotHead = {
      seq: state.seq,
      fingerprint: this.fingerprint,
      history: state.history,
      layers: state.layers.map((l) => ({ name: l.name, initializer: l.initializer, dK: l.dK, dV: l.dV })),
    };
    const json = Buffer.from(JSON.stringify(head), 'utf8');
    const pad = (8 - ((4 + json.length) % 8)) % 8;
    const prefix = Buffer.alloc(4 + json.length + pad);
    prefix.writeUInt32LE(json.length, 0);
    json.copy(prefix, 4);
    const tmp = join(this.dir, `.snap-${state.seq}.tmp`);
    const fd = openSync(tmp, 'w');
    try {
      writeAll(fd, prefix);
      for (const l of state.layers) {
        writeAll(fd, new Uint8Array(l.w.buffer, l.w.byteOffset, l.w.byteLength));
        writeAll(fd, new Uint8Array(l.c.buffer, l.c.byteOffset, l.c.byteLength));
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file(state.seq));
    fsyncDir(this.dir);
    this.prune();
  }

  /**
   * The newest snapshot whose history is a prefix of `history` (seq 0's is the empty prefix), loaded, or
   * undefined if none fits.
   */
  bestFor(history: readonly number[]): EditState | undefined {
    const inHistory = new Set([0, ...history]);
    for (const seq of this.seqs().reverse()) {
      if (!inHistory.has(seq)) continue;
      const state = this.read(seq);
      if (!state) continue;
      const n = state.history.length;
      if (n <= history.length && state.history.every((s, i) => s === history[i])) return state;
    }
    return undefined;
  }

  read(seq: number): EditState | undefined {
    const buf = readFileSync(this.file(seq));
    const jsonLen = buf.readUInt32LE(0);
    const head = JSON.parse(buf.subarray(4, 4 + jsonLen).toString('utf8')) as SnapshotHead;
    if (head.fingerprint !== this.fingerprint) return undefined;
    let off = 4 + jsonLen + ((8 - ((4 + jsonLen) % 8)) % 8);
    const floats = (n: number) => {
      const out = new Float64Array(new Uint8Array(buf.subarray(off, off + n * 8)).buffer);
      off += n * 8;
      return out;
    };
    const layers = head.layers.map((l) => {
      const w = floats(l.dK * l.dV);
      const c = floats(l.dK * l.dK);
      return new RlsLayer(l.name, l.initializer, l.dK, l.dV, w, c);
    });
    return new EditState(layers, head.history);
  }

  private prune(): void {
    const others = this.seqs().filter((s) => s !== 0);
    for (const s of others.slice(0, Math.max(0, others.length - this.keep))) rmSync(this.file(s), { force: true });
  }

  private file(seq: number): string {
    return join(this.dir, `snap-${seq}.bin`);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}
