/**
 * What a bus polls next, and which of its devices answer: the state of the bus's queue, with no
 * I/O (bus.ts sends the requests).
 *
 * A point is due every `interval`; the next poll is the one due longest, so a bus that cannot
 * keep up polls round-robin by due time and never skips a point for good. A device that gave no
 * valid answer is offline: instead of its points, one probe at a time is due, after a backoff
 * that doubles from `offlineBackoff.base` to `cap` (upper-half jitter: never near zero, or a
 * silent device would cost the bus a timeout at once). Its first valid answer brings it back, and
 * all its points are due at once.
 */
import { Backoff } from '../../core/backoff.js';
import type { ModbusBusConfig, ModbusDeviceConfig, ModbusPointConfig } from './config.js';
import { Reporter } from './report.js';

export class PointState {
  /** When it is next due (monotonic ms). */
  due = 0;
  readonly reporter: Reporter;

  constructor(readonly config: ModbusPointConfig, readonly device: DeviceState) {
    this.reporter = new Reporter(config.reportByException);
  }
}

export class DeviceState {
  online = true;
  /** Offline: when the next probe goes out (monotonic ms). */
  probeAt = 0;
  readonly probes: Backoff;
  readonly points: PointState[];

  constructor(readonly config: ModbusDeviceConfig, backoff: ModbusBusConfig['offlineBackoff'], random: () => number) {
    this.points = config.points.map((point) => new PointState(point, this));
    this.probes = new Backoff({ baseMs: backoff.base, capMs: backoff.cap, random, jitter: 'upper-half' });
  }
}

export class Schedule {
  readonly devices: DeviceState[];
  readonly #byName = new Map<string, DeviceState>();

  constructor(config: ModbusBusConfig, random: () => number) {
    this.devices = config.devices.map((device) => new DeviceState(device, config.offlineBackoff, random));
    for (const device of this.devices) this.#byName.set(device.config.name, device);
  }

  point(deviceName: string, pointName: string): PointState | undefined {
    return this.#byName.get(deviceName)?.points.find((p) => p.config.name === pointName);
  }

  /** The point to poll now: the one due longest among online devices, or the probe of an offline device. */
  nextDue(now: number): PointState | undefined {
    let best: PointState | undefined;
    let bestAt = Infinity;
    for (const device of this.devices) {
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

  /** When something is next due; `now + 1000` when nothing is. */
  nextAt(now: number): number {
    let at = Infinity;
    for (const device of this.devices) {
      if (!device.online) at = Math.min(at, device.probeAt);
      else for (const point of device.points) at = Math.min(at, point.due);
    }
    return Number.isFinite(at) ? at : now + 1000;
  }

  /** The point was polled (answered or not): it is due again one interval on. */
  polled(point: PointState, now: number): void {
    const next = point.due + point.config.interval;
    // Behind (a slow bus, a device that was offline): poll as soon as possible, once.
    point.due = next < now ? now : next;
  }

  /** A valid answer came; true when the device was offline until now (all its points are due). */
  answered(device: DeviceState, now: number): boolean {
    if (device.online) return false;
    device.online = true;
    device.probes.reset();
    for (const point of device.points) point.due = now;
    return true;
  }

  /** No valid answer: schedules the next probe; true when the device was online until now. */
  unanswered(device: DeviceState, now: number): boolean {
    device.probeAt = now + device.probes.next();
    if (!device.online) return false;
    device.online = false;
    return true;
  }

  /** The connection is open again: every device offline only because it was down is probed at once. */
  reopened(now: number): void {
    for (const device of this.devices) {
      if (!device.online) device.probeAt = now;
    }
  }
}
