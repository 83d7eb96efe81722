/**
 * One Modbus bus (a serial line with its slaves, or a TCP connection): the loop that sends one
 * request at a time, what is due next coming from its schedule (schedule.ts).
 *
 * The queue: commands (writes) first, then the poll due longest. After every response (or
 * timeout) the line rests `interFrameDelay`. A poll waits for room in the spool (its reading
 * needs it); a write does not, and one queued meanwhile goes out at once.
 *
 * A request that gets no valid answer (timeout, short frame, CRC error, another answer) is sent
 * again up to `retries` times; each failure is counted by reason. An exception response is an
 * answer: not retried, the point's reading has quality bad with the exception, the device stays
 * online; but exceptions 10 and 11 (a Modbus gateway got no answer from the device behind it) are
 * no answer, as a timeout. When all attempts fail the device is offline: each of its points gets one reading of
 * quality bad, a warning is logged (at a limited rate), and from then on only one request at a
 * time probes it, without retries, with backoff: a silent device costs the bus one timeout per
 * backoff, and the others keep their pace. The first valid answer brings it back.
 *
 * The connection itself (a port that is missing or unplugged, a host that refuses) is reopened
 * with backoff; while it is down every device is offline. Nothing here throws after start().
 */
import { performance } from 'node:perf_hooks';
import { isGatewayError, messageOf } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { RateLimitedLog } from '../../core/rate-limited-log.js';
import { RetryPolicy } from '../../core/retry.js';
import { decodePoint } from './codec.js';
import type { ModbusBusConfig, ModbusDeviceConfig, ModbusPointConfig } from './config.js';
import { quantityOf } from './config.js';
import { exceptionText, ModbusConnection, type Answer, type ModbusFault, type ReadFunction } from './connection.js';
import type { Sample } from './report.js';
import { Schedule, type DeviceState, type PointState } from './schedule.js';

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

interface WriteJob {
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
  readonly #gapMs: number;
  readonly #schedule: Schedule;
  readonly #reopenRetry: RetryPolicy;
  readonly #writes: WriteJob[] = [];
  #running: Promise<void> | undefined;
  #stopped = false;
  /** Resolves on stop(): a loop waiting for room in the spool must not keep stop() waiting too. */
  readonly #stopping: Promise<void>;
  #resolveStopping: () => void = () => {};
  #wake: (() => void) | undefined;
  /** The spool's promise of room, while the polls wait for it: asked once, however often the wait is woken. */
  #roomWait: Promise<void> | undefined;
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
    const random = options.random ?? Math.random;
    const reopen = options.reopen ?? { baseMs: 500, capMs: 10_000 };
    this.#reopenRetry = new RetryPolicy({ ...reopen, random, jitter: 'upper-half' });
    this.#gapMs = options.config.interFrameDelay ?? defaultInterFrameDelay(options.config);
    this.#schedule = new Schedule(options.config, random);
    this.#stopping = new Promise((resolve) => { this.#resolveStopping = resolve; });
  }

  get open(): boolean {
    return this.#connection.isOpen;
  }

  garbage(): { runs: number; bytes: number } {
    return this.#connection.garbage();
  }

  devices(): Array<{ name: string; unitId: number; online: boolean }> {
    return this.#schedule.devices.map((d) => ({ name: d.config.name, unitId: d.config.unitId, online: d.online && this.open }));
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
    const point = this.#schedule.point(deviceName, pointName);
    if (point === undefined) return Promise.resolve({ status: 'refused', code: 'unknown_point', reason: `no point ${deviceName}/${pointName} on bus ${this.name}` });
    if (this.#stopped) return Promise.resolve({ status: 'unavailable', reason: 'the gateway is stopping' });
    if (!this.open) return Promise.resolve({ status: 'unavailable', reason: `bus ${this.name} is not connected${this.#busDown ? `: ${this.#busDown}` : ''}` });
    if (!point.device.online) return Promise.resolve({ status: 'unavailable', reason: `device ${deviceName} is not answering` });
    return new Promise((resolve) => {
      this.#writes.push({ point, request, resolve });
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

  /** Waits for room in the spool for a poll's reading; false when woken first (a write, a stop). */
  async #room(): Promise<boolean> {
    this.#roomWait ??= this.#options.room().then(() => { this.#roomWait = undefined; });
    const woken = await Promise.race([
      this.#roomWait.then(() => false), this.#stopping.then(() => false),
      new Promise<boolean>((resolve) => { this.#wake = () => resolve(true); }),
    ]);
    if (!woken) this.#wake = undefined;
    return !woken && !this.#stopped;
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
      const point = this.#schedule.nextDue(now);
      if (point === undefined) {
        await this.#sleep(this.#schedule.nextAt(now) - now);
        continue;
      }
      // A write needs no room: one that comes meanwhile goes first (the AMQP delivery waits for it).
      if (!(await this.#room())) continue;
      await this.#poll(point);
      await this.#gap();
    }
  }

  async #reopen(): Promise<void> {
    try {
      await this.#connection.open();
    } catch (err) {
      const why = messageOf(err);
      // A ModbusFault `io` (connection.ts): retryable, the port or host may come back.
      const delay = this.#reopenRetry.next(isGatewayError(err) ? err : { retryable: true });
      const attempt = this.#reopenRetry.attempts;
      const fields = { reason: why, retryInMs: delay, attempt };
      if (attempt === 1) this.#log.warn(fields, 'modbus bus unavailable; reopening with backoff');
      else this.#log.debug(fields, 'modbus bus still unavailable');
      this.#busDown = why;
      for (const job of this.#writes.splice(0)) job.resolve({ status: 'unavailable', reason: `bus ${this.name} is not connected: ${why}` });
      for (const device of this.#schedule.devices) this.#offline(device, `bus unavailable: ${why}`, false);
      await this.#sleep(delay);
      return;
    }
    this.opens += 1;
    this.#reopenRetry.reset();
    this.#busDown = undefined;
    this.#schedule.reopened(this.#now());
    const where = this.#config.rtu !== undefined ? { path: this.#config.rtu.path, baudRate: this.#config.rtu.baudRate }
      : { host: this.#config.tcp?.host, port: this.#config.tcp?.port };
    this.#log.info({ ...where, devices: this.#schedule.devices.length }, 'modbus bus open');
  }

  async #poll(point: PointState): Promise<void> {
    const device = point.device;
    const config = point.config;
    const answer = await this.#attempt(device, device.online ? 1 + this.#config.retries : 1,
      () => this.#connection.read(device.config.unitId, READ_FUNCTION[config.function], config.address, quantityOf(config)));
    this.#polled(point, answer);
    this.#schedule.polled(point, this.#now());
  }

  #polled(point: PointState, answer: Answer<number[] | boolean[]>): void {
    const device = point.device;
    const config = point.config;
    if (answer.ok) {
      const time = this.#options.stamp();
      this.#answered(device);
      const decoded = decodePoint(config, answer.data);
      if (!decoded.ok) this.#options.count('modbus_bad_value');
      this.#report(point, decoded.ok ? { quality: 'good', value: decoded.value } : { quality: 'bad', error: decoded.error }, time);
      return;
    }
    const fault = answer.fault;
    if (fault.reason === 'exception') {
      this.#answered(device);
      this.#limited(`${device.config.name}:${config.name}:exception`, { device: device.config.name, unitId: device.config.unitId, point: config.name, exception: fault.exception },
        `modbus device answered a poll with ${fault.message}`);
      this.#report(point, { quality: 'bad', error: fault.message }, this.#options.stamp());
    } else if (!this.#connectionFault(fault)) {
      this.#offline(device, fault.message, true);
    }
  }

  /** A fault of the connection, not of the device (the bus reopens it), or the bus stops. */
  #connectionFault(fault: ModbusFault): boolean {
    return fault.reason === 'not_open' || fault.reason === 'io' || this.#stopped;
  }

  /** Sends `request` up to `attempts` times while it gets no valid answer; counts each failure. */
  async #attempt<T>(device: DeviceState, attempts: number, request: () => Promise<Answer<T>>): Promise<Answer<T>> {
    for (let attempt = 1; ; attempt++) {
      this.requests += 1;
      const answer = await request();
      if (answer.ok) return answer;
      const fault = answer.fault;
      this.#options.count(`modbus_${fault.reason}`);
      if ((answer.late ?? 0) > 0) {
        this.#options.count('modbus_late');
        this.#limited(`${device.config.name}:late`, { device: device.config.name, unitId: device.config.unitId, bytes: answer.late, attempt },
          'modbus answer came after its timeout; dropped');
      }
      // Silence is logged once, when the device goes offline; a bad answer each time (rate-limited).
      if (fault.reason !== 'exception' && fault.reason !== 'timeout' && fault.reason !== 'gateway') {
        this.#limited(`${device.config.name}:${fault.reason}`, { device: device.config.name, unitId: device.config.unitId, reason: fault.reason, attempt },
          `modbus response dropped: ${fault.message}`);
      }
      if (!fault.retryable || attempt >= attempts || this.#stopped || !this.#connection.isOpen) return answer;
      await this.#gap();
    }
  }

  #answered(device: DeviceState): void {
    if (this.#schedule.answered(device, this.#now())) {
      this.#log.info({ device: device.config.name, unitId: device.config.unitId }, 'modbus device answering again');
    }
  }

  /** Marks the device offline (once) and schedules its next probe. */
  #offline(device: DeviceState, why: string, log: boolean): void {
    if (!this.#schedule.unanswered(device, this.#now())) return;
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
    const { point, request } = job;
    const device = point.device;
    if (!device.online) {
      job.resolve({ status: 'unavailable', reason: `device ${device.config.name} is not answering` });
      return;
    }
    const answer = await this.#attempt(device, 1 + this.#config.retries,
      () => this.#connection.write(device.config.unitId, request.fn, point.config.address, request.values));
    if (answer.ok) {
      // The device has the new value: read it back soon, so that it is reported.
      point.due = this.#now();
      job.resolve({ status: 'done' });
      return;
    }
    const fault = answer.fault;
    if (fault.reason === 'exception') {
      // Acknowledge (5): the device took the write and works on it. Busy (6): try again later.
      if (fault.exception === 5) job.resolve({ status: 'done' });
      else if (fault.exception === 6) job.resolve({ status: 'unavailable', reason: `the device is busy (${exceptionText(6)})` });
      else job.resolve({ status: 'refused', code: 'device_exception', reason: `the device refused the write: ${fault.message}` });
      return;
    }
    if (!this.#connectionFault(fault)) this.#offline(device, fault.message, true);
    job.resolve({ status: 'unavailable', reason: `no confirmation from device ${device.config.name}: ${fault.message}` });
  }
}
