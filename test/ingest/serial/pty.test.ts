/**
 * SerialIngest on real pty pairs (socat) and a real SqliteSpool.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RoutedReading } from '../../../src/core/envelope.js';
import type { Spool } from '../../../src/spool/interface.js';
import { ingestedTotal, ptyPair, sleep, startSerial, tempDir, waitFor, type Harness, type PtyPair } from './helpers.js';

describe('serial ingest on socat ptys', () => {
  let dir: string;
  const pairs: PtyPair[] = [];
  const harnesses: Harness[] = [];

  before(async () => {
    dir = await tempDir();
  });

  after(async () => {
    for (const h of harnesses) await h.stop().catch(() => undefined);
    for (const p of pairs) await p.kill();
    await rm(dir, { recursive: true, force: true });
  });

  async function pair(name: string): Promise<PtyPair> {
    const p = await ptyPair(join(dir, name));
    pairs.push(p);
    return p;
  }

  async function start(...args: Parameters<typeof startSerial> extends [string, ...infer R] ? R : never): Promise<Harness> {
    const h = await startSerial(join(dir, `run${harnesses.length}`), ...args);
    harnesses.push(h);
    return h;
  }

  it('5,000 lines at full speed arrive complete and in order', async () => {
    const p = await pair('fast');
    const h = await start([{ name: 'fast', path: p.device, topic: 'sensor/{port}/line', baudRate: 115200 }]);
    await waitFor(() => h.ingest.stats().connections === 1, 'the port to open');
    const n = 5000;
    const text = Array.from({ length: n }, (_, i) => `reading ${i} ${'v'.repeat(i % 40)}\r\n`).join('');
    await p.write(text);
    await waitFor(() => ingestedTotal(h.ingest) >= n, `${n} readings`, 20_000);
    const got = await h.spooled();
    assert.equal(got.length, n);
    for (let i = 0; i < n; i++) {
      assert.equal(got[i]!.payload, `reading ${i} ${'v'.repeat(i % 40)}`);
      assert.equal(got[i]!.topic, 'sensor/fast/line');
    }
    assert.deepEqual(h.ingest.stats().rejected, {});
    assert.deepEqual(h.ingest.stats().ingested, { '/queue/telemetry': n });
  });

  it('each framing mode, on four ports at once', async () => {
    const [a, b, c, d] = [await pair('f-line'), await pair('f-regex'), await pair('f-length'), await pair('f-timeout')];
    const h = await start([
      { name: 'line', path: a.device, topic: 'sensor/{port}', framing: { mode: 'line', delimiter: ';' } },
      { name: 'regex', path: b.device, topic: 'sensor/{port}', framing: { mode: 'regex', pattern: 'T=-?\\d+' } },
      { name: 'length', path: c.device, topic: 'sensor/{port}', framing: { mode: 'length', length: 4 }, decode: 'raw' },
      { name: 'timeout', path: d.device, topic: 'sensor/{port}', framing: { mode: 'timeout', gapMs: 40 } },
    ]);
    await waitFor(() => h.ingest.stats().connections === 4, 'four ports to open');
    await a.write('one;two\r;');
    await b.write('xxT=12 yyT=-3 T=');
    await b.write('4\n');
    await c.write(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    await d.write('hello ');
    await d.write('world');
    await sleep(150);
    await d.write('again');
    await waitFor(() => ingestedTotal(h.ingest) >= 9, 'nine readings');
    await sleep(100);
    const got = await h.spooled();
    const byTopic = (t: string): string[] => got.filter((r) => r.topic === t).map((r) => r.payload);
    assert.deepEqual(byTopic('sensor/line'), ['one', 'two\r']);
    assert.deepEqual(byTopic('sensor/regex'), ['T=12', 'T=-3', 'T=4']);
    assert.deepEqual(got.filter((r) => r.topic === 'sensor/length').map((r) => [...r.payloadBytes]), [[1, 2, 3, 4], [5, 6, 7, 8]]);
    assert.deepEqual(byTopic('sensor/timeout'), ['hello world', 'again']);
    assert.equal(got.length, 9);
  });

  it('each decoding mode, and bad input is counted while the port keeps going', async () => {
    const [raw, text, json, csv] = [await pair('d-raw'), await pair('d-text'), await pair('d-json'), await pair('d-csv')];
    const h = await start([
      { name: 'raw', path: raw.device, topic: 'raw/{port}', decode: 'raw', maxFrame: 16 },
      { name: 'text', path: text.device, topic: 'sensor/{port}', decode: 'text', maxFrame: 16 },
      { name: 'json', path: json.device, topic: 'sensor/{line}/{metric}', decode: 'json' },
      { name: 'csv', path: csv.device, topic: 'sensor/{line}/{metric}', decode: 'csv', columns: ['line', 'metric', 'value'] },
    ]);
    await waitFor(() => h.ingest.stats().connections === 4, 'four ports to open');
    await raw.write(Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, 0x0a]), Buffer.from('x'.repeat(40) + '\nafter\n')]));
    await text.write(Buffer.concat([Buffer.from('ok1\n'), Buffer.from([0xc3, 0x28, 0x0a]), Buffer.from('y'.repeat(100) + '\nok2\n')]));
    await json.write('{"line":"l1","metric":"temp","v":21.5}\n{broken\n[1,2]\n{"line":"l2"}\n{"line":"l2","metric":"rh","v":40}\n{"line":"l3","metric":"x"}\n');
    await csv.write('l1,temp,21.5\nl1,temp\nl2,rh,40,extra\nl2,rh,40\n');
    await waitFor(() => ingestedTotal(h.ingest) >= 9, 'nine readings');
    await sleep(150);
    const telemetry = await h.spooled('/queue/telemetry');
    const rawOnes = await h.spooled('/queue/raw');
    assert.deepEqual(rawOnes.map((r) => [...r.payloadBytes]), [[0xff, 0xfe, 0x00], [...Buffer.from('after')]]);
    assert.deepEqual(telemetry.filter((r) => r.topic === 'sensor/text').map((r) => r.payload), ['ok1', 'ok2']);
    const rest = telemetry.filter((r) => r.topic !== 'sensor/text').map((r) => `${r.topic} ${r.payload}`);
    assert.deepEqual(rest.filter((r) => r.includes('"v"')), [
      'sensor/l1/temp {"line":"l1","metric":"temp","v":21.5}', 'sensor/l2/rh {"line":"l2","metric":"rh","v":40}']);
    assert.deepEqual(rest.filter((r) => r.includes('"value"')), [
      'sensor/l1/temp {"line":"l1","metric":"temp","value":21.5}', 'sensor/l2/rh {"line":"l2","metric":"rh","value":40}']);
    // {"line":"l3","metric":"x"} is routed: sensor/l3/x matches sensor/#.
    assert.equal(telemetry.length, 7);
    assert.deepEqual(h.ingest.stats().rejected, { too_long: 2, invalid_utf8: 1, invalid_json: 2, no_topic: 1, invalid_csv: 2 });
    assert.ok(h.lines.some((l) => l.reason === 'too_long' && l.port === 'raw' && l.msg === 'serial frame dropped: longer than maxFrame'));
    assert.ok(h.lines.some((l) => l.reason === 'invalid_json' && l.port === 'json'));
  });

  it('unrouted topics are counted; garbage floods are logged at a limited rate', async () => {
    const p = await pair('unrouted');
    const h = await start([{ name: 'u', path: p.device, topic: 'other/{port}' }]);
    await waitFor(() => h.ingest.stats().connections === 1, 'the port to open');
    await p.write('a\nb\nc\n'.repeat(20));
    await waitFor(() => (h.ingest.stats().rejected.unrouted ?? 0) >= 60, '60 unrouted');
    assert.equal(ingestedTotal(h.ingest), 0);
    const logged = h.lines.filter((l) => l.reason === 'unrouted').length;
    assert.ok(logged >= 1 && logged <= 10, `${logged} lines logged`);
  });

  it('while an append is pending the port is paused: one append at a time, order kept', async () => {
    const p = await pair('held');
    const appends: Array<{ readings: readonly RoutedReading[]; release: () => void }> = [];
    const held: Pick<Spool, 'append'> = {
      append: (readings) => new Promise<void>((resolve) => { appends.push({ readings, release: resolve }); }),
    };
    const h = await start([{ name: 'held', path: p.device, topic: 'sensor/{port}' }], { spool: held });
    await waitFor(() => h.ingest.stats().connections === 1, 'the port to open');
    await p.write('first\n');
    await waitFor(() => appends.length === 1, 'the first append');
    for (let i = 0; i < 200; i++) await p.write(`line ${i}\n`);
    await sleep(300);
    assert.equal(appends.length, 1, 'no second append while the first is pending');
    assert.equal(ingestedTotal(h.ingest), 0, 'nothing counted as ingested before the commit');
    const seen: string[] = [];
    for (let i = 0; seen.length < 201; i++) {
      await waitFor(() => appends.length > i, `append ${i}`);
      seen.push(...appends[i]!.readings.map((r) => r.payload.toString()));
      assert.equal(appends.length, i + 1, 'one append pending at a time');
      appends[i]!.release();
    }
    assert.deepEqual(seen, ['first', ...Array.from({ length: 200 }, (_, i) => `line ${i}`)]);
    await waitFor(() => ingestedTotal(h.ingest) === 201, 'all counted');
  });

  it('a full spool under policy block holds the port back; nothing is lost or reordered', async () => {
    const p = await pair('full');
    const h = await start([{ name: 'full', path: p.device, topic: 'sensor/{port}' }], { spoolOptions: { maxReadings: 10, policy: 'block' } });
    await waitFor(() => h.ingest.stats().connections === 1, 'the port to open');
    const n = 300;
    await p.write(Array.from({ length: n }, (_, i) => `r${i}\n`).join(''));
    await waitFor(() => h.spool.stats().blocked, 'the spool to block');
    await sleep(200);
    assert.ok(ingestedTotal(h.ingest) <= 10, `${ingestedTotal(h.ingest)} ingested into a spool that holds 10`);
    const got: string[] = [];
    while (got.length < n) {
      const batch = await h.spool.lease('/queue/telemetry', 100);
      got.push(...batch.map((r) => r.payload.toString()));
      await h.spool.ack(batch.map((r) => r.seq));
      if (batch.length === 0) await sleep(10);
      assert.ok(h.spool.stats().depth <= 10);
    }
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => `r${i}`));
    // Counted once each append's promise has resolved, which can be just after the lease saw its rows.
    await waitFor(() => ingestedTotal(h.ingest) === n, `${n} counted as ingested`);
  });

  it('stop() returns while an append waits for room in a full spool', async () => {
    const p = await pair('stuck');
    const h = await start([{ name: 'stuck', path: p.device, topic: 'sensor/{port}' }], { spoolOptions: { maxReadings: 5, policy: 'block' } });
    await waitFor(() => h.ingest.stats().connections === 1, 'the port to open');
    await p.write('x\n'.repeat(20));
    await waitFor(() => h.spool.stats().blocked, 'the spool to block');
    const started = Date.now();
    await h.ingest.stop();
    assert.ok(Date.now() - started < 2000, `stop took ${Date.now() - started} ms`);
    assert.equal(h.ingest.stats().connections, 0);
    const total = ingestedTotal(h.ingest);
    assert.ok(total >= 1 && total <= 5, `${total} ingested into a spool that holds 5`);
  });
});
