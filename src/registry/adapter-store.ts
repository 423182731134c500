/**
 * Admin-registered adapters persist in `<PATCHBAY_DATA_DIR>/adapters.json` (atomic writes: json-store.ts) as
 * {id, path, pinned, created}: what POST /admin/adapters was given (the confined real path), not factors.
 * At start each record is registered again through the same validation as the admin call; one that no longer
 * passes is logged and skipped, and kept in the file (so an unmounted volume at boot does not lose it) until
 * the id is registered again or deleted.
 */
import { z } from 'zod';
import { JsonListStore } from './json-store.ts';

export const AdapterRecordSchema = z.object({
  id: z.string().min(1),
  path: z.string().min(1),
  pinned: z.boolean(),
  created: z.number().int().nonnegative(),
});
export type AdapterRecord = z.infer<typeof AdapterRecordSchema>;

export class AdapterStore extends JsonListStore<AdapterRecord> {
  constructor(dir: string) {
    super(dir, 'adapters.json', 'adapters');
  }

  /** Well-formed records, and a reason for each entry that is not one (logged by the caller, never fatal). */
  async records(): Promise<{ records: AdapterRecord[]; malformed: string[] }> {
    const records: AdapterRecord[] = [];
    const malformed: string[] = [];
    for (const [i, raw] of (await this.load()).entries()) {
      const parsed = AdapterRecordSchema.safeParse(raw);
      if (parsed.success) records.push(parsed.data);
      else malformed.push(`entry ${i}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`);
    }
    return { records, malformed };
  }
}
