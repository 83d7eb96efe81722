/**
 * A serial line with a fault injector in the middle, for Modbus RTU tests:
 *
 *   gateway ── pty pair (socat) ── relay (this process) ── pty pair (socat) ── pymodbus slave
 *
 * The relay copies bytes both ways, and on command it flips a byte of the next response, cuts the
 * next response short, puts bytes in front of it, rewrites it, delays it, or writes garbage
 * towards the gateway. Delayed responses keep their order: the line is one wire.
 */
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { ptyPair, type PtyPair } from '../serial/helpers.js';

export interface Relay {
  /** The pty the gateway opens. */
  gateway: string;
  /** The pty the slave serves on. */
  slave: string;
  /** Flips every bit of byte `index` of the next response. */
  corruptNext(index: number): void;
  /** Forwards only the first `bytes` of the next response; the rest is dropped. */
  truncateNext(bytes: number): void;
  /** Puts `bytes` in front of the next response. */
  prefixNext(bytes: Buffer): void;
  /** Replaces each of the next `count` responses by what `rewrite` makes of it (with a CRC of its own: see `withCrc`). */
  rewriteNext(count: number, rewrite: (response: Buffer) => Buffer): void;
  /** Holds the next response `ms` (counted from when the slave sent it) before it goes on. */
  delayNext(ms: number): void;
  /** Holds every response this long (a slow slave); 0 by default. */
  delay: number;
  /** Writes `bytes` towards the gateway now. */
  inject(bytes: Buffer): Promise<void>;
  /** Sends every request back to the gateway too, as a two-wire RS-485 adapter without echo suppression does. */
  echo: boolean;
  /** Responses the relay changed so far. */
  tampered: number;
  close(): Promise<void>;
}

/** The Modbus CRC-16 of `bytes`. */
function crc16(bytes: Buffer): number {
  let crc = 0xffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >> 1) ^ 0xa001 : crc >> 1;
  }
  return crc;
}

/** `frame` (without its CRC) with a valid CRC appended. */
export function withCrc(frame: Buffer): Buffer {
  const out = Buffer.alloc(frame.length + 2);
  frame.copy(out);
  out.writeUInt16LE(crc16(frame), frame.length);
  return out;
}

function openPort(path: string): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const port = new SerialPort({ path, baudRate: 115200, autoOpen: false });
    port.open((err) => (err ? reject(err) : resolve(port)));
  });
}

type Action =
  | { kind: 'corrupt'; index: number }
  | { kind: 'truncate'; bytes: number }
  | { kind: 'prefix'; bytes: Buffer }
  | { kind: 'rewrite'; rewrite: (response: Buffer) => Buffer };

export async function startRelay(dir: string): Promise<Relay> {
  const gatewaySide: PtyPair = await ptyPair(join(dir, 'gw'), join(dir, 'gw.relay'));
  const slaveSide: PtyPair = await ptyPair(join(dir, 'slave'), join(dir, 'slave.relay'));
  const toGateway = await openPort(join(dir, 'gw.relay'));
  const toSlave = await openPort(join(dir, 'slave.relay'));
  const actions: Action[] = [];
  let delayNext: number | undefined;
  /** Bytes of the response being cut short still to drop. */
  let dropping = false;
  /** The response being relayed: when it is let through (ms since the epoch); undefined between responses. */
  let releaseAt: number | undefined;
  /** When the last held chunk goes out: later chunks never overtake it. */
  let lastOut = 0;
  const timers = new Set<NodeJS.Timeout>();
  const send = (bytes: Buffer): void => {
    const at = Math.max(releaseAt ?? Date.now(), lastOut);
    lastOut = at;
    const wait = at - Date.now();
    if (wait <= 0) {
      toGateway.write(bytes);
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      toGateway.write(bytes);
    }, wait);
    timers.add(timer);
  };
  const relay: Relay = {
    gateway: join(dir, 'gw'),
    slave: join(dir, 'slave'),
    tampered: 0,
    echo: false,
    delay: 0,
    corruptNext: (index) => { actions.push({ kind: 'corrupt', index }); },
    truncateNext: (bytes) => { actions.push({ kind: 'truncate', bytes }); },
    prefixNext: (bytes) => { actions.push({ kind: 'prefix', bytes }); },
    rewriteNext: (count, rewrite) => { for (let i = 0; i < count; i++) actions.push({ kind: 'rewrite', rewrite }); },
    delayNext: (ms) => { delayNext = ms; },
    inject: (bytes) => new Promise((resolve, reject) => {
      toGateway.write(bytes);
      toGateway.drain((err) => (err ? reject(err) : resolve()));
    }),
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      await new Promise<void>((resolve) => toGateway.close(() => resolve()));
      await new Promise<void>((resolve) => toSlave.close(() => resolve()));
      await gatewaySide.kill();
      await slaveSide.kill();
    },
  };
  toGateway.on('data', (chunk: Buffer) => {
    // A new request: whatever was being cut short is over, and its response is a new one.
    dropping = false;
    releaseAt = undefined;
    if (relay.echo) toGateway.write(chunk);
    toSlave.write(chunk);
  });
  toSlave.on('data', (chunk: Buffer) => {
    if (dropping) return;
    if (releaseAt === undefined) {
      // The first bytes of a response: how long it is held.
      const hold = delayNext ?? relay.delay;
      delayNext = undefined;
      releaseAt = Date.now() + hold;
    }
    let out = chunk;
    const current = actions.shift();
    if (current !== undefined) {
      relay.tampered += 1;
      if (current.kind === 'corrupt') {
        out = Buffer.from(chunk);
        out[current.index] = out[current.index]! ^ 0xff;
      } else if (current.kind === 'truncate') {
        out = chunk.subarray(0, current.bytes);
        dropping = true;
      } else if (current.kind === 'prefix') {
        out = Buffer.concat([current.bytes, chunk]);
      } else {
        out = current.rewrite(Buffer.from(chunk));
      }
    }
    send(out);
  });
  return relay;
}
