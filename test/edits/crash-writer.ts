/** Child process of crash.test.ts: commits edits to a small store as fast as it can, printing each ack. */
import { openSmall, smallEdit } from './small-store.ts';

const store = await openSmall(process.argv[2]!);
for (let i = 1; ; i++) {
  const seq = store.commit(smallEdit(i), { source: 'raw' });
  // The ack: printed only after commit returned, i.e. after the fsync.
  process.stdout.write(`ack ${seq} ${store.current.hash()}\n`);
  if (i % 5 === 0) await new Promise((r) => setImmediate(r));
}
