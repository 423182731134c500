/** binary16 → float32 through a 64 k lookup table (exact: every half is a float32). */
import { f16ToF32 } from '../../adapters/safetensors-dtypes.ts';

let table: Float32Array | undefined;

export function halfTable(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = f16ToF32(h);
  }
  return table;
}
