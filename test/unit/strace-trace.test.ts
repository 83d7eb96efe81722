/**
 * The trace reader and the PUBACK-after-sync check of test/peers (strace.ts, ack-order.ts), on
 * hand-written strace lines: the durability tests are only as good as these.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkAckOrder, pubacksWritten } from '../peers/ack-order.js';
import { parseTrace, unescapeC, written } from '../peers/strace.js';

const WAL = '/d/spool.db-wal';
const SOCK = (client: number): string => `TCP:[127.0.0.1:1999->127.0.0.1:${client}]`;
const hex = (bytes: number[] | Buffer): string => [...bytes].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
/** A line as strace -f --absolute-timestamps=unix,ns --syscall-times=ns -yy -x prints it; `at` in µs. */
const line = (tid: number, at: number, body: string): string => `${tid} 1700000000.${String(at * 1000).padStart(9, '0')} ${body}`;
const page = (text: string): string => hex(Buffer.concat([Buffer.alloc(10), Buffer.from(text, 'latin1'), Buffer.alloc(10)]));
const ID = '0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b';

describe('strace trace reader', () => {
  test('C strings as strace prints them: hex, octal, and the named escapes', () => {
    assert.deepEqual([...unescapeC('\\x40\\x02\\x00\\x01')], [0x40, 2, 0, 1]);
    assert.deepEqual([...unescapeC('a\\0b\\377\\1234')], [97, 0, 98, 255, 0o123, 52]);
    assert.equal(unescapeC('\\"q\\"\\\\\\n\\t').toString(), '"q"\\\n\t');
  });

  test('an unfinished call and its resumption on the same thread are one call, from entry to exit, whatever came between', () => {
    const calls = parseTrace([
      line(11, 100, `fdatasync(21<${WAL}> <unfinished ...>`),
      line(10, 150, `write(23<${SOCK(5000)}>, "${hex([0x40, 2, 0, 7])}", 4) = 4 <0.000010000>`),
      line(11, 400, '<... fdatasync resumed>) = 0 <0.000300000>'),
      line(10, 500, `pwrite64(20<${WAL}>, "${hex([1, 2, 3])}"..., 4096, 0) = 4096 <0.000002000>`),
      line(12, 600, `fdatasync(21<${WAL}>) = -1 EIO (Input/output error) (INJECTED) <0.000001000>`),
      line(10, 700, 'writev(23<TCP:[127.0.0.1:1999->127.0.0.1:5000]>, [{iov_base="\\x40\\x02", iov_len=2}, {iov_base="\\x00\\x08", iov_len=2}], 2) = 3 <0.000001000>'),
      line(10, 800, 'exit_group(74) = ?'),
      line(10, 900, '+++ exited with 74 +++'),
    ].join('\n'));
    assert.deepEqual(calls.map((c) => [c.tid, c.name, c.start / 1000, c.end / 1000, c.ret, c.errno, c.injected]), [
      [11, 'fdatasync', 100, 400, 0, undefined, false],
      [10, 'write', 150, 160, 4, undefined, false],
      [10, 'pwrite64', 500, 502, 4096, undefined, false],
      [12, 'fdatasync', 600, 601, -1, 'EIO', true],
      [10, 'writev', 700, 701, 3, undefined, false],
      [10, 'exit_group', 800, 800, undefined, undefined, false],
    ]);
    assert.equal(calls[0]!.target, WAL);
    assert.equal(calls[1]!.target, SOCK(5000));
    assert.deepEqual([...written(calls[4]!)], [0x40, 2, 0], 'a short write wrote only what it returned, across iovecs');
    assert.throws(() => written(calls[2]!), /only 3 were recorded/, 'a buffer cut by the string limit is not taken for the whole');
  });

  test('PUBACKs are read per connection, split across writes or several in one, each dated by the write of its first byte', () => {
    const calls = parseTrace([
      line(10, 100, `write(23<${SOCK(5000)}>, "${hex([0x20, 2, 0, 0, 0x40, 2, 0, 1, 0x40])}", 9) = 9 <0.000001000>`),
      line(10, 200, `write(24<${SOCK(6000)}>, "${hex([0x40, 2, 0, 1])}", 4) = 4 <0.000001000>`),
      line(10, 300, `write(23<${SOCK(5000)}>, "${hex([2, 0, 2, 0x40, 2, 0, 3])}", 7) = 7 <0.000001000>`),
      line(10, 400, `write(1<pipe:[77]>, "${hex([0x40, 2, 0, 9])}", 4) = 4 <0.000001000>`),
    ].join('\n'));
    assert.deepEqual(pubacksWritten(calls, 1999).map((p) => [p.clientPort, p.packetId, p.start / 1000]), [
      [5000, 1, 100], [6000, 1, 200], [5000, 2, 100], [5000, 3, 300],
    ]);
  });

  const acks = (lines: string[]): string[] => checkAckOrder({
    calls: parseTrace(lines.join('\n')), mqttPort: 1999, walFile: WAL,
    sent: new Map([['5000:1', 'T|0|000001|']]), pattern: /T\|\d+\|\d{6}\|/g,
  }).violations;
  const cell = page(`${ID}\x05sensor/x/temperatureT|0|000001|`);
  const size = cell.length / 4;
  const rowAt = (at: number): string => line(10, at, `pwrite64(20<${WAL}>, "${cell}", ${size}, 4120) = ${size} <0.000001000>`);
  const row = rowAt(100);
  const puback = line(10, 500, `write(23<${SOCK(5000)}>, "${hex([0x40, 2, 0, 1])}", 4) = 4 <0.000001000>`);

  test('the check passes a PUBACK after a sync that began after its row and ended before it, and reads the message id from the row', () => {
    const report = checkAckOrder({
      calls: parseTrace([row, line(11, 200, `fdatasync(21<${WAL}>) = 0 <0.000100000>`), puback].join('\n')),
      mqttPort: 1999, walFile: WAL, sent: new Map([['5000:1', 'T|0|000001|']]), pattern: /T\|\d+\|\d{6}\|/g,
    });
    assert.deepEqual(report.violations, []);
    assert.equal(report.acked[0]!.messageId, ID);
  });

  test('the check fails a PUBACK without such a sync: none, one still running, one begun before the row, one failed, one ended after a failure', () => {
    assert.match(acks([row, puback]).join(), /no successful WAL sync in between/);
    assert.match(acks([row, line(11, 200, `fdatasync(21<${WAL}> <unfinished ...>`), puback, line(11, 600, '<... fdatasync resumed>) = 0 <0.000400000>')]).join(), /no successful WAL sync/);
    assert.match(acks([line(11, 50, `fdatasync(21<${WAL}> <unfinished ...>`), row, line(11, 300, '<... fdatasync resumed>) = 0 <0.000250000>'), puback]).join(), /no successful WAL sync/);
    assert.match(acks([row, line(11, 200, `fdatasync(21<${WAL}>) = -1 EIO (Input/output error) (INJECTED) <0.000001000>`), puback]).join(), /no successful WAL sync/);
    assert.match(acks([
      row, line(11, 150, `fdatasync(21<${WAL}>) = -1 EIO (Input/output error) (INJECTED) <0.000001000>`),
      line(12, 200, `fdatasync(21<${WAL}>) = 0 <0.000100000>`), puback,
    ]).join(), /that ended before the failed one/);
    assert.match(acks([puback, rowAt(600)]).join(), /before its row reached the WAL/);
    assert.match(acks([row, line(10, 500, `write(23<${SOCK(5000)}>, "${hex([0x40, 2, 0, 2])}", 4) = 4 <0.000001000>`)]).join(), /no such publish was sent/);
  });
});
