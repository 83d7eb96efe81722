/**
 * Which samples of a point become readings. Without report by exception, every poll does. With
 * it, a sample is reported when the value changed (a number by more than the deadband, anything
 * else when it differs), when the quality or the error changed, and at least every heartbeat.
 */
import type { Value } from './codec.js';
import type { ReportByException } from './config.js';

export type Sample =
  | { quality: 'good'; value: Value }
  | { quality: 'bad'; error: string };

function changed(a: Value, b: Value, deadband: number): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b) > deadband;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length !== b.length || a.some((value, i) => changed(value, b[i]!, deadband));
  }
  return a !== b;
}

export class Reporter {
  readonly #rbe: ReportByException | undefined;
  #last: { sample: Sample; at: number } | undefined;

  constructor(rbe: ReportByException | undefined) {
    this.#rbe = rbe;
  }

  /** Whether `sample`, taken at `now` (a monotonic ms), is reported; if so it becomes the last reported. */
  offer(sample: Sample, now: number): boolean {
    const rbe = this.#rbe;
    const last = this.#last;
    const report = rbe === undefined || last === undefined || now - last.at >= rbe.heartbeat
      || last.sample.quality !== sample.quality
      || (sample.quality === 'bad' && last.sample.quality === 'bad' && sample.error !== last.sample.error)
      || (sample.quality === 'good' && last.sample.quality === 'good' && changed(sample.value, last.sample.value, rbe.deadband));
    if (report) this.#last = { sample, at: now };
    return report;
  }
}
