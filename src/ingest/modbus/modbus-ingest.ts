/**
 * Modbus ingest: polls Modbus RTU and TCP devices and turns what they answer into readings.
 *
 *   bus queue (bus.ts) → poll → decode (codec.ts) → report by exception (report.ts)
 *   → reading {topic from the template, JSON payload, time of the poll} → router.route()
 *   → spool.append() (spool-writer.ts; a spool that waits holds the polls back)
 *
 * A reading's payload is JSON: {"value": …, "unit": "…", "quality": "good", "time": "ISO 8601"},
 * or with quality "bad", value null and an "error" (the device is offline, answered with an
 * exception, sent a float that is not a number). Faults on the line are counted in `rejected` by
 * reason (modbus_timeout, modbus_crc, modbus_short_frame, modbus_exception, modbus_unexpected,
 * modbus_garbage, …) and never become a value.
 *
 * Commands: `writePoint` writes a point of a device (coils with function 5/15, holding registers
 * with 6/16) in the point's data type, and says whether the device confirmed it.
 */
import { BoundedCounts } from '../../core/bounded-counts.js';
import { GatewayError } from '../../core/errors.js';
import { newReadingId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import { RateLimitedLog } from '../../core/rate-limited-log.js';
import type { Router } from '../../route/router.js';
import type { Spool } from '../../spool/interface.js';
import type { IngestAdapter, IngestStats } from '../interface.js';
import { ModbusBus, type WriteResult } from './bus.js';
import { encodePoint } from './codec.js';
import type { ModbusBusConfig, ModbusDeviceConfig, ModbusPointConfig } from './config.js';
import type { Sample } from './report.js';
import { SpoolWriter } from './spool-writer.js';

export interface ModbusIngestOptions {
  buses: readonly ModbusBusConfig[];
  spool: Pick<Spool, 'append'>;
  router: Router;
  log: Logger;
  /** The readings' clock. */
  now?: () => number;
  reopen?: { baseMs: number; capMs: number };
  /** Readings waiting for the spool before polls are held back. */
  highWater?: number;
  stopGraceMs?: number;
}

export interface ModbusIngestStats extends IngestStats {
  /** Readings waiting for the spool, and whether polls wait for it (the spool does not keep up). */
  spool: { pending: number; holding: boolean };
  buses: Record<string, {
    open: boolean;
    opens: number;
    requests: number;
    garbageBytes: number;
    devices: Record<string, { unitId: number; online: boolean }>;
  }>;
}

export interface WritePointCommand {
  bus: string;
  device: string;
  point: string;
  value: unknown;
}

export type { WriteResult } from './bus.js';

export class ModbusIngest implements IngestAdapter {
  readonly name = 'modbus';
  readonly #options: ModbusIngestOptions;
  readonly #log: Logger;
  readonly #limited: RateLimitedLog;
  readonly #now: () => number;
  /** Per address: bounded, since `{N}` templates give one address per device. */
  readonly #ingested = new BoundedCounts();
  readonly #rejected: Record<string, number> = {};
  readonly #writer: SpoolWriter;
  #buses: ModbusBus[] = [];
  /** Garbage runs already counted in `rejected`, per bus. */
  readonly #garbageSeen = new Map<string, number>();

  constructor(options: ModbusIngestOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#limited = new RateLimitedLog(options.log);
    this.#writer = new SpoolWriter({
      spool: options.spool, log: options.log, limited: this.#limited,
      count: (record, key, n) => (record === 'ingested' ? this.#ingested.add(key, n) : this.#count(this.#rejected, key, n)),
      ...(options.highWater === undefined ? {} : { highWater: options.highWater }),
      ...(options.stopGraceMs === undefined ? {} : { graceMs: options.stopGraceMs }),
    });
  }

  async start(): Promise<void> {
    if (this.#buses.length > 0) throw new GatewayError('INTERNAL', 'modbus ingest started twice');
    this.#buses = this.#options.buses.map((config) => new ModbusBus({
      config, log: this.#log, limited: this.#limited, stamp: this.#now,
      onSample: (device, point, sample, time) => this.#onSample(config, device, point, sample, time),
      room: () => this.#writer.room(),
      count: (reason, n) => this.#count(this.#rejected, reason, n),
      ...(this.#options.reopen === undefined ? {} : { reopen: this.#options.reopen }),
    }));
    // Like a serial port, a bus that cannot be opened now is not an error: it is reopened with backoff.
    for (const bus of this.#buses) bus.start();
  }

  async stop(): Promise<void> {
    const buses = this.#buses;
    this.#buses = [];
    await Promise.all(buses.map((bus) => bus.stop()));
    for (const bus of buses) this.#countGarbage(bus);
    await this.#writer.stop();
  }

  /** Writes `value` to a point; resolves once the device confirmed it, or with why not. */
  async writePoint(command: WritePointCommand): Promise<WriteResult> {
    const busConfig = this.#options.buses.find((b) => b.name === command.bus);
    const bus = this.#buses.find((b) => b.name === command.bus);
    if (busConfig === undefined) return { status: 'refused', code: 'unknown_point', reason: `no modbus bus named ${command.bus}` };
    const device = busConfig.devices.find((d) => d.name === command.device);
    if (device === undefined) return { status: 'refused', code: 'unknown_point', reason: `no device ${command.device} on modbus bus ${command.bus}` };
    const point = device.points.find((p) => p.name === command.point);
    if (point === undefined) return { status: 'refused', code: 'unknown_point', reason: `no point ${command.point} on device ${command.device}` };
    if (!point.writable || (point.function !== 'coil' && point.function !== 'holding')) {
      const why = point.function === 'coil' || point.function === 'holding' ? 'it is not configured writable: true' : `${point.function} points can only be read`;
      return { status: 'refused', code: 'read_only', reason: `point ${command.point} is read-only (${why})` };
    }
    const encoded = encodePoint(point, command.value);
    if (!encoded.ok) return { status: 'refused', code: encoded.code, reason: `value ${JSON.stringify(command.value)} for ${command.point}: ${encoded.error}` };
    if (bus === undefined) return { status: 'unavailable', reason: 'modbus ingest is not running' };
    const request = encoded.kind === 'bits'
      ? { fn: encoded.bits.length === 1 ? 5 as const : 15 as const, values: encoded.bits }
      : { fn: encoded.registers.length === 1 ? 6 as const : 16 as const, values: encoded.registers };
    const result = await bus.write(command.device, command.point, request);
    const fields = { bus: command.bus, device: command.device, point: command.point, fn: request.fn, status: result.status };
    if (result.status === 'done') this.#log.info(fields, 'modbus write confirmed by the device');
    else this.#log.warn({ ...fields, reason: result.reason }, 'modbus write not done');
    return result;
  }

  stats(): ModbusIngestStats {
    const buses: ModbusIngestStats['buses'] = {};
    for (const bus of this.#buses) {
      this.#countGarbage(bus);
      const devices: Record<string, { unitId: number; online: boolean }> = {};
      for (const d of bus.devices()) devices[d.name] = { unitId: d.unitId, online: d.online };
      buses[bus.name] = { open: bus.open, opens: bus.opens, requests: bus.requests, garbageBytes: bus.garbage().bytes, devices };
    }
    return {
      ingested: this.#ingested.toRecord(),
      rejected: { ...this.#rejected },
      connections: this.#buses.filter((bus) => bus.open).length,
      spool: { pending: this.#writer.pending, holding: this.#writer.holding },
      buses,
    };
  }

  /** Garbage is counted by the line as it happens; it reaches `rejected` when stats are read. */
  #countGarbage(bus: ModbusBus): void {
    const runs = bus.garbage().runs;
    const seen = this.#garbageSeen.get(bus.name) ?? 0;
    if (runs > seen) {
      this.#count(this.#rejected, 'modbus_garbage', runs - seen);
      this.#garbageSeen.set(bus.name, runs);
      this.#limited.write('warn', `${bus.name}:garbage`, { bus: bus.name, runs: runs - seen, bytes: bus.garbage().bytes },
        'modbus: bytes on the line that were no answer to a request were skipped');
    }
  }

  #onSample(bus: ModbusBusConfig, device: ModbusDeviceConfig, point: ModbusPointConfig, sample: Sample, time: number): void {
    const topic = fillModbusTopic(bus.topic, { bus: bus.name, device: device.name, point: point.name, unitId: String(device.unitId) });
    const payload = Buffer.from(JSON.stringify(readingPayload(point, sample, time)));
    const reading = this.#options.router.route({ id: newReadingId(time), topic, payload, receivedAt: time });
    if (reading === undefined) {
      this.#count(this.#rejected, 'unrouted');
      this.#limited.write('warn', `${bus.name}:unrouted`, { bus: bus.name, device: device.name, point: point.name, topic },
        'modbus reading dropped: no route matches its topic');
      return;
    }
    this.#writer.push(reading);
  }

  #count(record: Record<string, number>, key: string, n = 1): void {
    record[key] = (record[key] ?? 0) + n;
  }
}

/** The JSON of one reading: value, unit, quality and the time of the poll (and why, when bad). */
export function readingPayload(point: Pick<ModbusPointConfig, 'unit'>, sample: Sample, time: number): Record<string, unknown> {
  const body: Record<string, unknown> = { value: sample.quality === 'good' ? sample.value : null };
  if (point.unit !== undefined) body.unit = point.unit;
  body.quality = sample.quality;
  if (sample.quality === 'bad') body.error = sample.error;
  body.time = new Date(time).toISOString();
  return body;
}

/** The topic of a reading; names are checked by the schema (no '/', '+', '#'), so it always fills. */
export function fillModbusTopic(template: string, fields: Record<'bus' | 'device' | 'point' | 'unitId', string>): string {
  return template.replace(/\{(bus|device|point|unitId)\}/g, (_, name: keyof typeof fields) => fields[name]);
}
