/**
 * Reads a gateway's strace (strace.ts) for the delivery contract's first rule: a device gets its
 * PUBACK only once the reading is on disk. For every PUBACK written on a device socket:
 * - the reading it acknowledges (by connection and packet id, from mqtt-load.ts) had its row
 *   written to the WAL (the first pwrite64 to `spool.db-wal` whose page holds its payload);
 * - a sync of the WAL (fdatasync or fsync, successful, not injected) began after that write ended
 *   and ended before the PUBACK's write began;
 * - and that sync ended before the first failed sync of the WAL ended, if one failed: after a
 *   failed fsync, a later one proves nothing about earlier pages (PostgreSQL's "fsyncgate").
 * Every PUBACK is checked, not a sample. The row also gives the reading's message id, to compare
 * with what the spool holds after a restart.
 */
import type { Syscall } from './strace.js';
import { written } from './strace.js';

export interface Puback {
  /** The device's port: which connection. */
  clientPort: number;
  packetId: number;
  /** Entry of the write that carried the PUBACK's first byte. */
  start: number;
  call: Syscall;
}

/** The MQTT packets the gateway wrote to each device connection (the server side of `port`). */
export function pubacksWritten(calls: readonly Syscall[], port: number): Puback[] {
  const prefix = `TCP:[127.0.0.1:${port}->127.0.0.1:`;
  // Per connection: the bytes not yet parsed, and which write each byte came in (by stream offset).
  const streams = new Map<string, { pending: Buffer; at: number; origins: Array<{ offset: number; call: Syscall }> }>();
  const pubacks: Puback[] = [];
  for (const call of calls) {
    if ((call.name !== 'write' && call.name !== 'writev') || call.target?.startsWith(prefix) !== true) continue;
    const bytes = written(call);
    if (bytes.length === 0) continue;
    const clientPort = Number(call.target.slice(prefix.length, -1));
    let stream = streams.get(call.target);
    if (stream === undefined) {
      stream = { pending: Buffer.alloc(0), at: 0, origins: [] };
      streams.set(call.target, stream);
    }
    stream.origins.push({ offset: stream.at + stream.pending.length, call });
    stream.pending = Buffer.concat([stream.pending, bytes]);
    // Whole packets: a type byte, the remaining length (1-4 bytes of 7 bits), the rest.
    for (;;) {
      const header = remainingLength(stream.pending);
      if (header === undefined || stream.pending.length < header.size + header.length) break;
      while (stream.origins.length > 1 && stream.origins[1]!.offset <= stream.at) stream.origins.shift();
      const origin = stream.origins[0]!.call;
      if (stream.pending[0] === 0x40) {
        if (header.length !== 2) throw new Error(`a PUBACK of ${header.length} bytes on ${call.target}: not MQTT 3.1.1`);
        pubacks.push({ clientPort, packetId: stream.pending.readUInt16BE(header.size), start: origin.start, call: origin });
      }
      stream.at += header.size + header.length;
      stream.pending = stream.pending.subarray(header.size + header.length);
    }
  }
  return pubacks;
}

function remainingLength(bytes: Buffer): { size: number; length: number } | undefined {
  let length = 0;
  for (let i = 1; i <= 4; i++) {
    if (bytes.length <= i) return undefined;
    length += (bytes[i]! & 0x7f) * 128 ** (i - 1);
    if ((bytes[i]! & 0x80) === 0) return { size: i + 1, length };
  }
  throw new Error('MQTT remaining length longer than 4 bytes: the trace is not an MQTT stream');
}

export interface AckOrderInput {
  calls: readonly Syscall[];
  mqttPort: number;
  /** The spool's WAL as -yy prints it: `<dataDir>/spool.db-wal`. */
  walFile: string;
  /** `clientPort:packetId` → payload (mqtt-load.ts). */
  sent: ReadonlyMap<string, string>;
  /** Finds the payloads in a WAL page (read as latin1); global. */
  pattern: RegExp;
}

export interface AckedReading {
  payload: string;
  puback: Puback;
  /** The first WAL write that held the reading's row. */
  row: Syscall | undefined;
  /** The message id stored in that row. */
  messageId: string | undefined;
  /** A sync that covers the row and ended before the PUBACK. */
  sync: Syscall | undefined;
}

export interface AckOrderReport {
  acked: AckedReading[];
  /** One line per PUBACK that broke a rule; empty when the contract held. */
  violations: string[];
  /** The WAL syncs, successful or not, in order. */
  syncs: Syscall[];
  failedSync: Syscall | undefined;
  walWrites: number;
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/g;

/**
 * The first WAL write (pwrite64 to `walFile`) that held each payload matched by `pattern`, and the
 * message id in front of the payload in that row (the columns before it: id, target, priority, topic).
 */
export function rowsInWal(calls: readonly Syscall[], walFile: string, pattern: RegExp): Map<string, { call: Syscall; messageId: string | undefined }> {
  const rows = new Map<string, { call: Syscall; messageId: string | undefined }>();
  for (const call of calls) {
    if (call.name !== 'pwrite64' || call.target !== walFile || (call.ret ?? 0) <= 0) continue;
    const page = written(call).toString('latin1');
    for (const match of page.matchAll(new RegExp(pattern.source, 'g'))) {
      if (rows.has(match[0])) continue;
      const before = page.slice(Math.max(0, match.index - 400), match.index);
      rows.set(match[0], { call, messageId: [...before.matchAll(UUID)].at(-1)?.[0] });
    }
  }
  return rows;
}

export function checkAckOrder(input: AckOrderInput): AckOrderReport {
  const { calls, walFile } = input;
  const walWrites = calls.filter((c) => c.name === 'pwrite64' && c.target === walFile && (c.ret ?? 0) > 0);
  const syncs = calls.filter((c) => (c.name === 'fdatasync' || c.name === 'fsync') && c.target === walFile);
  const failed = syncs.filter((c) => c.ret !== 0 || c.injected);
  const failedSync = failed.length === 0 ? undefined : failed.reduce((a, b) => (b.end < a.end ? b : a));
  const good = syncs.filter((c) => c.ret === 0 && !c.injected && (failedSync === undefined || c.end < failedSync.end));

  const rows = rowsInWal(walWrites, walFile, input.pattern);

  const acked: AckedReading[] = [];
  const violations: string[] = [];
  const at = (ns: number): string => `${(ns / 1e6).toFixed(3)} ms`;
  for (const puback of pubacksWritten(calls, input.mqttPort)) {
    const payload = input.sent.get(`${puback.clientPort}:${puback.packetId}`);
    if (payload === undefined) {
      violations.push(`PUBACK of packet ${puback.packetId} to port ${puback.clientPort} at ${at(puback.start)}: no such publish was sent`);
      continue;
    }
    const key = new RegExp(input.pattern.source).exec(payload)?.[0] ?? payload;
    const row = rows.get(key);
    const reading: AckedReading = { payload, puback, row: row?.call, messageId: row?.messageId, sync: undefined };
    acked.push(reading);
    if (row === undefined || row.call.end > puback.start) {
      violations.push(`${key}: PUBACK at ${at(puback.start)} before its row reached the WAL${row === undefined ? '' : ` (${at(row.call.end)})`}`);
      continue;
    }
    reading.sync = good.find((s) => s.start >= row.call.end && s.end <= puback.start);
    if (reading.sync === undefined) {
      const next = syncs.find((s) => s.start >= row.call.end);
      violations.push(`${key}: row in the WAL at ${at(row.call.end)}, PUBACK at ${at(puback.start)}, ` +
        `but no successful WAL sync in between${failedSync === undefined ? '' : ` that ended before the failed one (${at(failedSync.end)})`}; ` +
        `the next sync: ${next === undefined ? 'none' : `${next.name} ${at(next.start)}-${at(next.end)} = ${next.ret}${next.injected ? ' (injected)' : ''}`}`);
    }
  }
  return { acked, violations, syncs, failedSync, walWrites: walWrites.length };
}
