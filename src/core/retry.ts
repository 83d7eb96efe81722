/**
 * The one retry policy: how long to wait before trying again after a failure, decided by the
 * error as it was translated where it entered our code (GatewayError.retryable), and by the
 * failures since the last success.
 *
 * - A retryable error (the failure may pass by itself: a socket reset, a broker restarting, a link
 *   detached by force, a queue its consumer has not declared yet, a device unplugged): exponential
 *   backoff with jitter, `floorMs` plus a random part of min(capMs, baseMs * 2^n), at most capMs,
 *   so that a fleet of gateways that lost the same broker does not come back in step.
 * - An error that is not retryable (someone must change something first: credentials, a
 *   certificate, a permission, or what the broker says it will never take as it is): the capped
 *   interval, jittered over its upper half (never below `floorMs` either). The attempt is
 *   repeated at all only so that the gateway recovers by itself, without a restart, once the
 *   change is made; never in a tight loop.
 *
 * reset() after a success: the next failure starts again from the first wait.
 *
 * Who uses it, with which numbers: the upstream connection (floor 0, 500 ms to 30 s), each sender
 * and receiver link the broker refused or closed (floor = first wait = `upstream linkRetryMs`, so
 * that a refusal answered at once never becomes a loop of attaches), and the reopening of serial
 * ports and Modbus buses (every reason a port fails to open may pass: an adapter unplugged or
 * renumbered, a permission udev has not applied yet).
 */
import { Backoff } from './backoff.js';
import type { GatewayError } from './errors.js';

export interface RetryPolicyOptions {
  baseMs: number;
  capMs: number;
  /** No wait is shorter (default 0). */
  floorMs?: number;
  random?: () => number;
  /** The jitter of the retryable waits (Backoff's; 'full' by default). */
  jitter?: 'full' | 'upper-half';
}

export class RetryPolicy {
  readonly #options: RetryPolicyOptions;
  readonly #backoff: Backoff;

  constructor(options: RetryPolicyOptions) {
    // A cap of 0 would turn every failure into a loop of attempts without a pause.
    if (!(options.capMs > 0) || !(options.baseMs >= 0)) throw new RangeError(`retry: capMs must be above 0 and baseMs not below 0, not ${options.capMs} and ${options.baseMs}`);
    this.#options = options;
    this.#backoff = new Backoff({
      baseMs: options.baseMs, capMs: options.capMs,
      ...(options.random === undefined ? {} : { random: options.random }), ...(options.jitter === undefined ? {} : { jitter: options.jitter }),
    });
  }

  /** The wait before the next attempt after `error`; each call counts one more failure. */
  next(error: Pick<GatewayError, 'retryable'>): number {
    const floor = this.#options.floorMs ?? 0;
    if (!error.retryable) return Math.max(floor, this.#backoff.capped());
    return Math.max(floor, Math.min(this.#options.capMs, floor + this.#backoff.next()));
  }

  /** The last attempt succeeded. */
  reset(): void {
    this.#backoff.reset();
  }

  /** Failures since the last success. */
  get attempts(): number {
    return this.#backoff.attempts;
  }
}
