/**
 * src/ops/journald.ts: the syslog prefix of each level, and the check that stdout is the journal
 * (JOURNAL_STREAM names the device and inode of the very stream), on real file descriptors.
 */
import assert from 'node:assert/strict';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isJournalStream, withPriority } from '../../src/ops/journald.js';
import { createLogger } from '../../src/ops/log.js';
import { Writable } from 'node:stream';

test('each level gets its syslog priority; other lines are left alone', () => {
  const line = (level: string): string => `{"level":"${level}","time":"2026-12-06T00:00:00.000Z","pid":1,"msg":"m"}\n`;
  assert.equal(withPriority(line('fatal')), `<2>${line('fatal')}`);
  assert.equal(withPriority(line('error')), `<3>${line('error')}`);
  assert.equal(withPriority(line('warn')), `<4>${line('warn')}`);
  assert.equal(withPriority(line('info')), `<6>${line('info')}`);
  assert.equal(withPriority(line('debug')), `<7>${line('debug')}`);
  assert.equal(withPriority(line('trace')), `<7>${line('trace')}`);
  assert.equal(withPriority(line('custom')), line('custom'));
  assert.equal(withPriority('{"time":1,"level":"error"}\n'), '{"time":1,"level":"error"}\n');
  assert.equal(withPriority('plain text\n'), 'plain text\n');
});

test('JOURNAL_STREAM counts only when it names the descriptor itself', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'uplink-journald-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fd = openSync(join(dir, 'stream'), 'w');
  const other = openSync(join(dir, 'other'), 'w');
  t.after(() => { closeSync(fd); closeSync(other); });
  const st = fstatSync(fd, { bigint: true });
  const stream = `${st.dev}:${st.ino}`;
  assert.equal(isJournalStream({ JOURNAL_STREAM: stream }, fd), true);
  assert.equal(isJournalStream({ JOURNAL_STREAM: stream }, other), false, 'another file: stdout was redirected');
  assert.equal(isJournalStream({}, fd), false);
  assert.equal(isJournalStream({ JOURNAL_STREAM: 'garbage' }, fd), false);
});

test('the logger prefixes its lines when asked to (journald: true), and not by default into a stream', () => {
  const capture = (journald: boolean | undefined): string[] => {
    const lines: string[] = [];
    const destination = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } });
    const log = createLogger({ level: 'info', destination, ...(journald === undefined ? {} : { journald }) });
    log.error('boom');
    log.info('fine');
    log.debug('hidden');
    return lines;
  };
  const prefixed = capture(true);
  assert.equal(prefixed.length, 2);
  assert.match(prefixed[0]!, /^<3>\{"level":"error",.*"msg":"boom"\}\n$/);
  assert.match(prefixed[1]!, /^<6>\{"level":"info",.*"msg":"fine"\}\n$/);
  const plain = capture(undefined);
  assert.match(plain[0]!, /^\{"level":"error"/);
});
