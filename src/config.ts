/**
 * The one place Patchbay reads its environment and command line (12-factor). Everything else takes the
 * resulting `Config` as explicit options, so tests and embedders never touch `process.env`.
 * Precedence: CLI flag > environment variable > default.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import type { DeltaSelection } from './runtime/graph/selection.ts';

/**
 * Defaults point into the repository, wherever the process was started from: the nearest directory above
 * this module that holds package.json. That is one level up from `src/config.ts` under tsx and two from
 * `dist/src/config.js` in the production build (and `/app` in the container image).
 */
export function findRepoRoot(from: string = fileURLToPath(new URL('.', import.meta.url))): string {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(from, '..');
  }
}
const REPO_ROOT = findRepoRoot();

const MiB = 1024 * 1024;
const UNIT: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: MiB, gi: 1024 * MiB };

/** Byte sizes accept plain integers or Kubernetes-style suffixes (`256Mi`, `1G`), as Helm values use. */
const byteSize = z.string().transform((raw, ctx) => {
  const m = /^(\d+)\s*([kKmMgG]i?)?[bB]?$/.exec(raw.trim());
  const bytes = m ? Number(m[1]) * (UNIT[(m[2] ?? '').toLowerCase()] ?? Number.NaN) : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    ctx.addIssue({ code: 'custom', message: `expected a positive byte size like 1048576 or 256Mi, got "${raw}"` });
    return z.NEVER;
  }
  return bytes;
});

/**
 * `attention` | `all-linear` | `none` | comma-separated module-path regexes (each must match a whole path,
 * like PEFT's string target_modules). Unset leaves the choice to the runtime's measured default.
 */
const deltaTargets = z.string().transform((raw, ctx): DeltaSelection | 'none' => {
  const v = raw.trim();
  if (v === 'attention' || v === 'all-linear' || v === 'none') return v;
  const patterns = v.split(',').map((p) => p.trim()).filter((p) => p !== '');
  for (const p of patterns) {
    try {
      new RegExp(`^(?:${p})$`);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `"${p}" is not a valid regular expression (${(err as Error).message})` });
      return z.NEVER;
    }
  }
  if (patterns.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'expected attention, all-linear, none or comma-separated module regexes' });
    return z.NEVER;
  }
  return patterns;
});

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** User-supplied paths are relative to the working directory, like every other CLI tool. */
const userPath = z.string().min(1).transform((p) => path.resolve(p));

const ConfigSchema = z.object({
  port: int(0, 65535).default(8080),
  host: z.string().min(1).default('0.0.0.0'),
  modelDir: userPath.default(path.join(REPO_ROOT, 'models', 'tiny-gpt2')),
  /** Overrides the advertised base model id (default: the model directory's name). */
  modelId: z.string().min(1).optional(),
  adapterDir: userPath.default(path.join(REPO_ROOT, 'adapters')),
  /** Where admin-registered adapter paths must lie (path-list, `:`-separated); unset = the adapter dir. */
  adapterRoots: z
    .string()
    .transform((raw) => raw.split(path.delimiter).filter((p) => p.trim() !== '').map((p) => path.resolve(p.trim())))
    .optional(),
  /** How long a failed adapter load is answered from memory before the directory is read again (ms). */
  adapterFailureTtlMs: int(0, 3_600_000).default(10_000),
  dataDir: userPath.default(path.join(REPO_ROOT, 'data')),
  adminToken: z.string().min(1).optional(),
  device: z.enum(['cpu', 'cuda']).default('cpu'),
  cacheBytes: byteSize.default(256 * MiB),
  /** Which linear layers get a delta branch at load; undefined = the runtime's default. */
  deltaTargets: deltaTargets.optional(),
  /** A second, branch-free session for steps without adapters (see RuntimeOptions.plainSession). */
  plainSession: z.enum(['auto', 'on', 'off']).default('auto'),
  /** Extra sessions on the delta graph reduced to a batch's adapter layers (see RuntimeOptions.branchSessions). */
  branchSessions: z.union([z.literal('auto'), int(0, 16)]).default('auto'),
  /** Build the reduced-branch session of the adapters found at start before serving (see AdapterServingOptions.branchesAhead). */
  branchSessionsAhead: z.enum(['on', 'off']).default('on'),
  /** Where base versions' sessions live (see RuntimeOptions.sessionWorkers). */
  sessionWorkers: z.enum(['off', 'versions', 'all']).default('versions'),
  /** MatMulNBits compute precision of a quantized model (0 = float32, 4 = int8 activations, auto = 0 on 4-bit and 4 on 8-bit nodes); unset = as stored. */
  nbitsAccuracy: z.enum(['auto', '0', '1', '2', '3', '4']).transform((v) => (v === 'auto' ? 'auto' : (Number(v) as 0 | 1 | 2 | 3 | 4))).optional(),
  /** Batches of several rows without adapters on a quantized model: off, its float32 form, or int8 activations (see RuntimeOptions.wideSession). */
  wideSession: z.enum(['off', 'f32', 'int8']).default('off'),
  /** Fewest rows a step needs to run on the wide session (tokens with f32, sequences with int8). */
  wideMinRows: int(2, 1024).default(2),
  /** Slot-cache graphs (GGUF imports): largest growth step of the KV slots, positions (runtime/slot-kv.ts); unset = 256. */
  kvBlock: int(1, 1_048_576).optional(),
  maxBatch: int(1, 1024).default(8),
  maxQueue: int(0, 1_000_000).default(64),
  /** Unset = derived from the model's context length once it has loaded (server/body-limit.ts). */
  maxBodyBytes: byteSize.optional(),
  /** Tenant API keys for the public routes (server/tenants/keys-file.ts); unset = open mode. */
  keysFile: userPath.optional(),
  /** Most rank one request's adapters may add up to (ranks of combined adapters add). */
  maxCombinedRank: int(1, 1_000_000).default(256),
  /** Serve /metrics on this separate listener instead of the public one. */
  metricsPort: int(0, 65535).optional(),
  metricsHost: z.string().min(1).default('127.0.0.1'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  threads: int(1, 1024).optional(),
  /** ORT pool threads busy-wait between parallel sections (on, ORT's default) or sleep (off: shared or quota-limited cores). */
  ortSpinning: z.enum(['on', 'off']).default('on'),
  otlpEndpoint: z.url().optional(),
  /** `service.name` on exported spans. */
  serviceName: z.string().min(1).default('patchbay'),
  /** Knowledge edits: `auto` = on when the model ships key statistics (edit_stats.safetensors), `off` = never. */
  edits: z.enum(['auto', 'off']).default('auto'),
  /** Edited layers (comma-separated HF module paths); unset = every layer the key statistics cover. */
  editLayers: z.string().transform((v) => v.split(',').map((s) => s.trim()).filter((s) => s !== '')).optional(),
  /** RLSEdit λ (pull toward W₀) and μ (pull toward the anchor mapping on typical keys; unset: the model's edit_stats `mu`, else 1). */
  editLambda: z.coerce.number().positive().finite().default(1),
  editMu: z.coerce.number().min(0).finite().optional(),
  editKeys: z.enum(['subject', 'subject+targets']).default('subject+targets'),
  /** Where a prompt edit's key probe and value search run: a worker thread (`on`) or the serving thread (`off`). */
  editWorker: z.enum(['on', 'off']).default('on'),
  /**
   * Niceness of that worker thread (0 = as the server … 19): under CPU contention decoding goes first and the
   * edit waits (bench:edits part 2 measures both); it changes nothing while a core is idle.
   */
  editWorkerNice: z.coerce.number().int().min(0).max(19).default(10),
  /** Anchor subjects (comma-separated, or `none`); unset = those the model's edit_stats records, else none. */
  editAnchors: z.string().transform((v) => (v.trim() === 'none' ? [] : v.split(',').map((s) => s.trim()).filter((s) => s !== ''))).optional(),
  /** Contexts of prompt edits' keys and values (src/edits/settings.ts EditContexts). */
  editContexts: z.enum(['plain', 'chat', 'plain+chat']).default('plain'),
});

export type Config = z.infer<typeof ConfigSchema>;
type ConfigKey = keyof Config;

/** Each setting's environment variable and CLI flag. The admin token has no flag: argv is visible in `ps`. */
const SOURCES: Record<ConfigKey, { env: string; flag?: string }> = {
  port: { env: 'PORT', flag: 'port' },
  host: { env: 'HOST', flag: 'host' },
  modelDir: { env: 'PATCHBAY_MODEL_DIR', flag: 'model-dir' },
  modelId: { env: 'PATCHBAY_MODEL_ID', flag: 'model-id' },
  adapterDir: { env: 'PATCHBAY_ADAPTER_DIR', flag: 'adapter-dir' },
  adapterRoots: { env: 'PATCHBAY_ADAPTER_ROOTS', flag: 'adapter-roots' },
  adapterFailureTtlMs: { env: 'PATCHBAY_ADAPTER_FAILURE_TTL_MS', flag: 'adapter-failure-ttl-ms' },
  dataDir: { env: 'PATCHBAY_DATA_DIR', flag: 'data-dir' },
  adminToken: { env: 'PATCHBAY_ADMIN_TOKEN' },
  device: { env: 'PATCHBAY_DEVICE', flag: 'device' },
  cacheBytes: { env: 'PATCHBAY_CACHE_BYTES', flag: 'cache-bytes' },
  deltaTargets: { env: 'PATCHBAY_DELTA_TARGETS', flag: 'delta-targets' },
  plainSession: { env: 'PATCHBAY_PLAIN_SESSION', flag: 'plain-session' },
  branchSessions: { env: 'PATCHBAY_BRANCH_SESSIONS', flag: 'branch-sessions' },
  branchSessionsAhead: { env: 'PATCHBAY_BRANCH_SESSIONS_AHEAD', flag: 'branch-sessions-ahead' },
  sessionWorkers: { env: 'PATCHBAY_SESSION_WORKERS', flag: 'session-workers' },
  nbitsAccuracy: { env: 'PATCHBAY_NBITS_ACCURACY', flag: 'nbits-accuracy' },
  wideSession: { env: 'PATCHBAY_WIDE_SESSION', flag: 'wide-session' },
  wideMinRows: { env: 'PATCHBAY_WIDE_MIN_ROWS', flag: 'wide-min-rows' },
  kvBlock: { env: 'PATCHBAY_KV_BLOCK', flag: 'kv-block' },
  maxBatch: { env: 'PATCHBAY_MAX_BATCH', flag: 'max-batch' },
  maxQueue: { env: 'PATCHBAY_MAX_QUEUE', flag: 'max-queue' },
  maxBodyBytes: { env: 'PATCHBAY_MAX_BODY_BYTES', flag: 'max-body-bytes' },
  keysFile: { env: 'PATCHBAY_KEYS_FILE', flag: 'keys-file' },
  maxCombinedRank: { env: 'PATCHBAY_MAX_COMBINED_RANK', flag: 'max-combined-rank' },
  metricsPort: { env: 'PATCHBAY_METRICS_PORT', flag: 'metrics-port' },
  metricsHost: { env: 'PATCHBAY_METRICS_HOST', flag: 'metrics-host' },
  logLevel: { env: 'PATCHBAY_LOG_LEVEL', flag: 'log-level' },
  threads: { env: 'PATCHBAY_THREADS', flag: 'threads' },
  ortSpinning: { env: 'PATCHBAY_ORT_SPINNING', flag: 'ort-spinning' },
  otlpEndpoint: { env: 'OTEL_EXPORTER_OTLP_ENDPOINT', flag: 'otlp-endpoint' },
  serviceName: { env: 'OTEL_SERVICE_NAME', flag: 'service-name' },
  edits: { env: 'PATCHBAY_EDITS', flag: 'edits' },
  editLayers: { env: 'PATCHBAY_EDIT_LAYERS', flag: 'edit-layers' },
  editLambda: { env: 'PATCHBAY_EDIT_LAMBDA', flag: 'edit-lambda' },
  editMu: { env: 'PATCHBAY_EDIT_MU', flag: 'edit-mu' },
  editKeys: { env: 'PATCHBAY_EDIT_KEYS', flag: 'edit-keys' },
  editWorker: { env: 'PATCHBAY_EDIT_WORKER', flag: 'edit-worker' },
  editWorkerNice: { env: 'PATCHBAY_EDIT_WORKER_NICE', flag: 'edit-worker-nice' },
  editAnchors: { env: 'PATCHBAY_EDIT_ANCHORS', flag: 'edit-anchors' },
  editContexts: { env: 'PATCHBAY_EDIT_CONTEXTS', flag: 'edit-contexts' },
};

/** Thrown for any bad setting; `message` lists every problem, naming the variable or flag to fix. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

export const USAGE = `usage: patchbay [options]   (each option mirrors an environment variable)\n${Object.values(SOURCES)
  .filter((s) => s.flag !== undefined)
  .map((s) => `  --${s.flag} <value>`.padEnd(30) + s.env)
  .join('\n')}`;

export function loadConfig(argv: readonly string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): Config {
  const options: Record<string, { type: 'string' }> = {};
  for (const s of Object.values(SOURCES)) if (s.flag) options[s.flag] = { type: 'string' };

  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new ConfigError([`${(err as Error).message}\n${USAGE}`]);
  }

  const raw: Partial<Record<ConfigKey, string>> = {};
  const origin: Partial<Record<ConfigKey, string>> = {};
  for (const [key, s] of Object.entries(SOURCES) as [ConfigKey, (typeof SOURCES)[ConfigKey]][]) {
    const fromFlag = s.flag ? flags[s.flag] : undefined;
    const fromEnv = env[s.env];
    // An empty variable counts as unset: Helm charts and compose files often render `FOO=""`.
    if (typeof fromFlag === 'string') [raw[key], origin[key]] = [fromFlag, `--${s.flag}`];
    else if (fromEnv !== undefined && fromEnv !== '') [raw[key], origin[key]] = [fromEnv, s.env];
  }

  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const key = issue.path[0] as ConfigKey;
        const name = origin[key] ?? SOURCES[key]?.env ?? String(key);
        return `${name}=${JSON.stringify(raw[key] ?? '')}: ${issue.message}`;
      }),
    );
  }
  return parsed.data;
}
