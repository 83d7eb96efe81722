/**
 * How long a command consumer (`uplink in`, the gateway's downlink) waits before it releases a
 * command it could not carry out now. RabbitMQ puts a released message back at the head of its
 * queue with the delivery count unchanged, so releasing at once would hand the same failing
 * command back as fast as the broker can redeliver it. So a release waits, per message id:
 * `baseMs` the first time, doubling up to `capMs`. The attempts are kept for the last `remember`
 * message ids (oldest forgotten first), and forgotten when the command is accepted or rejected.
 * A message without an id always waits `baseMs`.
 */
export interface ReleaseBackoffOptions {
  baseMs: number;
  capMs: number;
  remember: number;
}

export const RELEASE_BACKOFF: ReleaseBackoffOptions = { baseMs: 1000, capMs: 30_000, remember: 1000 };

export class ReleaseBackoff {
  readonly #options: ReleaseBackoffOptions;
  /** Releases so far, by message id; in insertion order, so the first key is the oldest. */
  readonly #attempts = new Map<string, number>();

  constructor(options: ReleaseBackoffOptions = RELEASE_BACKOFF) {
    this.#options = options;
  }

  /** Counts one more release of `id` and returns how long to wait before it. */
  next(id: string | undefined): number {
    const { baseMs, capMs, remember } = this.#options;
    if (id === undefined) return baseMs;
    const attempts = (this.#attempts.get(id) ?? 0) + 1;
    this.#attempts.delete(id);
    this.#attempts.set(id, attempts);
    while (this.#attempts.size > remember) this.#attempts.delete(this.#attempts.keys().next().value!);
    return Math.min(capMs, baseMs * 2 ** Math.min(attempts - 1, 30));
  }

  /** Releases of `id` so far (0 when forgotten). */
  attempts(id: string | undefined): number {
    return id === undefined ? 0 : this.#attempts.get(id) ?? 0;
  }

  /** The command is settled for good (accepted or rejected). */
  forget(id: string | undefined): void {
    if (id !== undefined) this.#attempts.delete(id);
  }

  get size(): number {
    return this.#attempts.size;
  }
}
