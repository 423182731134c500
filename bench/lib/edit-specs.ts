/** The embedded model's edited layers as the edit benches use them: pristine weights and shipped key statistics. */
import { readFileSync } from 'node:fs';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import type { LayerSpec } from '../../src/edits/edit-state.ts';
import { InitializerTable } from '../../src/runtime/versions/initializer-table.ts';

export function editLayerSpecs(
  modelBytes: Uint8Array,
  statsPath = 'models/tiny-gpt2/edit_stats.safetensors',
): { table: InitializerTable; layers: string[]; specs: LayerSpec[]; metadata: Readonly<Record<string, string>> } {
  const table = InitializerTable.of(modelBytes);
  const stats = decodeSafetensors(new Uint8Array(readFileSync(statsPath)));
  const layers = JSON.parse(stats.header.metadata['layers']!) as string[];
  const specs: LayerSpec[] = layers.map((name) => {
    const w0 = table.read(`${name}.weight`);
    const mom2 = stats.tensor(`${name}.mom2`).data as Float32Array;
    const dK = Math.sqrt(mom2.length);
    return { name, initializer: `${name}.weight`, dK, dV: w0.length / dK, w0, mom2 };
  });
  return { table, layers, specs, metadata: stats.header.metadata };
}
