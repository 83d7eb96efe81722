/**
 * Exponential backoff with full jitter: the n-th retry waits a random time between 0 and
 * min(cap, base * 2^n), so that a fleet of gateways that lost the same broker does not come back
 * in lock-step. After failures that will not fix themselves soon (auth, TLS), callers wait the
 * cap.
 */
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  random?: () => number;
}

export class Backoff {
  readonly #options: BackoffOptions;
  #attempt = 0;

  constructor(options: BackoffOptions) {
    this.#options = options;
  }

  /** The delay before the next attempt; each call counts one more failure. */
  next(): number {
    const ceiling = Math.min(this.#options.capMs, this.#options.baseMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt += 1;
    return Math.floor((this.#options.random ?? Math.random)() * ceiling);
  }

  /** The capped delay, with jitter over its upper half (never near zero). */
  capped(): number {
    this.#attempt += 1;
    return Math.floor(this.#options.capMs * (0.5 + 0.5 * (this.#options.random ?? Math.random)()));
  }

  reset(): void {
    this.#attempt = 0;
  }

  get attempts(): number {
    return this.#attempt;
  }
}
