/**
 * Finds stop strings in generated text and says how much text is safe to stream: text that could still
 * turn out to be the start of a stop string is held back until the next token decides it.
 */
export class StopStrings {
  constructor(private readonly stops: readonly string[]) {}

  /** Index of the earliest stop string in `text`, or -1. */
  firstMatch(text: string, from = 0): number {
    let earliest = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop, Math.max(0, from - stop.length + 1));
      if (at >= 0 && (earliest < 0 || at < earliest)) earliest = at;
    }
    return earliest;
  }

  /** Length of the prefix of `text` that no stop string can still claim. */
  safeLength(text: string): number {
    let hold = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > hold; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    return text.length - hold;
  }
}
