/**
 * Serial ingest: one reader per configured port (serialport), each
 *
 *   bytes → framer (line, regex, length, inter-byte timeout; maxFrame) → decode (raw, text, json,
 *   csv) → reading {id, topic from the template, payload, receivedAt} → router.route()
 *   → spool.append() committed
 *
 * A line is read as delivered once committed: while an append is pending the port is paused, so
 * the OS buffer and flow control (rtscts / xonxoff) hold the device back under `spool.policy:
 * block`; the readings of one port are appended in order. Bad input (too long, not UTF-8, not
 * JSON, wrong CSV column count, a topic template that cannot be filled, no route) is counted in
 * `rejected` by reason and logged at a limited rate; the port keeps going.
 *
 * Hot-plug: a port that is missing at start, closes, errors, or whose device path disappears or
 * points elsewhere (checked every `watchMs`: removing a USB adapter or a pty gives no close event
 * on some systems) is closed and reopened with exponential backoff, logged, without affecting the
 * other ports. `start()` does not fail for a missing device: it is reopened like an unplugged one.
 *
 * The end of a port's stream (stop(), or the port going away) loses nothing that was read: the
 * bytes the stream read ahead while paused are framed, the framer is flushed (a timeout frame
 * ends, an open regex match is taken as it is; a frame that had begun but cannot end any more is
 * counted `partial` and logged), and stop() resolves only once every reading framed is committed.
 * Only if the spool has no room for them within `stopGraceMs` are they given up, counted
 * `stopped` and logged as an error.
 */
import { BoundedCounts } from '../../core/bounded-counts.js';
import { realpath } from 'node:fs/promises';
import type { SerialPort } from 'serialport';
import type { RoutedReading } from '../../core/envelope.js';
import { GatewayError, messageOf } from '../../core/errors.js';
import { newReadingId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import { RetryPolicy } from '../../core/retry.js';
import type { Router } from '../../route/router.js';
import type { Spool } from '../../spool/interface.js';
import { appendInOrder, MAX_BATCH } from '../append-in-order.js';
import type { IngestAdapter, IngestStats } from '../interface.js';
import type { SerialPortConfig } from './config.js';
import { decodeFrame, fillTopic } from './decode.js';
import { createFramer, type Framer } from './framing.js';
import { RateLimitedLog } from '../../core/rate-limited-log.js';

export interface SerialIngestOptions {
  ports: readonly SerialPortConfig[];
  spool: Pick<Spool, 'append'>;
  router: Router;
  log: Logger;
  now?: () => number;
  /** Reopen backoff (default base 500 ms, cap 10 s). */
  reopen?: { baseMs: number; capMs: number };
  /** How often an open port's device path is checked (default 1000 ms). */
  watchMs?: number;
  /** How long stop() waits for the spool to store the readings already read (default 5000 ms). */
  stopGraceMs?: number;
}

export interface SerialIngestStats extends IngestStats {
  /** Per port name: open or not, and how often it was (re)opened. */
  ports: Record<string, {
    open: boolean;
    opens: number;
    /** Bytes read from the device since start, including those the stream read ahead while paused. */
    bytesRead: number;
  }>;
}

interface Shared {
  spool: Pick<Spool, 'append'>;
  router: Router;
  log: Logger;
  limited: RateLimitedLog;
  now: () => number;
  /** Per address: bounded, since `{N}` templates give one address per device. */
  ingested: BoundedCounts;
  rejected: Record<string, number>;
  reopen: { baseMs: number; capMs: number };
  watchMs: number;
  stopGraceMs: number;
}

function count(record: Record<string, number>, key: string, n = 1): void {
  record[key] = (record[key] ?? 0) + n;
}

class PortReader {
  readonly config: SerialPortConfig;
  readonly #shared: Shared;
  readonly #log: Logger;
  readonly #framer: Framer;
  readonly #reopenRetry: RetryPolicy;
  readonly #abort = new AbortController();
  #port: SerialPort | undefined;
  #realPath: string | undefined;
  #queue: RoutedReading[] = [];
  #draining: Promise<void> | undefined;
  /** A port that went away, being closed and its stream ended. */
  #releasing: Promise<void> | undefined;
  /** Inside a push to the framer: frames are appended after it, in one batch. */
  #pushing = false;
  /** Bytes handed to the framer so far. */
  #framed = 0;
  #reopenTimer: NodeJS.Timeout | undefined;
  #watchTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Readings per append: bounded, and halved when the spool says a batch can never fit. */
  readonly #batch = { limit: MAX_BATCH };
  opens = 0;

  constructor(config: SerialPortConfig, shared: Shared) {
    this.config = config;
    this.#shared = shared;
    this.#log = shared.log.child({ port: config.name, path: config.path });
    // Never sooner than 50 ms: a port that fails at once must not become a loop of opens.
    this.#reopenRetry = new RetryPolicy({ ...shared.reopen, floorMs: 50 });
    this.#framer = createFramer(config.framing, config.maxFrame, {
      onFrame: (frame) => this.#onFrame(frame),
      onTooLong: (bytes) => this.#reject('too_long', { bytes, maxFrame: config.maxFrame }, 'serial frame dropped: longer than maxFrame'),
      onPartial: (bytes) => this.#reject('partial', { bytes }, 'serial frame dropped: it had not ended when the port stopped or went away'),
    });
  }

  get open(): boolean {
    return this.#port?.isOpen === true;
  }

  get bytesRead(): number {
    return this.#framed + (this.#port?.readableLength ?? 0);
  }

  /** One attempt to open; on failure a reopen is scheduled. */
  async openOnce(): Promise<void> {
    if (this.#stopped) return;
    // Loaded with the first port: a gateway without serial ports never loads serialport.
    const { SerialPort } = await import('serialport');
    if (this.#stopped) return;
    const config = this.config;
    const port = new SerialPort({
      path: config.path, baudRate: config.baudRate, dataBits: config.dataBits, parity: config.parity, stopBits: config.stopBits,
      rtscts: config.flowControl === 'rtscts', xon: config.flowControl === 'xonxoff', xoff: config.flowControl === 'xonxoff',
      autoOpen: false,
    });
    port.on('error', (err) => this.#gone(port, `error: ${err.message}`));
    try {
      await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
      this.#realPath = await realpath(config.path);
    } catch (err) {
      if (port.isOpen) port.close(() => { /* closing a port we give up on */ });
      this.#scheduleReopen(messageOf(err));
      return;
    }
    if (this.#stopped) {
      port.close(() => { /* stopped while opening */ });
      return;
    }
    this.#port = port;
    this.opens += 1;
    this.#reopenRetry.reset();
    this.#framer.reset();
    port.on('close', () => this.#gone(port, 'closed'));
    port.on('data', (chunk: Buffer) => this.#onData(chunk));
    if (this.#draining !== undefined) port.pause();
    this.#watchTimer = setInterval(() => this.#watch(port), this.#shared.watchMs);
    this.#watchTimer.unref();
    this.#log.info({ baudRate: config.baudRate, framing: config.framing.mode, decode: config.decode }, 'serial port open');
  }

  /**
   * Stops reading; resolves once every reading already read is committed (or, after
   * stopGraceMs without room in the spool, counted `stopped`).
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#reopenTimer);
    clearInterval(this.#watchTimer);
    const port = this.#port;
    this.#port = undefined;
    if (port !== undefined) this.#releasing = this.#release(port);
    await this.#releasing;
    this.#framer.close();
    const graceMs = this.#shared.stopGraceMs;
    const grace = setTimeout(() => this.#abort.abort(new GatewayError('IO', 'serial ingest stopped')), graceMs);
    this.#kick();
    while (this.#draining !== undefined) await this.#draining;
    clearTimeout(grace);
    const left = this.#queue.splice(0).length;
    if (left > 0) {
      count(this.#shared.rejected, 'stopped', left);
      this.#log.error({ readings: left, graceMs }, 'serial: readings read but not stored: the spool had no room for them before the stop grace ran out');
    }
  }

  /** The port is done with: it is closed, and what its stream read ahead is framed; then the framer is flushed. */
  async #release(port: SerialPort): Promise<void> {
    // Paused before the listener goes: a flowing stream without a listener would drop its data.
    port.pause();
    port.removeAllListeners('data');
    port.removeAllListeners('close');
    if (port.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    this.#pushing = true;
    try {
      for (let chunk = port.read() as Buffer | null; chunk !== null; chunk = port.read() as Buffer | null) {
        this.#framed += chunk.length;
        this.#framer.push(chunk);
      }
      this.#framer.flush();
    } finally {
      this.#pushing = false;
    }
    this.#kick();
  }

  #watch(port: SerialPort): void {
    realpath(this.config.path).then((now) => {
      if (now !== this.#realPath) this.#gone(port, `the device path now leads to ${now}`);
    }, (err: unknown) => this.#gone(port, `the device path is gone (${(err as { code?: string }).code ?? messageOf(err)})`));
  }

  /** The port is unusable (closed, failed, unplugged): close it and reopen it later. */
  #gone(port: SerialPort, why: string): void {
    if (port !== this.#port || this.#stopped) return;
    this.#port = undefined;
    clearInterval(this.#watchTimer);
    // What was read is framed and kept; the bytes of a frame cut off by the unplug are counted,
    // and do not corrupt the first frame after the reopen.
    this.#releasing = this.#release(port)
      .catch((err: unknown) => this.#log.error({ err: messageOf(err) }, 'serial: ending the stream of a port that went away failed'))
      .then(() => {
        this.#releasing = undefined;
        this.#scheduleReopen(why);
      });
  }

  #scheduleReopen(why: string): void {
    if (this.#stopped) return;
    // Every reason a port fails (unplugged, renumbered, a permission udev has not applied yet) may
    // pass by itself: retryable, for the one retry policy.
    const delay = this.#reopenRetry.next({ retryable: true });
    const fields = { reason: why, retryInMs: delay, attempt: this.#reopenRetry.attempts };
    if (this.#reopenRetry.attempts === 1) this.#log.warn(fields, 'serial port unavailable; reopening with backoff');
    else this.#log.debug(fields, 'serial port still unavailable');
    this.#reopenTimer = setTimeout(() => void this.openOnce(), delay);
    this.#reopenTimer.unref();
  }

  #onData(chunk: Buffer): void {
    this.#framed += chunk.length;
    this.#pushing = true;
    try {
      this.#framer.push(chunk);
    } finally {
      this.#pushing = false;
    }
    this.#kick();
  }

  #onFrame(frame: Buffer): void {
    const config = this.config;
    const decoded = decodeFrame(frame, config.decode, config.columns);
    if (!decoded.ok) {
      this.#reject(decoded.reason, { detail: decoded.detail, bytes: frame.length }, `serial frame dropped: ${decoded.reason.replace('_', ' ')}`);
      return;
    }
    const topic = fillTopic(config.topic, decoded.fields, config.name);
    if (topic === undefined) {
      this.#reject('no_topic', { template: config.topic }, 'serial frame dropped: its topic template cannot be filled from it');
      return;
    }
    const receivedAt = this.#shared.now();
    const reading = this.#shared.router.route({ id: newReadingId(receivedAt), topic, payload: decoded.payload, receivedAt });
    if (reading === undefined) {
      this.#reject('unrouted', { topic }, 'serial reading dropped: no route matches its topic');
      return;
    }
    this.#queue.push(reading);
    // Frames ended by a timer (a quiet line) arrive outside a push.
    if (!this.#pushing) this.#kick();
  }

  #reject(reason: string, fields: Record<string, unknown>, message: string): void {
    count(this.#shared.rejected, reason);
    this.#shared.limited.write('warn', `${this.config.name}:${reason}`, { port: this.config.name, reason, ...fields }, message);
  }

  #kick(): void {
    if (this.#draining !== undefined || this.#queue.length === 0) return;
    this.#port?.pause();
    this.#draining = this.#drain().finally(() => {
      this.#draining = undefined;
      if (!this.#stopped) this.#port?.resume();
    });
  }

  /** Appends what is queued, in order, one batch at a time; the port stays paused meanwhile. */
  #drain(): Promise<void> {
    const shared = this.#shared;
    const port = this.config.name;
    // While stopping too: what was read is stored, unless stop() gives up (signal; it counts what is left).
    return appendInOrder(this.#queue, {
      spool: shared.spool, signal: this.#abort.signal, batch: this.#batch,
      stored: (batch) => { for (const reading of batch) shared.ingested.add(reading.address); },
      // Not stored yet: the port stays paused (the device is held back) and it is tried again.
      retrying: (err) => shared.limited.write('warn', `${port}:spool_retry`, { port, err: err.message }, 'serial: spool append failed; retrying'),
      failed: (batch, err) => {
        count(shared.rejected, 'spool_error', batch.length);
        shared.log.error({ port, err: messageOf(err), readings: batch.length }, 'serial: readings could not be stored');
      },
    });
  }
}

export class SerialIngest implements IngestAdapter {
  readonly name = 'serial';
  readonly #shared: Shared;
  readonly #configs: readonly SerialPortConfig[];
  #readers: PortReader[] = [];

  constructor(options: SerialIngestOptions) {
    this.#configs = options.ports;
    this.#shared = {
      spool: options.spool, router: options.router, log: options.log, now: options.now ?? Date.now,
      limited: new RateLimitedLog(options.log, options.now ? { now: options.now } : {}),
      ingested: new BoundedCounts(), rejected: {}, reopen: options.reopen ?? { baseMs: 500, capMs: 10_000 }, watchMs: options.watchMs ?? 1000,
      stopGraceMs: options.stopGraceMs ?? 5000,
    };
  }

  async start(): Promise<void> {
    if (this.#readers.length > 0) throw new GatewayError('INTERNAL', 'serial ingest started twice');
    const names = new Set<string>();
    for (const config of this.#configs) {
      if (names.has(config.name)) throw new GatewayError('CONFIG_INVALID', `serial: two ports are named ${config.name}`);
      names.add(config.name);
    }
    this.#readers = this.#configs.map((config) => new PortReader(config, this.#shared));
    await Promise.all(this.#readers.map((reader) => reader.openOnce()));
  }

  async stop(): Promise<void> {
    const readers = this.#readers;
    this.#readers = [];
    await Promise.all(readers.map((reader) => reader.stop()));
  }

  stats(): SerialIngestStats {
    const ports: SerialIngestStats['ports'] = {};
    for (const reader of this.#readers) ports[reader.config.name] = { open: reader.open, opens: reader.opens, bytesRead: reader.bytesRead };
    return {
      ingested: this.#shared.ingested.toRecord(),
      rejected: { ...this.#shared.rejected },
      connections: this.#readers.filter((reader) => reader.open).length,
      ports,
    };
  }
}
