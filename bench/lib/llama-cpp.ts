/**
 * llama.cpp (through node-llama-cpp's prebuilt CPU binary) as a bench contender on the same GGUF file:
 * greedy decode of exactly `tokens` tokens per sequence, EOS ignored, like the other contenders
 * (`ignore_eos`). `sequences` > 1 runs that many sequences of one context concurrently; node-llama-cpp
 * batches their pending tokens into one llama_decode per step — llama.cpp's own continuous batching.
 *
 * `build: 'never'`: only the prebuilt binary from npm is used (.npmrc skips the postinstall that would
 * download or compile llama.cpp); if it cannot load, the bench fails saying so.
 */
import { getLlama, LlamaLogLevel, type LlamaContext, type LlamaModel, type Token } from 'node-llama-cpp';

export class LlamaCppLoop {
  private constructor(
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
  ) {}

  static async create(ggufPath: string, threads: number, sequences: number, contextSize = 2048): Promise<LlamaCppLoop> {
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0 });
    const context = await model.createContext({ contextSize: contextSize * sequences, sequences, threads, batchSize: 512 });
    return new LlamaCppLoop(model, context);
  }

  tokenize(text: string): Token[] {
    return this.model.tokenize(text, false);
  }

  detokenize(ids: readonly Token[]): string {
    return this.model.detokenize(ids);
  }

  /** Greedy continuations of each prompt, `tokens` new tokens each, all sequences decoding together. */
  async generate(prompts: readonly Token[][], tokens: number): Promise<Token[][]> {
    const seqs = prompts.map(() => this.context.getSequence());
    try {
      return await Promise.all(
        prompts.map(async (prompt, i) => {
          const out: Token[] = [];
          // evaluate() feeds the prompt, then yields one sampled token per step; temperature 0 = argmax.
          for await (const t of seqs[i]!.evaluate(prompt, { temperature: 0 })) {
            out.push(t);
            if (out.length >= tokens) break;
          }
          return out;
        }),
      );
    } finally {
      for (const s of seqs) s.dispose();
    }
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }
}
