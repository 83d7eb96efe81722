/**
 * A serial line with a fault injector in the middle, for Modbus RTU tests:
 *
 *   gateway ── pty pair (socat) ── relay (this process) ── pty pair (socat) ── pymodbus slave
 *
 * The relay copies bytes both ways, and on command it flips a byte of the next response, cuts the
 * next response short, puts bytes in front of it, or writes garbage towards the gateway.
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
  /** Writes `bytes` towards the gateway now. */
  inject(bytes: Buffer): Promise<void>;
  /** Sends every request back to the gateway too, as a two-wire RS-485 adapter without echo suppression does. */
  echo: boolean;
  /** Responses the relay changed so far. */
  tampered: number;
  close(): Promise<void>;
}

function openPort(path: string): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const port = new SerialPort({ path, baudRate: 115200, autoOpen: false });
    port.open((err) => (err ? reject(err) : resolve(port)));
  });
}

export async function startRelay(dir: string): Promise<Relay> {
  const gatewaySide: PtyPair = await ptyPair(join(dir, 'gw'), join(dir, 'gw.relay'));
  const slaveSide: PtyPair = await ptyPair(join(dir, 'slave'), join(dir, 'slave.relay'));
  const toGateway = await openPort(join(dir, 'gw.relay'));
  const toSlave = await openPort(join(dir, 'slave.relay'));
  let action: { kind: 'corrupt'; index: number } | { kind: 'truncate'; bytes: number } | { kind: 'prefix'; bytes: Buffer } | undefined;
  /** Bytes of the response being cut short still to drop. */
  let dropping = false;
  const relay: Relay = {
    gateway: join(dir, 'gw'),
    slave: join(dir, 'slave'),
    tampered: 0,
    echo: false,
    corruptNext: (index) => { action = { kind: 'corrupt', index }; },
    truncateNext: (bytes) => { action = { kind: 'truncate', bytes }; },
    prefixNext: (bytes) => { action = { kind: 'prefix', bytes }; },
    inject: (bytes) => new Promise((resolve, reject) => {
      toGateway.write(bytes);
      toGateway.drain((err) => (err ? reject(err) : resolve()));
    }),
    close: async () => {
      await new Promise<void>((resolve) => toGateway.close(() => resolve()));
      await new Promise<void>((resolve) => toSlave.close(() => resolve()));
      await gatewaySide.kill();
      await slaveSide.kill();
    },
  };
  toGateway.on('data', (chunk: Buffer) => {
    // A new request: whatever was being cut short is over.
    dropping = false;
    if (relay.echo) toGateway.write(chunk);
    toSlave.write(chunk);
  });
  toSlave.on('data', (chunk: Buffer) => {
    if (dropping) return;
    let out = chunk;
    const current = action;
    if (current !== undefined) {
      action = undefined;
      relay.tampered += 1;
      if (current.kind === 'corrupt') {
        out = Buffer.from(chunk);
        out[current.index] = out[current.index]! ^ 0xff;
      } else if (current.kind === 'truncate') {
        out = chunk.subarray(0, current.bytes);
        dropping = true;
      } else {
        out = Buffer.concat([current.bytes, chunk]);
      }
    }
    toGateway.write(out);
  });
  return relay;
}
