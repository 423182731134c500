/** Scenario files, request expansion and the runner's verdict (the runs themselves: `npm run loadtest`, CI smoke). */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { answerText, ConsistencyCheck } from '../../loadtest/lib/consistency.ts';
import { drawIndex, expandBody, expandPath, loadScenario, SCENARIO_DIR, zipfCdf } from '../../loadtest/lib/scenario.ts';
import { judge, metricTotal, percentile, tokensIn, type Summary } from '../../loadtest/lib/summary.ts';

describe('load scenarios', () => {
  it('every scenario file validates and has thresholds', async () => {
    const names = (await readdir(SCENARIO_DIR)).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
    assert.ok(names.includes('smoke') && names.includes('adapters'));
    for (const name of names) {
      const s = await loadScenario(name);
      assert.equal(s.name, name, `${name}.json names itself`);
      assert.ok(s.thresholds.p95Ms > 0);
    }
  });

  it('refuses unknown and malformed scenario names with a message', async () => {
    await assert.rejects(loadScenario('no-such'), /no scenario no-such/);
    await assert.rejects(loadScenario('../package'), /lower-case words/);
  });

  it('draws Zipf ranks with the right frequencies', () => {
    const cdf = zipfCdf(4, 1);
    assert.ok(Math.abs(cdf[3]! - 1) < 1e-12);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 10_000; i++) counts[drawIndex(cdf, (i + 0.5) / 10_000)]!++;
    const h = 1 + 1 / 2 + 1 / 3 + 1 / 4;
    counts.forEach((c, k) => assert.ok(Math.abs(c / 10_000 - 1 / (k + 1) / h) < 1e-3, `rank ${k + 1}: ${c}`));
  });

  it('substitutes $base and $adapter in request bodies', () => {
    const body = expandBody({ model: '$adapter', prompt: '$base is literal only as a whole value', n: 1 }, { base: 'b', adapter: 'a1' });
    assert.deepEqual(JSON.parse(body!), { model: 'a1', prompt: '$base is literal only as a whole value', n: 1 });
    assert.equal(JSON.parse(expandBody({ model: '$adapter' }, { base: 'b' })!).model, 'b');
    assert.deepEqual(JSON.parse(expandBody({ patches: [{ id: '$patch', alpha: 1 }] }, { patch: 'rws-typos' })!), { patches: [{ id: 'rws-typos', alpha: 1 }] });
    assert.equal(expandPath('/admin/patches/$patch/apply', { patch: 'a b' }), '/admin/patches/a%20b/apply');
    assert.equal(expandPath('/admin/patches/$unknown/apply', {}), '/admin/patches/$unknown/apply');
  });

  it('finds torn output: different greedy answers under one header value', () => {
    const check = new ConsistencyCheck('x-patchbay-base-version');
    check.record(0, '0', 'ROMEO. But soft');
    check.record(0, '0', 'ROMEO. But soft');
    check.record(0, '1', 'ROMEO. But hard');
    check.record(1, '1', 'another prompt, another answer');
    assert.deepEqual(check.verdict(), { values: 2, torn: [] });
    check.record(0, '1', 'ROMEO. But torn');
    assert.deepEqual(check.verdict().torn, ['x-patchbay-base-version=1 (request 0): 2 different answers']);
    assert.equal(answerText('{"choices":[{"text":"abc"}]}'), 'abc');
    assert.equal(answerText('{"choices":[{"message":{"content":"hi"}}]}'), 'hi');
    assert.equal(answerText('data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[{"delta":{"content":"b"}}]}\n\ndata: [DONE]\n\n'), 'ab');
  });

  it('counts completion tokens in JSON answers and SSE streams', () => {
    assert.equal(tokensIn('{"usage":{"prompt_tokens":3,"completion_tokens":7}}'), 7);
    const stream = ['data: {"choices":[{"text":"a"}]}', 'data: {"choices":[],"usage":{"completion_tokens":5}}', 'data: [DONE]', ''].join('\n\n');
    assert.equal(tokensIn(stream), 5);
    assert.equal(tokensIn('data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[{"text":"b"}]}\n\ndata: [DONE]\n\n'), 2);
  });

  it('fails a run on errors, latency and on no completed request', () => {
    const base: Summary = { requests: 100, errors: 0, errorRate: 0, rps: 10, p50: 100, p95: 200, p99: 300, tokensPerSecond: 50, lines: [] };
    const t = { errorRate: 0, p95Ms: 250, p99Ms: 400 };
    assert.deepEqual(judge(base, t), []);
    assert.equal(judge({ ...base, errors: 1, errorRate: 0.01 }, t).length, 1);
    assert.match(judge({ ...base, p95: 251 }, t)[0]!, /p95 251 ms > 250 ms/);
    assert.match(judge({ ...base, p99: 500 }, t)[0]!, /p99/);
    assert.ok(judge({ ...base, requests: 0, p95: Number.NaN, p99: Number.NaN }, t).some((f) => /no request/.test(f)));
    assert.equal(percentile([5, 1, 4, 2, 3], 50), 3);
    const exposition = '# HELP x\npatchbay_a_total{kind="x"} 2\npatchbay_a_total{kind="y"} 3\npatchbay_ab_total 9\n';
    assert.equal(metricTotal(exposition, 'patchbay_a_total'), 5);
    assert.deepEqual(judge(base, { ...t, metricsAtLeast: { patchbay_a_total: 5 } }, exposition), []);
    assert.match(judge(base, { ...t, metricsAtLeast: { patchbay_a_total: 6 } }, exposition)[0]!, /patchbay_a_total = 5 < 6/);
    assert.match(judge(base, { ...t, metricsAtLeast: { patchbay_b_total: 1 } }, exposition)[0]!, /absent/);
    assert.equal(percentile([5, 1, 4, 2, 3], 95), 5);
  });
});
