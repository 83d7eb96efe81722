import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SerialPortSchema } from '../../../src/config/serial-schema.js';
import { createFramer, decodeFrame, fillTopic, type SerialPortConfig } from '../../../src/ingest/serial/index.js';
import type { Framing } from '../../../src/ingest/serial/config.js';
import { sleep } from './helpers.js';

function frames(framing: Framing, chunks: Array<string | Buffer>, maxFrame = 4096): { frames: string[]; tooLong: number[] } {
  const out = { frames: [] as string[], tooLong: [] as number[] };
  const framer = createFramer(framing, maxFrame, { onFrame: (f) => out.frames.push(f.toString('latin1')), onTooLong: (n) => out.tooLong.push(n) });
  for (const chunk of chunks) framer.push(Buffer.from(chunk as string, 'latin1'));
  return out;
}

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

  it('regex: each match is a frame, also across chunks; bytes between are dropped', () => {
    const out = frames({ mode: 'regex', pattern: 'T=\\d+;' }, ['junkT=1', '2;xxT=3;T=', '4;T']);
    assert.deepEqual(out.frames, ['T=12;', 'T=3;', 'T=4;']);
  });

  it('regex: a long stretch without a match is dropped and counted', () => {
    const out = frames({ mode: 'regex', pattern: '<[^>]*>' }, ['<a>', 'z'.repeat(100), '<b>', 'c'], 10);
    assert.deepEqual(out.frames, ['<a>', '<b>']);
    assert.equal(out.tooLong.length, 1);
  });

  it('length: fixed-size frames regardless of chunking; too long lengths are all counted', () => {
    assert.deepEqual(frames({ mode: 'length', length: 3 }, ['ab', 'cdefg', 'hi', 'j']).frames, ['abc', 'def', 'ghi']);
    const out = frames({ mode: 'length', length: 4 }, ['abcdefgh', 'i'], 3);
    assert.deepEqual(out.frames, []);
    assert.deepEqual(out.tooLong, [4, 4]);
  });

  it('timeout: a gap ends a frame', async () => {
    const got: string[] = [];
    const tooLong: number[] = [];
    const framer = createFramer({ mode: 'timeout', gapMs: 30 }, 8, { onFrame: (f) => got.push(f.toString()), onTooLong: (n) => tooLong.push(n) });
    framer.push(Buffer.from('ab'));
    await sleep(5);
    framer.push(Buffer.from('cd'));
    await sleep(80);
    framer.push(Buffer.from('ef'));
    await sleep(80);
    framer.push(Buffer.from('0123456789'));
    await sleep(80);
    framer.close();
    assert.deepEqual(got, ['abcd', 'ef']);
    assert.deepEqual(tooLong, [10]);
  });
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
  });

  function problems(input: Record<string, unknown>): string[] {
    const result = SerialPortSchema.safeParse({ name: 'p1', path: '/dev/ttyUSB0', topic: 'sensor/{port}', ...input });
    assert.equal(result.success, false, JSON.stringify(input));
    return result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  }

  it('explains what is wrong', () => {
    assert.deepEqual(problems({ parity: 'maybe' }), ['parity: must be none, even, odd, mark or space']);
    assert.deepEqual(problems({ dataBits: 9 }), ['dataBits: must be 5, 6, 7 or 8']);
    assert.deepEqual(problems({ baud: 9600 }).length, 1);
    assert.deepEqual(problems({ decode: 'csv' }), ['columns: is required for decode: csv']);
    assert.deepEqual(problems({ topic: 'sensor/+/x' }), ["topic: must not contain the MQTT wildcards '+' or '#' (a topic template such as sensor/{line}/{metric})"]);
    assert.deepEqual(problems({ topic: 'sensor/{line}' }), ['topic: {line} needs decode: json or csv (only {port} is known for text)']);
    assert.match(problems({ framing: { mode: 'regex', pattern: '(' } })[0]!, /^framing\.pattern: is not a valid regular expression/);
    assert.deepEqual(problems({ framing: { mode: 'length' } }).length, 1);
    assert.deepEqual(problems({ framing: { mode: 'bytes' } }).length, 1);
  });
});
