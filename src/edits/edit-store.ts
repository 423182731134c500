/**
 * Durable RLSEdit state: the live EditState, backed by the append-only log and snapshots in
 * `<data dir>/edits/`. Opening replays (nearest snapshot + the log records after it) to the exact W and C
 * the process had; `commit` makes an edit durable (fsync) before it changes the state; `rollback` rebuilds
 * the state at an earlier seq the same way and logs the rollback, so a restart lands on the same state.
 *
 * Seqs grow monotonically for the life of the log (a rollback never reuses them); the effective history is
 * the list of seqs applied, and `x-patchbay-edit-seq` is its last element (0 = no edit).
 *
 * Memory does not grow with the stream beyond the history and an index of where each applied edit lies in the
 * log (tens of bytes per edit): keys and values are read back from the log only for the records a replay
 * applies (those after the snapshot it starts from), and nothing of a committed edit is kept.
 */
import { join } from 'node:path';
import { EditLog, type EditMeta, type LayerDims, type LogEntry } from './edit-log.ts';
import { EditState, type LayerEdit, type LayerSpec } from './edit-state.ts';
import { EditError } from './errors.ts';
import { SnapshotStore } from './snapshots.ts';

export interface EditStoreOptions {
  /** Directory for the log and snapshots (`<PATCHBAY_DATA_DIR>/edits`). */
  dir: string;
  specs: readonly LayerSpec[];
  lambda: number;
  mu: number;
  /** Identity of model + layers + λ + μ + statistics; a log written under another one is refused. */
  fingerprint: string;
  /** Write a snapshot after this many edits since the last one. */
  snapshotEvery: number;
  /** Snapshots kept besides seq 0. */
  keepSnapshots: number;
}

/** Where each applied edit's record lies in the log, by seq. */
type EditIndex = Map<number, Pick<LogEntry, 'offset'>>;

/** Where the last commit's time went (ms): what `bench:edits` reports per phase. */
export interface CommitPhases {
  validateMs: number;
  /** Encoding the record and writing it to the log file. */
  writeMs: number;
  fsyncMs: number;
  /** The Woodbury step of every edited layer. */
  applyMs: number;
  /** 0 unless this edit wrote a snapshot. */
  snapshotMs: number;
}

export class EditStore {
  private edits = 0;
  private sinceSnapshot = 0;
  private rollbacks = 0;
  lastCommit: CommitPhases = { validateMs: 0, writeMs: 0, fsyncMs: 0, applyMs: 0, snapshotMs: 0 };
  /** The last rollback's replay: the snapshot it started from and how many edit records it read back. */
  lastRollback: { fromSnapshot: number; replayedEdits: number } | undefined;
  private constructor(
    private state: EditState,
    private readonly log: EditLog,
    private readonly snapshots: SnapshotStore,
    private readonly opts: EditStoreOptions,
    private nextSeq: number,
    private readonly index: EditIndex,
    /** At open: log records, torn bytes cut, the snapshot the replay started from, edit records read back, time. */
    readonly replayed: { records: number; truncatedBytes: number; fromSnapshot: number; replayedEdits: number; ms: number },
  ) {}

  static async open(opts: EditStoreOptions): Promise<EditStore> {
    const t0 = performance.now();
    const dims: LayerDims = (name) => opts.specs.find((s) => s.name === name);
    const { log, entries: records, truncatedBytes } = EditLog.open(join(opts.dir, 'edits.log'), dims);
    try {
      const init = records[0];
      if (init === undefined) log.append({ type: 'init', fingerprint: opts.fingerprint });
      else if (init.type !== 'init' || init.fingerprint !== opts.fingerprint) {
        throw new EditError(
          'log_mismatch',
          `${log.path} was written for another model, layer set, λ/μ or key statistics (fingerprint ` +
            `${init.type === 'init' ? init.fingerprint.slice(0, 12) : '?'}, now ${opts.fingerprint.slice(0, 12)}); ` +
            'move it away or restore the settings it was written with',
        );
      }
      const snapshots = new SnapshotStore(join(opts.dir, 'snapshots'), opts.fingerprint, opts.keepSnapshots);
      const { history, bySeq, maxSeq } = effectiveHistory(records);
      if (!snapshots.has(0)) snapshots.write(await EditState.initial(opts.specs, opts.lambda, opts.mu));
      const start = snapshots.bestFor(history)!;
      const fromSnapshot = start.seq;
      const replayedEdits = history.length - start.history.length;
      const state = replay(start, history, bySeq, log);
      const store = new EditStore(state, log, snapshots, opts, maxSeq + 1, bySeq, {
        records: records.length,
        truncatedBytes,
        fromSnapshot,
        replayedEdits,
        ms: performance.now() - t0,
      });
      store.edits = records.filter((r) => r.type === 'edit').length;
      store.rollbacks = records.filter((r) => r.type === 'rollback').length;
      return store;
    } catch (err) {
      log.close();
      throw err;
    }
  }

  get current(): EditState {
    return this.state;
  }

  get seq(): number {
    return this.state.seq;
  }

  /** μ this state was built with (the log's fingerprint covers it). */
  get mu(): number {
    return this.opts.mu;
  }

  /** Validates, logs (fsync) and applies one edit; returns its seq. Throws EditError and changes nothing on bad input. */
  commit(parts: readonly LayerEdit[], meta: EditMeta): number {
    const t0 = performance.now();
    this.validate(parts);
    const seq = this.nextSeq;
    const t1 = performance.now();
    const { offset, writeMs, fsyncMs } = this.log.append({ type: 'edit', seq, parts: [...parts], meta });
    this.index.set(seq, { offset });
    this.nextSeq++;
    const t2 = performance.now();
    this.state.apply(seq, parts);
    this.edits++;
    const t3 = performance.now();
    let snapshotMs = 0;
    if (++this.sinceSnapshot >= this.opts.snapshotEvery) {
      this.snapshots.write(this.state);
      this.sinceSnapshot = 0;
      snapshotMs = performance.now() - t3;
    }
    this.lastCommit = { validateMs: t1 - t0, writeMs, fsyncMs, applyMs: t3 - t2, snapshotMs };
    return seq;
  }

  /** Restores W and C exactly as they were right after edit `toSeq` (0 = before any edit), durably. */
  rollback(toSeq: number): void {
    const history = this.state.history;
    const at = history.indexOf(toSeq);
    if (toSeq !== 0 && at < 0) {
      throw new EditError('unknown_seq', `seq ${toSeq} is not in the current edit history (current seq ${this.seq}; valid: 0 or an applied edit)`, 'seq');
    }
    if (toSeq === this.seq) return;
    const target = toSeq === 0 ? [] : history.slice(0, at + 1);
    const start = this.snapshots.bestFor(target)!;
    const replayed = { fromSnapshot: start.seq, replayedEdits: target.length - start.history.length };
    const rebuilt = replay(start, target, this.index, this.log);
    this.log.append({ type: 'rollback', toSeq });
    // The edits after toSeq can never be applied again (seqs are not reused): drop them from the index.
    for (const seq of history.slice(target.length)) this.index.delete(seq);
    this.state = rebuilt;
    this.rollbacks++;
    this.sinceSnapshot = 0;
    this.lastRollback = replayed;
  }

  stats(): { seq: number; count: number; logged: number; rollbacks: number; logBytes: number; snapshots: number[]; nextSeq: number } {
    return {
      seq: this.seq,
      count: this.state.history.length,
      logged: this.edits,
      rollbacks: this.rollbacks,
      logBytes: this.log.bytes,
      snapshots: this.snapshots.seqs(),
      nextSeq: this.nextSeq,
    };
  }

  close(): void {
    this.log.close();
  }

  private validate(parts: readonly LayerEdit[]): void {
    if (parts.length === 0) throw new EditError('invalid_edit', 'an edit must change at least one layer');
    const seen = new Set<string>();
    for (const p of parts) {
      const layer = this.state.layer(p.layer);
      if (!layer) {
        throw new EditError('unknown_layer', `layer ${JSON.stringify(p.layer)} is not edited here (edited layers: ${this.state.layers.map((l) => l.name).join(', ')})`, 'layer');
      }
      if (seen.has(p.layer)) throw new EditError('invalid_edit', `layer ${p.layer} appears twice in one edit`, 'layer');
      seen.add(p.layer);
      if (!Number.isInteger(p.u) || p.u < 1) throw new EditError('invalid_edit', `layer ${p.layer}: an edit needs at least one key`, 'keys');
      if (p.keys.length !== p.u * layer.dK) throw new EditError('shape_mismatch', `layer ${p.layer}: keys must be ${p.u} × ${layer.dK}`, 'keys');
      if (p.values.length !== p.u * layer.dV) throw new EditError('shape_mismatch', `layer ${p.layer}: values must be ${p.u} × ${layer.dV}`, 'values');
      for (const [what, arr] of [['keys', p.keys], ['values', p.values]] as const) {
        for (let i = 0; i < arr.length; i++) {
          if (!Number.isFinite(arr[i]!)) throw new EditError('non_finite', `layer ${p.layer}: ${what} has a non-finite value at ${i}`, what);
        }
      }
    }
  }
}

/** Replays the edit records of `history` that come after `start`'s own history, reading each from the log. */
function replay(start: EditState, history: readonly number[], index: EditIndex, log: EditLog): EditState {
  for (const seq of history.slice(start.history.length)) {
    const rec = log.read(index.get(seq)!);
    if (rec.type !== 'edit' || rec.seq !== seq) throw new Error(`${log.path}: the index points at another record for seq ${seq}`);
    start.apply(seq, rec.parts);
  }
  return start;
}

/**
 * The seqs in effect after every record (edits append, a rollback truncates), where each of those edits lies in
 * the log, the largest seq ever used.
 */
function effectiveHistory(entries: readonly LogEntry[]): { history: number[]; bySeq: EditIndex; maxSeq: number } {
  let history: number[] = [];
  const bySeq: EditIndex = new Map();
  let maxSeq = 0;
  for (const r of entries) {
    if (r.type === 'edit') {
      history.push(r.seq);
      bySeq.set(r.seq, { offset: r.offset });
      maxSeq = Math.max(maxSeq, r.seq);
    } else if (r.type === 'rollback') {
      const kept = history.filter((s) => s <= r.toSeq);
      for (const s of history.slice(kept.length)) bySeq.delete(s);
      history = kept;
    }
  }
  return { history, bySeq, maxSeq };
}
