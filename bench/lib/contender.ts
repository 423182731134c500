/**
 * A generate loop in its own process, driven over IPC: each contender of bench/serve gets a process of its
 * own, as the Patchbay server does, so no two ORT thread pools share one process (idle pools spin and would
 * steal the cores of whichever contender runs next).
 *
 *   parent → { prompt: string, tokens: number }      child → { ms: number, text: string }
 *   parent → { prompts: string[], tokens }           child → { ms, text (of the first), texts }   (llama.cpp:
 *                                                    the prompts decode concurrently, one sequence each)
 * Started with argv: <kind: bare | transformers.js | llama.cpp> <modelDir, or the GGUF file for llama.cpp> <threads> [sequences]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Job {
  prompt?: string;
  prompts?: string[];
  tokens: number;
}
interface Done {
  ms: number;
  text: string;
  texts?: string[];
}

export type ContenderKind = 'bare' | 'transformers.js' | 'llama.cpp';

export class Contender {
  private constructor(private readonly child: ChildProcess) {}

  static async start(kind: ContenderKind, modelDir: string, threads: number, sequences = 1): Promise<Contender> {
    const child = fork(fileURLToPath(import.meta.url), [kind, modelDir, String(threads), String(sequences)], { execArgv: ['--import', 'tsx'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`${kind} contender exited with ${code}`)));
    });
    return new Contender(child);
  }

  /** Rejects if the contender's process dies mid-run (it did under memory pressure: a crash must not hang the bench). */
  run(job: Job): Promise<Done> {
    return new Promise((resolve, reject) => {
      const died = (code: number | null, signal: string | null) => reject(new Error(`contender process exited (code ${code}, signal ${signal}) during a run`));
      this.child.once('exit', died);
      this.child.once('message', (m) => {
        this.child.off('exit', died);
        resolve(m as Done);
      });
      this.child.send(job);
    });
  }

  stop(): void {
    this.child.kill();
  }
}

async function serve(kind: string, modelDir: string, threads: number, sequences: number): Promise<void> {
  let generate: (job: Job) => Promise<string | string[]>;
  if (kind === 'llama.cpp') {
    const { LlamaCppLoop } = await import('./llama-cpp.ts');
    const loop = await LlamaCppLoop.create(modelDir, threads, sequences);
    generate = async ({ prompt, prompts, tokens }) => {
      const outs = await loop.generate((prompts ?? [prompt!]).map((p) => loop.tokenize(p)), tokens);
      const texts = outs.map((o) => loop.detokenize(o));
      return prompts ? texts : texts[0]!;
    };
  } else if (kind === 'bare') {
    const { readModelInfo } = await import('../../src/runtime/model-config.ts');
    const { HfTokenizer } = await import('../../src/runtime/tokenizer.ts');
    const { BareLoop } = await import('./bare-loop.ts');
    const tokenizer = await HfTokenizer.load(modelDir);
    const loop = await BareLoop.create(await readModelInfo(modelDir), threads);
    generate = async ({ prompt, tokens }) => tokenizer.decode(await loop.generate(tokenizer.encode(prompt!), tokens));
  } else {
    const { pipeline, env } = await import('@huggingface/transformers');
    env.localModelPath = dirname(modelDir) + '/';
    env.allowRemoteModels = false;
    const pipe = await pipeline('text-generation', basename(modelDir), {
      dtype: 'fp32',
      device: 'cpu',
      session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
    } as never);
    generate = async ({ prompt, tokens }) => {
      const out = (await pipe(prompt!, { max_new_tokens: tokens, min_new_tokens: tokens, do_sample: false, return_full_text: false } as never)) as Array<{ generated_text: string }>;
      return out[0]!.generated_text;
    };
  }
  process.on('message', async (job: Job) => {
    const started = performance.now();
    const out = await generate(job);
    const ms = performance.now() - started;
    process.send!((Array.isArray(out) ? { ms, text: out[0] ?? '', texts: out } : { ms, text: out }) satisfies Done);
  });
  process.send!('ready');
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const [kind, modelDir, threads, sequences] = process.argv.slice(2);
  await serve(kind!, modelDir!, Number(threads), Number(sequences ?? 1));
}
