/**
 * SerialIngest on real pty pairs (socat) and a real SqliteSpool.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RoutedReading } from '../../../src/core/envelope.js';
import type { Spool } from '../../../src/spool/interface.js';
import { ingestedTotal, ptyPair, startSerial, tempDir, waitFor, type Harness, type PtyPair } from './helpers.js';

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
    await d.write('hello world');
    // 'hello world' can only be a reading once its gap has passed: then 'again' is a new frame.
    await waitFor(() => ingestedTotal(h.ingest) === 8, 'eight readings (all but the last timeout frame)');
    await d.write('again');
    await waitFor(() => ingestedTotal(h.ingest) === 9, 'nine readings');
    // The end of every stream: after stop() nothing read is left uncounted, so exact counts hold.
    await h.ingest.stop();
    const got = await h.spooled();
    const byTopic = (t: string): string[] => got.filter((r) => r.topic === t).map((r) => r.payload);
    assert.deepEqual(byTopic('sensor/line'), ['one', 'two\r']);
    assert.deepEqual(byTopic('sensor/regex'), ['T=12', 'T=-3', 'T=4']);
    assert.deepEqual(got.filter((r) => r.topic === 'sensor/length').map((r) => [...r.payloadBytes]), [[1, 2, 3, 4], [5, 6, 7, 8]]);
    assert.deepEqual(byTopic('sensor/timeout'), ['hello world', 'again']);
    assert.equal(got.length, 9);
    assert.deepEqual(h.ingest.stats().rejected, { partial: 1 }, 'the 9th byte of the length port, a frame that never ended');
  });

  it('regex framing: a frame that ends a chunk is stored without waiting for more bytes; one that could still grow, after gapMs of quiet', async () => {
    const [closed, open] = [await pair('r-closed'), await pair('r-open')];
    const h = await start([
      // A gap of a minute: this frame can only come through because it is complete, not by its timer.
      { name: 'closed', path: closed.device, topic: 'sensor/{port}', framing: { mode: 'regex', pattern: 'T=\\d+;', gapMs: 60_000 } },
      { name: 'open', path: open.device, topic: 'sensor/{port}', framing: { mode: 'regex', pattern: 'T=\\d+', gapMs: 100 } },
    ]);
    await waitFor(() => h.ingest.stats().connections === 2, 'both ports to open');
    await closed.write('T=21;');
    await waitFor(() => ingestedTotal(h.ingest) === 1, 'T=21; with no byte after it');
    await open.write('T=22');
    await waitFor(() => ingestedTotal(h.ingest) === 2, 'T=22 once the line was quiet for 100 ms');
    assert.deepEqual((await h.spooled()).map((r) => `${r.topic} ${r.payload}`), ['sensor/closed T=21;', 'sensor/open T=22']);
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
    await waitFor(() => ingestedTotal(h.ingest) === 9, 'nine readings');
    // The last line of each port is among the nine, so every byte was read; after stop() every
    // frame read is counted one way or the other, and the counts below are exact.
    await h.ingest.stop();
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
    // 60 in one burst: the rate limit's burst (10 lines a minute a port and reason), not one line each.
    assert.equal(h.lines.filter((l) => l.reason === 'unrouted').length, 10);
  });

  it('while an append is pending the port is paused: it reads no further than its stream buffer, one append at a time, order kept', async () => {
    const p = await pair('held');
    const witness = await pair('witness');
    const appends: Array<{ readings: readonly RoutedReading[]; release: () => void }> = [];
    let pending = 0;
    let overlapped = false;
    let witnessed = 0;
    const held: Pick<Spool, 'append'> = {
      append: (readings) => {
        // The witness port is stored at once; the held port's appends wait until the test releases them.
        if (readings[0]!.topic === 'raw/witness') {
          witnessed += readings.length;
          return Promise.resolve();
        }
        if (pending > 0) overlapped = true;
        pending += 1;
        return new Promise<void>((resolve) => {
          appends.push({ readings, release: () => { pending -= 1; resolve(); } });
        });
      },
    };
    const h = await start([
      { name: 'held', path: p.device, topic: 'sensor/{port}' },
      { name: 'witness', path: witness.device, topic: 'raw/{port}' },
    ], { spool: held });
    await waitFor(() => h.ingest.stats().connections === 2, 'both ports to open');
    await p.write('first\n');
    await waitFor(() => appends.length === 1, 'the first append');
    const n = 10_000;
    const lines = Array.from({ length: n }, (_, i) => `line ${i} ${'v'.repeat(24)}`);
    const text = lines.map((l) => `${l}\n`).join('');
    // Several times the stream buffer (64 KiB): this write completes only once the port reads again.
    const writing = p.write(text);
    await witness.write(text);
    // By the time the free port has read every line, a port that was not paused would have too.
    await waitFor(() => witnessed === n, 'the witness port to store its lines');
    const read = h.ingest.stats().ports.held!.bytesRead;
    assert.ok(read <= 'first\n'.length + 2 * 64 * 1024, `the held port read ${read} of ${'first\n'.length + text.length} bytes`);
    assert.equal(appends.length, 1, 'no second append while the first is pending');
    assert.equal(h.ingest.stats().ingested['/queue/telemetry'], undefined, 'nothing counted as ingested before the commit');
    const seen: string[] = [];
    for (let i = 0; seen.length < n + 1; i++) {
      await waitFor(() => appends.length > i, `append ${i}`);
      seen.push(...appends[i]!.readings.map((r) => r.payload.toString()));
      appends[i]!.release();
    }
    await writing;
    assert.deepEqual(seen, ['first', ...lines]);
    assert.equal(overlapped, false, 'never two appends of the port at once');
    await waitFor(() => h.ingest.stats().ingested['/queue/telemetry'] === n + 1, 'all counted');
  });

  it('a full spool under policy block holds the port back; nothing is lost or reordered', async () => {
    const p = await pair('full');
    const h = await start([{ name: 'full', path: p.device, topic: 'sensor/{port}' }], { spoolOptions: { maxReadings: 10, policy: 'block' } });
    await waitFor(() => h.ingest.stats().connections === 1, 'the port to open');
    const n = 300;
    await p.write(Array.from({ length: n }, (_, i) => `r${i}\n`).join(''));
    await waitFor(() => h.spool.stats().blocked, 'the spool to block');
    assert.ok(ingestedTotal(h.ingest) <= 10, `${ingestedTotal(h.ingest)} ingested into a spool that holds 10`);
    const got: string[] = [];
    while (got.length < n) {
      const batch = await h.spool.lease('/queue/telemetry', 100);
      got.push(...batch.map((r) => r.payload.toString()));
      await h.spool.ack(batch.map((r) => r.seq));
      // Nothing leasable yet (stored, its fsync not back): a turn of the event loop lets it come back.
      if (batch.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.ok(h.spool.stats().depth <= 10);
    }
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => `r${i}`));
    // Counted once each append's promise has resolved, which can be just after the lease saw its rows.
    await waitFor(() => ingestedTotal(h.ingest) === n, `${n} counted as ingested`);
  });

  it('stop() stores every frame already read, also what the paused stream read ahead, and counts the unfinished one; nothing twice after a restart', async () => {
    const p = await pair('stop-now');
    const run = join(dir, 'stop-now-run');
    const port = { name: 'stop-now', path: p.device, topic: 'sensor/{port}' };
    // A group commit of 1.5 s keeps the first append waiting in the spool's queue: stop() comes
    // while readings are queued there and the port is paused with the rest read ahead in its
    // stream. The grace of a minute only bounds a hang: each append takes a group commit.
    const first = await startSerial(run, [port], { spoolOptions: { groupCommitMs: 1500 }, stopGraceMs: 60_000 });
    harnesses.push(first);
    await waitFor(() => first.ingest.stats().connections === 1, 'the port to open');
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i}`);
    const text = `${lines.map((l) => `${l}\n`).join('')}unfinished`;
    await p.write(text.slice(0, 100));
    await waitFor(() => first.ingest.stats().ports['stop-now']!.bytesRead === 100, 'the first chunk to be read');
    await p.write(text.slice(100));
    await waitFor(() => first.ingest.stats().ports['stop-now']!.bytesRead === text.length, 'every byte to be read');
    await first.ingest.stop();
    assert.deepEqual(first.ingest.stats().ingested, { '/queue/telemetry': 300 }, 'stored before stop() resolved');
    assert.deepEqual(first.ingest.stats().rejected, { partial: 1 });
    const partial = first.lines.find((l) => l.reason === 'partial');
    assert.equal(partial?.bytes, 'unfinished'.length);
    assert.equal(partial?.port, 'stop-now');
    await first.stop();

    // Restarted on the same spool directory and device: what was committed is there, once.
    const second = await startSerial(run, [port]);
    harnesses.push(second);
    await waitFor(() => second.ingest.stats().connections === 1, 'the port to open again');
    await p.write('after the restart\n');
    await waitFor(() => ingestedTotal(second.ingest) === 1, 'a line after the restart');
    assert.deepEqual((await second.spooled()).map((r) => r.payload), [...lines, 'after the restart'],
      'every complete line exactly once, in order; the unfinished one did not glue onto the next');
  });

  it('stop() gives up, counted and logged, on readings the spool has no room for within stopGraceMs', async () => {
    const p = await pair('stuck');
    const h = await start([{ name: 'stuck', path: p.device, topic: 'sensor/{port}' }],
      { spoolOptions: { maxReadings: 5, policy: 'block' }, stopGraceMs: 300 });
    await waitFor(() => h.ingest.stats().connections === 1, 'the port to open');
    const lines = Array.from({ length: 20 }, (_, i) => `r${i}`);
    const text = lines.map((l) => `${l}\n`).join('');
    await p.write(text);
    await waitFor(() => h.spool.stats().blocked, 'the spool to block');
    await waitFor(() => h.ingest.stats().ports.stuck!.bytesRead === text.length, 'every byte to be read');
    // Resolves (the test's timeout bounds it) although the spool never gets room.
    await h.ingest.stop();
    assert.equal(h.ingest.stats().connections, 0);
    const stored = ingestedTotal(h.ingest);
    const given = h.ingest.stats().rejected.stopped ?? 0;
    assert.ok(stored >= 1 && stored <= 5, `${stored} ingested into a spool that holds 5`);
    assert.equal(stored + given, 20, `every line read is stored or counted: ${stored} stored, ${given} given up`);
    const logged = h.lines.find((l) => l.msg === 'serial: readings read but not stored: the spool had no room for them before the stop grace ran out');
    assert.equal(logged?.level, 'error');
    assert.equal(logged?.readings, given);
    assert.deepEqual((await h.spooled()).map((r) => r.payload), lines.slice(0, stored), 'the first ones, in order');
  });
});
