/**
 * Exponential backoff with full jitter: the n-th retry waits a random time between 0 and
 * min(cap, base * 2^n), so that a fleet of gateways that lost the same broker does not come back
 * in lock-step. After failures that will not fix themselves soon (auth, TLS), callers wait the
 * cap.
 *
 * `jitter: 'upper-half'` draws from the upper half instead (between half the ceiling and the
 * ceiling): for a wait that must never be near zero, such as probing a silent device, where a
 * zero wait would cost the bus a timeout at once.
 */
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  random?: () => number;
  /** 'full' (default): 0 to the ceiling; 'upper-half': half the ceiling to the ceiling. */
  jitter?: 'full' | 'upper-half';
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
    const random = (this.#options.random ?? Math.random)();
    return Math.floor(this.#options.jitter === 'upper-half' ? ceiling * (0.5 + 0.5 * random) : random * ceiling);
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
