/**
 * "No torn output": with greedy requests, every answer served under one value of a header (a base version, an
 * edit sequence number) must be the same text. Keyed by request template too, since templates differ in prompt.
 */
export class ConsistencyCheck {
  private readonly seen = new Map<string, Map<string, number>>();

  constructor(readonly header: string) {}

  record(template: number, headerValue: string | undefined, text: string): void {
    const key = `${template}\u0000${headerValue ?? '(none)'}`;
    const texts = this.seen.get(key) ?? new Map<string, number>();
    texts.set(text, (texts.get(text) ?? 0) + 1);
    this.seen.set(key, texts);
  }

  /** Distinct header values seen, and the groups whose answers differ. */
  verdict(): { values: number; torn: string[] } {
    const values = new Set([...this.seen.keys()].map((k) => k.split('\u0000')[1]));
    const torn = [...this.seen]
      .filter(([, texts]) => texts.size > 1)
      .map(([key, texts]) => `${this.header}=${key.split('\u0000')[1]} (request ${key.split('\u0000')[0]}): ${texts.size} different answers`);
    return { values: values.size, torn };
  }
}

/** The generated text of a completion or chat answer (JSON), or of an SSE stream (its chunks joined). */
export function answerText(body: string): string {
  if (body.startsWith('{')) {
    const json = JSON.parse(body) as { choices?: Array<{ text?: string; message?: { content?: string } }> };
    const choice = json.choices?.[0];
    return choice?.text ?? choice?.message?.content ?? '';
  }
  let text = '';
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    const chunk = JSON.parse(line.slice(6)) as { choices?: Array<{ text?: string; delta?: { content?: string } }> };
    text += chunk.choices?.[0]?.text ?? chunk.choices?.[0]?.delta?.content ?? '';
  }
  return text;
}
