/**
 * Addresses whose sender link the broker refuses or closes while the connection stays up:
 * RabbitMQ 4 ends the session with amqp:not-found for a queue missing at attach and detaches with
 * amqp:resource-deleted for a queue deleted under the link; RabbitMQ 3.10 ends the session. The
 * other addresses of the connection keep flowing; the readings of a refused one wait in the spool
 * while its link is attached again and again, until the broker takes it (the queue was declared).
 *
 * The waits between attaches are decided here, per address, by the one retry policy
 * (core/retry.ts) from the broker's reason: a queue missing (amqp:not-found) or deleted
 * (amqp:resource-deleted) may appear, and the waits grow exponentially (with jitter, so that many
 * refused addresses do not retry in step) from the policy's floor up to its cap; a refusal that
 * needs a person (amqp:not-allowed, amqp:unauthorized-access) waits the cap. Back to the first
 * wait once the link is attached. A refused address is logged once at error level
 * (again only if the broker's reason changes; the retries at debug), and once when it recovers.
 */
import type { Logger } from '../../core/logger.js';
import { RetryPolicy, type RetryPolicyOptions } from '../../core/retry.js';
import type { RefusedAddress } from '../interface.js';
import type { UpstreamError } from './errors.js';

interface Refusal {
  error: UpstreamError;
  since: number;
  attempts: number;
  retry: RetryPolicy;
}

export interface RefusalsOptions extends RetryPolicyOptions {
  log: Logger;
}

export class Refusals {
  readonly #options: RefusalsOptions;
  readonly #refused = new Map<string, Refusal>();

  constructor(options: RefusalsOptions) {
    this.#options = options;
  }

  /** The broker refused or closed the link to `address`: logs it, and returns how long to wait before attaching again. */
  refused(address: string, error: UpstreamError): number {
    const { log, ...policy } = this.#options;
    let refusal = this.#refused.get(address);
    const news = refusal === undefined || refusal.error.condition !== error.condition;
    if (refusal === undefined) {
      refusal = { error, since: Date.now(), attempts: 0, retry: new RetryPolicy(policy) };
      this.#refused.set(address, refusal);
    }
    refusal.error = error;
    refusal.attempts += 1;
    const delay = refusal.retry.next(error);
    const fields = { address, condition: error.condition, code: error.code, err: error.message, attempts: refusal.attempts, retryInMs: delay };
    if (news) log.error(fields, 'upstream refused the link to an address: its readings wait in the spool; attaching again with backoff');
    else log.debug(fields, 'upstream refused the link again');
    return delay;
  }

  /** The link to `address` is attached (the broker answered with its target). */
  attached(address: string): void {
    const refusal = this.#refused.get(address);
    if (refusal === undefined) return;
    this.#refused.delete(address);
    this.#options.log.info({ address, attempts: refusal.attempts, refusedForMs: Date.now() - refusal.since },
      'upstream took the link to an address it refused: its readings flow again');
  }

  /** Nobody wants a link to `address` any more. */
  forget(address: string): void {
    this.#refused.delete(address);
  }

  has(address: string): boolean {
    return this.#refused.has(address);
  }

  list(): RefusedAddress[] {
    return [...this.#refused].map(([address, r]) => ({
      address, code: r.error.code, message: r.error.message, since: r.since, attempts: r.attempts,
      ...(r.error.condition === undefined ? {} : { condition: r.error.condition }),
    }));
  }

  get size(): number {
    return this.#refused.size;
  }
}
