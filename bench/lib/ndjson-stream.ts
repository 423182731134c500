/**
 * A closed-loop NDJSON edit stream client for `POST /admin/edits/stream`: one line goes out, the next one
 * only after the server answered the previous one (ack or error), until the window ends; then the request
 * body ends and the client reads the rest of the progress (visibility events, the final `done`).
 * Written on node:http rather than fetch: fetch resolves only once response headers arrive and buffers a
 * streamed request body in ways that left last session's duplex fetch client with no edit delivered; a
 * ClientRequest writes each chunk as it is given and hands response chunks over as they arrive.
 */
import { request } from 'node:http';

export interface StreamResult {
  /** Every progress object the server sent, in order, with the client's receive time (ms since start). */
  events: (Record<string, unknown> & { at_ms: number })[];
  sent: number;
  ms: number;
}

export function streamEdits(url: string, token: string, lines: readonly string[], windowMs: number): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const events: StreamResult['events'] = [];
    let sent = 0;
    let ended = false;
    const req = request(`${url}/admin/edits/stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' },
    });
    const next = () => {
      if (ended) return;
      if (sent >= lines.length || performance.now() - started > windowMs) {
        ended = true;
        req.end();
        return;
      }
      req.write(`${lines[sent++]}\n`);
    };
    req.on('error', reject);
    req.on('response', (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const obj = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
          buf = buf.slice(nl + 1);
          events.push({ ...obj, at_ms: performance.now() - started });
          // Closed loop: an answered line (its number is the count sent so far) releases the next.
          if (obj['line'] === sent) next();
        }
      });
      res.on('end', () => resolve({ events, sent, ms: performance.now() - started }));
      res.on('error', reject);
    });
    req.flushHeaders();
    next();
  });
}
