/**
 * One Modbus bus (a serial line with its slaves, or a TCP connection): one request at a time,
 * from one queue shared by its devices.
 *
 * The queue: commands (writes) first, then the poll that has been due longest. A point is due
 * every `interval`; a bus that cannot keep up polls round-robin by due time, never skipping a
 * point for good. After every response (or timeout) the line rests `interFrameDelay`.
 *
 * A request that gets no valid answer (timeout, short frame, CRC error, another answer) is sent
 * again up to `retries` times; each failure is counted by reason. An exception response is an
 * answer: not retried, the point's reading has quality bad with the exception, the device stays
 * online. When all attempts fail the device is offline: each of its points gets one reading of
 * quality bad, a warning is logged (at a limited rate), and from then on only one request at a
 * time probes it, without retries, after a backoff that doubles from `offlineBackoff.base` to
 * `cap`: a silent device costs the bus one timeout per backoff, and the others keep their pace.
 * The first valid answer brings it back, and all its points are polled at once.
 *
 * The connection itself (a port that is missing or unplugged, a host that refuses) is reopened
 * with backoff; while it is down every device is offline. Nothing here throws after start().
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../core/logger.js';
import type { RateLimitedLog } from '../../core/rate-limited-log.js';
import { messageOf } from '../../core/errors.js';
import { decodePoint } from './codec.js';
import type { ModbusBusConfig, ModbusDeviceConfig, ModbusPointConfig } from './config.js';
import { quantityOf } from './config.js';
import { exceptionText, ModbusConnection, ModbusFault, type ReadFunction } from './connection.js';
import { Reporter, type Sample } from './report.js';

export type WriteResult =
  | { status: 'done' }
  /** Not done, and maybe possible later: the device or bus is offline or busy, the gateway stops. */
  | { status: 'unavailable'; reason: string }
  /** Cannot be done as asked: the device refused it (an exception response). */
  | { status: 'refused'; code: string; reason: string };

export interface WriteRequest {
  fn: 5 | 6 | 15 | 16;
  values: boolean[] | number[];
}

export interface BusOptions {
  config: ModbusBusConfig;
  /** Reported samples of a point; `time` is when the answer came, on the readings' clock. */
  onSample: (device: ModbusDeviceConfig, point: ModbusPointConfig, sample: Sample, time: number) => void;
  /** Resolves when there is room for more readings (the spool keeps up). */
  room: () => Promise<void>;
  /** Counts a fault or a bad input, by reason. */
  count: (reason: string, n?: number) => void;
  log: Logger;
  limited: RateLimitedLog;
  /** The readings' clock (ms since the epoch). */
  stamp: () => number;
  /** Scheduling clock, monotonic (default performance.now). */
  monotonic?: () => number;
  /** Reopening the connection: backoff from baseMs doubling to capMs (default 500 ms, 10 s). */
  reopen?: { baseMs: number; capMs: number };
  connection?: ModbusConnection;
  random?: () => number;
}

const READ_FUNCTION: Record<ModbusPointConfig['function'], ReadFunction> = { coil: 1, discrete: 2, holding: 3, input: 4 };

class PointState {
  due = 0;
  readonly reporter: Reporter;

  constructor(readonly config: ModbusPointConfig, readonly device: DeviceState) {
    this.reporter = new Reporter(config.reportByException);
  }
}

class DeviceState {
  online = true;
  /** Offline: when the next probe goes out (monotonic ms). */
  probeAt = 0;
  probes = 0;
  readonly points: PointState[];

  constructor(readonly config: ModbusDeviceConfig) {
    this.points = config.points.map((point) => new PointState(point, this));
  }
}

interface WriteJob {
  device: DeviceState;
  point: PointState;
  request: WriteRequest;
  resolve: (result: WriteResult) => void;
}

/** 3.5 characters of silence end an RTU frame; above 19200 baud the spec fixes it at 1.75 ms. */
export function defaultInterFrameDelay(config: ModbusBusConfig): number {
  const rtu = config.rtu;
  if (rtu === undefined) return 0;
  if (rtu.baudRate > 19200) return 1.75;
  const bits = 1 + rtu.dataBits + (rtu.parity === 'none' ? 0 : 1) + rtu.stopBits;
  return (3.5 * bits * 1000) / rtu.baudRate;
}

export class ModbusBus {
  readonly name: string;
  readonly #config: ModbusBusConfig;
  readonly #options: BusOptions;
  readonly #log: Logger;
  readonly #connection: ModbusConnection;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #gapMs: number;
  readonly #devices: DeviceState[];
  readonly #byName = new Map<string, DeviceState>();
  readonly #writes: WriteJob[] = [];
  #running: Promise<void> | undefined;
  #stopped = false;
  /** Resolves on stop(): a loop waiting for room in the spool must not keep stop() waiting too. */
  readonly #stopping: Promise<void>;
  #resolveStopping: () => void = () => {};
  #wake: (() => void) | undefined;
  #reopenAttempts = 0;
  #busDown: string | undefined;
  /** Requests sent, for stats. */
  requests = 0;
  opens = 0;

  constructor(options: BusOptions) {
    this.#config = options.config;
    this.name = options.config.name;
    this.#options = options;
    this.#log = options.log.child({ bus: options.config.name });
    this.#connection = options.connection ?? new ModbusConnection(options.config);
    this.#connection.onClose(() => this.#wakeUp());
    this.#now = options.monotonic ?? (() => performance.now());
    this.#random = options.random ?? Math.random;
    this.#gapMs = options.config.interFrameDelay ?? defaultInterFrameDelay(options.config);
    this.#devices = options.config.devices.map((device) => new DeviceState(device));
    this.#stopping = new Promise((resolve) => { this.#resolveStopping = resolve; });
    for (const device of this.#devices) this.#byName.set(device.config.name, device);
  }

  get open(): boolean {
    return this.#connection.isOpen;
  }

  garbage(): { runs: number; bytes: number } {
    return this.#connection.garbage();
  }

  devices(): Array<{ name: string; unitId: number; online: boolean }> {
    return this.#devices.map((d) => ({ name: d.config.name, unitId: d.config.unitId, online: d.online && this.open }));
  }

  start(): void {
    if (this.#running !== undefined) return;
    this.#running = this.#run().catch((err: unknown) => {
      this.#log.error({ err: messageOf(err) }, 'modbus bus stopped unexpectedly');
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#resolveStopping();
    this.#wakeUp();
    await this.#running;
    for (const job of this.#writes.splice(0)) job.resolve({ status: 'unavailable', reason: 'the gateway is stopping' });
    await this.#connection.close();
  }

  /** Queues a write; it goes out before the next poll. */
  write(deviceName: string, pointName: string, request: WriteRequest): Promise<WriteResult> {
    const device = this.#byName.get(deviceName);
    const point = device?.points.find((p) => p.config.name === pointName);
    if (device === undefined || point === undefined) return Promise.resolve({ status: 'refused', code: 'unknown_point', reason: `no point ${deviceName}/${pointName} on bus ${this.name}` });
    if (this.#stopped) return Promise.resolve({ status: 'unavailable', reason: 'the gateway is stopping' });
    if (!this.open) return Promise.resolve({ status: 'unavailable', reason: `bus ${this.name} is not connected${this.#busDown ? `: ${this.#busDown}` : ''}` });
    if (!device.online) return Promise.resolve({ status: 'unavailable', reason: `device ${deviceName} is not answering` });
    return new Promise((resolve) => {
      this.#writes.push({ device, point, request, resolve });
      this.#wakeUp();
    });
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Waits up to `ms`, or until woken (a write, a stop, the connection closing). */
  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, Math.max(0, ms));
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  #gap(): Promise<void> {
    if (this.#gapMs <= 0) return Promise.resolve();
    return new Promise((resolve) => setTimeout(resolve, this.#gapMs));
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      if (!this.#connection.isOpen) {
        await this.#reopen();
        continue;
      }
      const write = this.#writes.shift();
      if (write !== undefined) {
        await this.#write(write);
        await this.#gap();
        continue;
      }
      const now = this.#now();
      const point = this.#nextDue(now);
      if (point === undefined) {
        await this.#sleep(this.#nextAt() - now);
        continue;
      }
      await Promise.race([this.#options.room(), this.#stopping]);
      if (this.#stopped) break;
      await this.#poll(point);
      await this.#gap();
    }
  }

  async #reopen(): Promise<void> {
    try {
      await this.#connection.open();
    } catch (err) {
      const why = messageOf(err);
      this.#reopenAttempts += 1;
      const reopen = this.#options.reopen ?? { baseMs: 500, capMs: 10_000 };
      const delay = this.#backoff(reopen.baseMs, reopen.capMs, this.#reopenAttempts - 1);
      const fields = { reason: why, retryInMs: delay, attempt: this.#reopenAttempts };
      if (this.#reopenAttempts === 1) this.#log.warn(fields, 'modbus bus unavailable; reopening with backoff');
      else this.#log.debug(fields, 'modbus bus still unavailable');
      this.#busDown = why;
      for (const job of this.#writes.splice(0)) job.resolve({ status: 'unavailable', reason: `bus ${this.name} is not connected: ${why}` });
      for (const device of this.#devices) this.#offline(device, `bus unavailable: ${why}`, false);
      await this.#sleep(delay);
      return;
    }
    this.opens += 1;
    this.#reopenAttempts = 0;
    this.#busDown = undefined;
    const now = this.#now();
    // Every device gets a chance at once: offline only because the bus was down.
    for (const device of this.#devices) {
      if (!device.online) device.probeAt = now;
    }
    const where = this.#config.rtu !== undefined ? { path: this.#config.rtu.path, baudRate: this.#config.rtu.baudRate }
      : { host: this.#config.tcp?.host, port: this.#config.tcp?.port };
    this.#log.info({ ...where, devices: this.#devices.length }, 'modbus bus open');
  }

  /** Doubling from base to cap, with jitter over the upper half (never near zero, unlike full jitter). */
  #backoff(base: number, cap: number, attempt: number): number {
    const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
    return Math.floor(ceiling * (0.5 + 0.5 * this.#random()));
  }

  /** The point to poll now: the one due longest among online devices, or the probe of an offline device. */
  #nextDue(now: number): PointState | undefined {
    let best: PointState | undefined;
    let bestAt = Infinity;
    for (const device of this.#devices) {
      if (!device.online) {
        if (device.probeAt <= now && device.probeAt < bestAt) {
          // The probe: the device's point due longest.
          best = device.points.reduce((a, b) => (b.due < a.due ? b : a));
          bestAt = device.probeAt;
        }
        continue;
      }
      for (const point of device.points) {
        if (point.due <= now && point.due < bestAt) {
          best = point;
          bestAt = point.due;
        }
      }
    }
    return best;
  }

  /** When something is next due. */
  #nextAt(): number {
    let at = Infinity;
    for (const device of this.#devices) {
      if (!device.online) at = Math.min(at, device.probeAt);
      else for (const point of device.points) at = Math.min(at, point.due);
    }
    return Number.isFinite(at) ? at : this.#now() + 1000;
  }

  async #poll(point: PointState): Promise<void> {
    const device = point.device;
    const config = point.config;
    const attempts = device.online ? 1 + this.#config.retries : 1;
    try {
      const data = await this.#attempt(device, attempts,
        () => this.#connection.read(device.config.unitId, READ_FUNCTION[config.function], config.address, quantityOf(config)));
      const time = this.#options.stamp();
      this.#answered(device);
      const decoded = decodePoint(config, data);
      if (!decoded.ok) this.#options.count('modbus_bad_value');
      this.#report(point, decoded.ok ? { quality: 'good', value: decoded.value } : { quality: 'bad', error: decoded.error }, time);
    } catch (err) {
      const fault = err instanceof ModbusFault ? err : new ModbusFault('io', messageOf(err));
      if (fault.reason === 'exception') {
        this.#answered(device);
        this.#limited(`${device.config.name}:${config.name}:exception`, { device: device.config.name, unitId: device.config.unitId, point: config.name, exception: fault.exception },
          `modbus device answered a poll with ${fault.message}`);
        this.#report(point, { quality: 'bad', error: fault.message }, this.#options.stamp());
      } else if (fault.reason !== 'not_open' && fault.reason !== 'io' && !this.#stopped) {
        this.#offline(device, fault.message, true);
      }
    } finally {
      this.#schedule(point);
    }
  }

  /** Sends `request` up to `attempts` times while it gets no valid answer; counts each failure. */
  async #attempt<T>(device: DeviceState, attempts: number, request: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      this.requests += 1;
      try {
        return await request();
      } catch (err) {
        const fault = err instanceof ModbusFault ? err : new ModbusFault('io', messageOf(err));
        this.#options.count(`modbus_${fault.reason}`);
        if (fault.reason !== 'exception' && fault.reason !== 'timeout') {
          this.#limited(`${device.config.name}:${fault.reason}`, { device: device.config.name, unitId: device.config.unitId, reason: fault.reason, attempt },
            `modbus response dropped: ${fault.message}`);
        }
        if (!fault.retryable || attempt >= attempts || this.#stopped || !this.#connection.isOpen) throw fault;
        await this.#gap();
      }
    }
  }

  #schedule(point: PointState): void {
    const now = this.#now();
    const next = point.due + point.config.interval;
    // Behind (a slow bus, a device that was offline): poll as soon as possible, once.
    point.due = next < now ? now : next;
  }

  #answered(device: DeviceState): void {
    if (device.online) return;
    device.online = true;
    device.probes = 0;
    const now = this.#now();
    for (const point of device.points) point.due = now;
    this.#log.info({ device: device.config.name, unitId: device.config.unitId }, 'modbus device answering again');
  }

  /** Marks the device offline (once) and schedules its next probe. */
  #offline(device: DeviceState, why: string, log: boolean): void {
    const base = this.#config.offlineBackoff.base;
    const cap = this.#config.offlineBackoff.cap;
    device.probeAt = this.#now() + this.#backoff(base, cap, device.probes);
    device.probes += 1;
    if (!device.online) return;
    device.online = false;
    this.#options.count('modbus_offline');
    if (log) {
      this.#options.limited.write('warn', `${this.name}:${device.config.name}:offline`,
        { bus: this.name, device: device.config.name, unitId: device.config.unitId, reason: why, retries: this.#config.retries },
        'modbus device not answering; marked offline, polled again with backoff');
    }
    const time = this.#options.stamp();
    for (const point of device.points) this.#report(point, { quality: 'bad', error: `offline: ${why}` }, time);
  }

  #report(point: PointState, sample: Sample, time: number): void {
    if (point.reporter.offer(sample, this.#now())) this.#options.onSample(point.device.config, point.config, sample, time);
  }

  #limited(key: string, fields: Record<string, unknown>, message: string): void {
    this.#options.limited.write('warn', `${this.name}:${key}`, { bus: this.name, ...fields }, message);
  }

  async #write(job: WriteJob): Promise<void> {
    const { device, point, request } = job;
    if (!device.online) {
      job.resolve({ status: 'unavailable', reason: `device ${device.config.name} is not answering` });
      return;
    }
    try {
      await this.#attempt(device, 1 + this.#config.retries,
        () => this.#connection.write(device.config.unitId, request.fn, point.config.address, request.values));
      // The device has the new value: read it back soon, so that it is reported.
      point.due = this.#now();
      job.resolve({ status: 'done' });
    } catch (err) {
      const fault = err instanceof ModbusFault ? err : new ModbusFault('io', messageOf(err));
      if (fault.reason === 'exception') {
        // Acknowledge (5): the device took the write and works on it. Busy (6): try again later.
        if (fault.exception === 5) job.resolve({ status: 'done' });
        else if (fault.exception === 6) job.resolve({ status: 'unavailable', reason: `the device is busy (${exceptionText(6)})` });
        else job.resolve({ status: 'refused', code: 'device_exception', reason: `the device refused the write: ${fault.message}` });
        return;
      }
      if (fault.reason !== 'not_open' && fault.reason !== 'io' && !this.#stopped) this.#offline(device, fault.message, true);
      job.resolve({ status: 'unavailable', reason: `no confirmation from device ${device.config.name}: ${fault.message}` });
    }
  }
}
