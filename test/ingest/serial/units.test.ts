import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SerialPortSchema } from '../../../src/config/serial-schema.js';
import { createFramer, decodeFrame, fillTopic, type SerialPortConfig } from '../../../src/ingest/serial/index.js';
import type { Framing } from '../../../src/ingest/serial/config.js';

interface Out { frames: string[]; tooLong: number[]; partial: number[] }

function collector(framing: Framing, maxFrame = 4096): { out: Out; framer: ReturnType<typeof createFramer> } {
  const out: Out = { frames: [], tooLong: [], partial: [] };
  const framer = createFramer(framing, maxFrame, {
    onFrame: (f) => out.frames.push(f.toString('latin1')), onTooLong: (n) => out.tooLong.push(n), onPartial: (n) => out.partial.push(n),
  });
  return { out, framer };
}

/** Pushes the chunks; with `end`, flushes as at the end of the stream. */
function frames(framing: Framing, chunks: Array<string | Buffer>, maxFrame = 4096, end = false): Out {
  const { out, framer } = collector(framing, maxFrame);
  for (const chunk of chunks) framer.push(Buffer.from(chunk as string, 'latin1'));
  if (end) framer.flush();
  framer.close();
  return out;
}

const regex = (pattern: string, gapMs = 50): Framing => ({ mode: 'regex', pattern, gapMs });

describe('serial framing', () => {
  it('line: splits on \\n across chunks and strips a trailing \\r', () => {
    assert.deepEqual(frames({ mode: 'line', delimiter: '\n' }, ['a\r\nb', 'c\n', '\n', 'd\r', '\ne']).frames, ['a', 'bc', '', 'd']);
  });

  it('line: a multi-byte delimiter split over chunks; \\r is kept when the delimiter is not \\n', () => {
    assert.deepEqual(frames({ mode: 'line', delimiter: '<>' }, ['a<', '>b\r<', '>c']).frames, ['a', 'b\r']);
  });

  it('line: an over-long line is dropped and counted once, the next line comes through', () => {
    const long = 'x'.repeat(50);
    const out = frames({ mode: 'line', delimiter: '\n' }, ['ok1\n', long.slice(0, 20), long.slice(20), long, '\nok2\n'], 10);
    assert.deepEqual(out.frames, ['ok1', 'ok2']);
    assert.deepEqual(out.tooLong, [100]);
  });

  it('line: exactly maxFrame bytes pass, maxFrame + 1 do not', () => {
    const out = frames({ mode: 'line', delimiter: '\n' }, ['0123456789\r\n0123456789A\n'], 10);
    assert.deepEqual(out.frames, ['0123456789']);
    assert.deepEqual(out.tooLong, [11]);
  });

  it('line, at the end of the stream: an unfinished line is counted partial (its bytes); one already too long stays too_long', () => {
    const out = frames({ mode: 'line', delimiter: '\n' }, ['a\nunfinished'], 4096, true);
    assert.deepEqual(out, { frames: ['a'], tooLong: [], partial: [10] });
    const long = frames({ mode: 'line', delimiter: '\n' }, ['a\n', 'y'.repeat(30)], 10, true);
    assert.deepEqual(long, { frames: ['a'], tooLong: [30], partial: [] });
    assert.deepEqual(frames({ mode: 'line', delimiter: '\n' }, ['a\n'], 4096, true), { frames: ['a'], tooLong: [], partial: [] });
  });

  it('regex: each match is a frame, also across chunks; bytes between are dropped', () => {
    const out = frames(regex('T=\\d+;'), ['junkT=1', '2;xxT=3;T=', '4;T']);
    assert.deepEqual(out.frames, ['T=12;', 'T=3;', 'T=4;']);
  });

  it('regex: a match that ends a chunk and that no byte could change is a frame at once, with no timer', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    for (const [pattern, chunk, frame] of [
      ['T=\\d+;', 'xxT=12;', 'T=12;'],
      ['<[^>]*>', '<a b>', '<a b>'],
      ['<.*?>', '<a>', '<a>'],
      ['\\$GP[A-Z]+,[^*]*\\*[0-9A-F]{2}', '$GPGGA,1,2*4F', '$GPGGA,1,2*4F'],
      ['\\x02[^\\x03]*\\x03', '\x02abc\x03', '\x02abc\x03'],
    ] as const) {
      assert.deepEqual(frames(regex(pattern), [chunk]).frames, [frame], pattern);
    }
  });

  it('regex: a match that more bytes could extend waits for them, and is a frame after gapMs of quiet (mocked timers)', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { out, framer } = collector(regex('T=-?\\d+', 50));
    framer.push(Buffer.from('T=12'));
    assert.deepEqual(out.frames, [], '"3" could still follow');
    t.mock.timers.tick(49);
    framer.push(Buffer.from('3'));
    t.mock.timers.tick(49);
    assert.deepEqual(out.frames, [], 'each byte starts the gap again');
    t.mock.timers.tick(1);
    assert.deepEqual(out.frames, ['T=123']);
    framer.push(Buffer.from('T=4 T=5'));
    assert.deepEqual(out.frames, ['T=123', 'T=4'], 'the space ends T=4 at once; T=5 waits');
    t.mock.timers.tick(50);
    assert.deepEqual(out.frames, ['T=123', 'T=4', 'T=5']);
    framer.close();
  });

  it('regex: a match followed by a byte that could still lead on (an optional part) waits too', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { out, framer } = collector(regex('T=\\d+(\\.\\d+)?', 50));
    framer.push(Buffer.from('T=12.'));
    assert.deepEqual(out.frames, [], 'T=12 is not the frame yet: "5" would make it T=12.5');
    framer.push(Buffer.from('5;'));
    assert.deepEqual(out.frames, ['T=12.5']);
    framer.push(Buffer.from('T=7.'));
    t.mock.timers.tick(50);
    assert.deepEqual(out.frames, ['T=12.5', 'T=7'], 'quiet: T=7 as it is; the "." is dropped like any byte between matches');
    framer.close();
  });

  it('regex: a pattern outside the modelled syntax (\\b) still ends a frame at the end of a chunk, after gapMs', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { out, framer } = collector(regex('\\bT=\\d+;', 50));
    framer.push(Buffer.from('T=1; T=2;'));
    assert.deepEqual(out.frames, ['T=1;'], 'a match before the last byte is complete');
    t.mock.timers.tick(50);
    assert.deepEqual(out.frames, ['T=1;', 'T=2;']);
    framer.close();
  });

  it('regex, at the end of the stream: an open match is a frame; a frame in progress is partial; garbage is not counted', () => {
    assert.deepEqual(frames(regex('T=-?\\d+'), ['xxT=7 yy T=1', '2'], 4096, true), { frames: ['T=7', 'T=12'], tooLong: [], partial: [] });
    assert.deepEqual(frames(regex('T=\\d+;'), ['T=7; zz T=1'], 4096, true), { frames: ['T=7;'], tooLong: [], partial: [3] });
    assert.deepEqual(frames(regex('T=\\d+;'), ['T=7; zz'], 4096, true), { frames: ['T=7;'], tooLong: [], partial: [] });
  });

  it('regex: a long stretch without a match is dropped and counted', () => {
    const out = frames(regex('<[^>]*>'), ['<a>', 'z'.repeat(100), '<b>', 'c'], 10);
    assert.deepEqual(out.frames, ['<a>', '<b>']);
    assert.equal(out.tooLong.length, 1);
  });

  it('length: fixed-size frames regardless of chunking; too long lengths are all counted; a short last frame is partial', () => {
    assert.deepEqual(frames({ mode: 'length', length: 3 }, ['ab', 'cdefg', 'hi', 'j']).frames, ['abc', 'def', 'ghi']);
    const out = frames({ mode: 'length', length: 4 }, ['abcdefgh', 'i'], 3);
    assert.deepEqual(out.frames, []);
    assert.deepEqual(out.tooLong, [4, 4]);
    assert.deepEqual(frames({ mode: 'length', length: 3 }, ['abcde'], 4096, true), { frames: ['abc'], tooLong: [], partial: [2] });
  });

  it('timeout: a gap ends a frame; bytes within the gap join it; a frame too long is counted when its gap comes (mocked timers)', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { out, framer } = collector({ mode: 'timeout', gapMs: 30 }, 8);
    framer.push(Buffer.from('ab'));
    t.mock.timers.tick(29);
    framer.push(Buffer.from('cd'));
    t.mock.timers.tick(29);
    assert.deepEqual(out.frames, [], 'each byte starts the gap again');
    t.mock.timers.tick(1);
    assert.deepEqual(out.frames, ['abcd']);
    framer.push(Buffer.from('ef'));
    t.mock.timers.tick(30);
    framer.push(Buffer.from('0123456789'));
    t.mock.timers.tick(30);
    assert.deepEqual(out, { frames: ['abcd', 'ef'], tooLong: [10], partial: [] });
  });

  it('timeout, at the end of the stream: the bytes so far are a frame (no byte can follow)', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { out, framer } = collector({ mode: 'timeout', gapMs: 30 }, 8);
    framer.push(Buffer.from('xy'));
    framer.flush();
    assert.deepEqual(out.frames, ['xy']);
    t.mock.timers.tick(30);
    assert.deepEqual(out.frames, ['xy'], 'the timer went with the flush');
  });
});

describe('serial framing of garbage', () => {
  /** Deterministic random bytes (mulberry32), so a failure can be replayed. */
  function garbage(seed: number, chunks: number): Buffer[] {
    let state = seed >>> 0;
    const random = (): number => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    return Array.from({ length: chunks }, () => Buffer.from(Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256))));
  }

  for (const [framing, mark, frame] of [
    [{ mode: 'line', delimiter: '\n' }, '\nMARK\n', 'MARK'],
    [regex('MARK\\d;'), 'MARK7;', 'MARK7;'],
    [regex('<[^>]*>'), '><MARK>', '<MARK>'],
    [regex('\\x02[^\\x03]*\\x03'), '\x03\x02MARK\x03', '\x02MARK\x03'],
    [{ mode: 'timeout', gapMs: 20 }, 'MARK', 'MARK'],
  ] as Array<[Framing, string, string]>) {
    it(`${framing.mode} ${JSON.stringify(framing)}: random bytes never throw, long stretches are counted, and the next frame comes through (mocked timers)`, (t) => {
      t.mock.timers.enable({ apis: ['setTimeout'] });
      for (const seed of [1, 2, 3]) {
        const { out, framer } = collector(framing, 64);
        for (const chunk of garbage(seed, 200)) {
          framer.push(chunk);
          t.mock.timers.tick(5);
        }
        t.mock.timers.tick(100);
        const before = out.frames.length;
        framer.push(Buffer.from(mark, 'latin1'));
        t.mock.timers.tick(100);
        assert.ok(out.tooLong.length > 0, `seed ${seed}: 60 KB of garbage in frames of at most 64 bytes is counted too_long`);
        assert.ok(out.frames.slice(before).includes(frame), `seed ${seed}: ${JSON.stringify(out.frames.slice(before))}`);
        framer.flush();
        framer.close();
      }
    });
  }
});

describe('serial decoding and topics', () => {
  it('raw keeps any bytes; text refuses invalid UTF-8', () => {
    const bytes = Buffer.from([0xff, 0x00, 0x41]);
    const raw = decodeFrame(bytes, 'raw', undefined);
    assert.ok(raw.ok && raw.payload.equals(bytes));
    const text = decodeFrame(bytes, 'text', undefined);
    assert.equal(text.ok ? 'ok' : text.reason, 'invalid_utf8');
    const good = decodeFrame(Buffer.from('grüße'), 'text', undefined);
    assert.ok(good.ok && good.payload.toString() === 'grüße');
  });

  it('json: one object per frame; other JSON or garbage is invalid_json', () => {
    const ok = decodeFrame(Buffer.from(' {"line":"l1","v":2} '), 'json', undefined);
    assert.ok(ok.ok);
    assert.equal(ok.payload.toString(), '{"line":"l1","v":2}');
    assert.equal(ok.fields.line, 'l1');
    for (const bad of ['[1]', '3', '{"a":', 'null']) {
      const r = decodeFrame(Buffer.from(bad), 'json', undefined);
      assert.equal(r.ok ? 'ok' : r.reason, 'invalid_json', bad);
    }
  });

  it('csv: named columns, numbers as numbers; a wrong column count is invalid_csv', () => {
    const ok = decodeFrame(Buffer.from('l1,temp,21.5'), 'csv', ['line', 'metric', 'value']);
    assert.ok(ok.ok);
    assert.equal(ok.payload.toString(), '{"line":"l1","metric":"temp","value":21.5}');
    const bad = decodeFrame(Buffer.from('l1,temp'), 'csv', ['line', 'metric', 'value']);
    assert.equal(bad.ok ? 'ok' : bad.reason, 'invalid_csv');
  });

  it('topic templates: fields and {port}; missing, empty or level-breaking values give no topic', () => {
    assert.equal(fillTopic('sensor/{port}/{line}/{metric}', { line: 'l1', metric: 7, port: 'x' }, 'p1'), 'sensor/p1/l1/7');
    assert.equal(fillTopic('sensor/{line}', {}, 'p1'), undefined);
    assert.equal(fillTopic('sensor/{line}', { line: '' }, 'p1'), undefined);
    assert.equal(fillTopic('sensor/{line}', { line: 'a/b' }, 'p1'), undefined);
    assert.equal(fillTopic('sensor/{line}', { line: '#' }, 'p1'), undefined);
    assert.equal(fillTopic('sensor/{line}', { line: { x: 1 } }, 'p1'), undefined);
    assert.equal(fillTopic('sensor/fixed', {}, 'p1'), 'sensor/fixed');
  });
});

describe('serial config schema', () => {
  it('fills the defaults, and its output is a SerialPortConfig', () => {
    const config: SerialPortConfig = SerialPortSchema.parse({ name: 'p1', path: '/dev/ttyUSB0', topic: 'sensor/{port}' });
    assert.deepEqual(config, {
      name: 'p1', path: '/dev/ttyUSB0', topic: 'sensor/{port}', baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1,
      flowControl: 'none', framing: { mode: 'line', delimiter: '\n' }, maxFrame: 4096, decode: 'text',
    });
    const timeout = SerialPortSchema.parse({ name: 'p', path: '/dev/x', topic: 't', framing: { mode: 'timeout' } });
    assert.deepEqual(timeout.framing, { mode: 'timeout', gapMs: 50 });
    const regexDefaults = SerialPortSchema.parse({ name: 'p', path: '/dev/x', topic: 't', framing: { mode: 'regex', pattern: 'T=\\d+' } });
    assert.deepEqual(regexDefaults.framing, { mode: 'regex', pattern: 'T=\\d+', gapMs: 50 });
  });

  function problems(input: Record<string, unknown>): string[] {
    const result = SerialPortSchema.safeParse({ name: 'p1', path: '/dev/ttyUSB0', topic: 'sensor/{port}', ...input });
    assert.equal(result.success, false, JSON.stringify(input));
    return result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  }

  it('explains what is wrong', () => {
    assert.deepEqual(problems({ parity: 'maybe' }), ['parity: must be none, even, odd, mark or space']);
    assert.deepEqual(problems({ dataBits: 9 }), ['dataBits: must be 5, 6, 7 or 8']);
    assert.deepEqual(problems({ baud: 9600 }), [': Unrecognized key: "baud"'], 'config/load.ts names the key in its own words');
    assert.deepEqual(problems({ decode: 'csv' }), ['columns: is required for decode: csv']);
    assert.deepEqual(problems({ topic: 'sensor/+/x' }), ["topic: must not contain the MQTT wildcards '+' or '#' (a topic template such as sensor/{line}/{metric})"]);
    assert.deepEqual(problems({ topic: 'sensor/{line}' }), ['topic: {line} needs decode: json or csv (only {port} is known for text)']);
    assert.match(problems({ framing: { mode: 'regex', pattern: '(' } })[0]!, /^framing\.pattern: is not a valid regular expression/);
    assert.deepEqual(problems({ framing: { mode: 'length' } }), ['framing.length: Invalid input: expected number, received undefined']);
    assert.deepEqual(problems({ framing: { mode: 'bytes' } }), ['framing.mode: must have mode line, regex, length or timeout']);
    assert.deepEqual(problems({ framing: { mode: 'regex', pattern: 'T=\\d+', gapMs: 0 } }), ['framing.gapMs: must be at least 1 ms']);
  });
});
