/**
 * The serial line of a Modbus RTU bus, as the port object modbus-serial's client drives
 * (open/close/write/isOpen, a 'data' event per response frame, 'close', 'error').
 *
 * Why not modbus-serial's own RTUBufferedPort: it keeps the bytes of one request's response for
 * the next. A response cut short (a slave that stops mid-frame) or one that came after its
 * timeout stays in its buffer, and it searches that buffer from the start for the next response:
 * the stale bytes are then glued to the next frame (a CRC error that costs the next poll too), or
 * a complete stale response of the same unit and function is taken as the answer to the new
 * request (an old value stored with a new time). It also drops garbage without a trace.
 *
 * Here a frame is cut by what the request lets us expect: the unit id, then the function code
 * (or the exception code, function | 0x80), then the length the request implies (5 bytes for an
 * exception). Bytes that cannot start that frame are garbage, skipped one at a time and counted;
 * bytes that arrive while no request waits (noise) are garbage too and never reach the next
 * request. CRC and exception checks stay with modbus-serial.
 *
 * Late answers: RTU has no transaction id, so an answer that comes after its request timed out
 * and after the next request went out would pass every check as the next answer if unit,
 * function and length match (another point of the same size on the same device: its value would
 * be stored as this one's). So after a timeout (`abandon()`) the line expects nothing: bytes that
 * arrive then are late, kept apart from garbage and taken by `takeLate()`; the connection leaves
 * the line quiet for a window before the next request (connection.ts), as libmodbus does.
 *
 * RS-485: the adapter or the kernel switches the direction (see config/modbus-schema.ts); with
 * `echo` the request's own bytes, heard back by an adapter that does not suppress them, are
 * skipped.
 */
import { EventEmitter } from 'node:events';
import type { SerialPort } from 'serialport';
import type { ModbusRtuConfig } from './config.js';

interface Expected {
  unit: number;
  fn: number;
  length: number;
  /** Bytes of our own request still to come back (RS-485 echo). */
  echo: number;
}

/** The length of the normal response to `request` (an RTU frame with CRC). */
export function responseLength(request: Buffer): number {
  const fn = request[1]!;
  const quantity = request.length >= 6 ? request.readUInt16BE(4) : 0;
  switch (fn) {
    case 1:
    case 2:
      return 5 + Math.ceil(quantity / 8);
    case 3:
    case 4:
      return 5 + 2 * quantity;
    default:
      // 5, 6, 15, 16 echo address and value or quantity.
      return 8;
  }
}

const EXCEPTION_LENGTH = 5;

export class RtuLine extends EventEmitter {
  readonly #config: ModbusRtuConfig;
  readonly #Port: typeof SerialPort;
  #port: SerialPort | undefined;
  #expected: Expected | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  /** Since the last timeout, until the next request: what arrives is a late answer. */
  #afterTimeout = false;
  #lateBytes = 0;
  /** Runs of bytes skipped as garbage, and their bytes. */
  garbageRuns = 0;
  garbageBytes = 0;
  // modbus-serial's client keeps its transaction ids on the port object.
  _transactionIdRead = 1;
  _transactionIdWrite = 1;

  /** `Port`: serialport's SerialPort, which the caller loads (only when a bus is on a serial line). */
  constructor(config: ModbusRtuConfig, Port: typeof SerialPort) {
    super();
    this.#config = config;
    this.#Port = Port;
  }

  get isOpen(): boolean {
    return this.#port?.isOpen === true;
  }

  open(callback: (err?: Error | null) => void): void {
    const config = this.#config;
    const port = new this.#Port({
      path: config.path, baudRate: config.baudRate, dataBits: config.dataBits, parity: config.parity, stopBits: config.stopBits,
      autoOpen: false,
    });
    port.on('data', (chunk: Buffer) => this.#onData(chunk));
    port.on('error', (err: Error) => this.emit('error', err));
    port.on('close', () => {
      if (this.#port === port) this.#port = undefined;
      this.emit('close');
    });
    port.open((err) => {
      if (err) {
        callback(err);
        return;
      }
      this.#port = port;
      this.#buffer = Buffer.alloc(0);
      this.#expected = undefined;
      this.#afterTimeout = false;
      this.#lateBytes = 0;
      callback(null);
    });
  }

  close(callback?: (err?: Error | null) => void): void {
    const port = this.#port;
    this.#port = undefined;
    this.#expected = undefined;
    if (port === undefined || !port.isOpen) {
      callback?.(null);
      return;
    }
    port.close((err) => callback?.(err ?? null));
  }

  destroy(): void {
    this.close();
  }

  write(frame: Buffer): void {
    const port = this.#port;
    if (port === undefined) return;
    this.#discard();
    // Late bytes nobody took (they came after the quiet window) are garbage.
    if (this.#lateBytes > 0) this.#garbage(this.#lateBytes);
    this.#afterTimeout = false;
    this.#lateBytes = 0;
    this.#expected = { unit: frame[0]!, fn: frame[1]!, length: responseLength(frame), echo: this.#config.rs485.echo ? frame.length : 0 };
    port.write(frame);
  }

  /**
   * The request has no answer coming any more (its timeout fired): forgets it, and says how many
   * bytes of a started response were waiting (a short frame) — those are dropped, not counted as
   * garbage.
   */
  abandon(): number {
    const started = this.#expected !== undefined && this.#buffer.length > 0 && this.#buffer[0] === this.#expected.unit ? this.#buffer.length : 0;
    if (started === 0) this.#discard();
    this.#buffer = Buffer.alloc(0);
    this.#expected = undefined;
    this.#afterTimeout = true;
    this.#lateBytes = 0;
    return started;
  }

  /** Bytes that came since the last timeout (a late answer, or the rest of one cut short); counted once. */
  takeLate(): number {
    const bytes = this.#lateBytes;
    this.#lateBytes = 0;
    return bytes;
  }

  /** Drops what is buffered, as garbage. */
  #discard(): void {
    if (this.#buffer.length === 0) return;
    this.#garbage(this.#buffer.length);
    this.#buffer = Buffer.alloc(0);
  }

  #garbage(bytes: number): void {
    this.garbageRuns += 1;
    this.garbageBytes += bytes;
  }

  #onData(chunk: Buffer): void {
    const expected = this.#expected;
    if (expected === undefined) {
      if (this.#afterTimeout) this.#lateBytes += chunk.length;
      else this.#garbage(chunk.length);
      return;
    }
    let data = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    if (expected.echo > 0) {
      const skip = Math.min(expected.echo, data.length);
      expected.echo -= skip;
      data = data.subarray(skip);
    }
    let skipped = 0;
    for (;;) {
      while (data.length > 0 && data[0] !== expected.unit) {
        data = data.subarray(1);
        skipped += 1;
      }
      if (data.length < 2) break;
      const fn = data[1]!;
      const need = fn === expected.fn ? expected.length : fn === (expected.fn | 0x80) ? EXCEPTION_LENGTH : 0;
      if (need === 0) {
        data = data.subarray(1);
        skipped += 1;
        continue;
      }
      if (data.length < need) break;
      const frame = Buffer.from(data.subarray(0, need));
      const rest = data.length - need;
      if (skipped > 0) this.#garbage(skipped);
      if (rest > 0) this.#garbage(rest);
      this.#buffer = Buffer.alloc(0);
      this.#expected = undefined;
      this.emit('data', frame);
      return;
    }
    if (skipped > 0) this.#garbage(skipped);
    this.#buffer = Buffer.from(data);
  }
}
