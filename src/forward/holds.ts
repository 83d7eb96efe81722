/**
 * Addresses held back after the upstream released a reading. `released` (or `modified`) means
 * "not taken, try again", and the reading goes back to the head of its address; sent again at once,
 * a reading the broker will never take (RabbitMQ 4 releases what no binding routes) would go round
 * thousands of times a second. So the address waits before its next send: the first wait up to
 * `baseMs`, then growing (exponential, with jitter) up to `capMs`. Order per address is kept: the
 * whole address waits, not just the reading.
 *
 * The waits grow while the readings released stay untaken, and start over once each of them was
 * accepted or rejected. (One that leaves the spool otherwise, expired or evicted, keeps the waits
 * long until the next run: slower, never wrong.) A hold ends by its timer only: credit, new
 * readings and reconnects do not shorten it.
 */
import { Backoff } from '../core/backoff.js';

export interface HoldsOptions {
  baseMs: number;
  capMs: number;
  random?: () => number;
  /** Called when the hold of an address ends: pump it. */
  wake: (address: string) => void;
  /** Runs `run` in `ms` and returns what cancels it; setTimeout by default (tests end waits by hand). */
  schedule?: Schedule;
}

/** Released readings remembered per address (rhea's session buffer holds 2048 in flight). */
const MAX_REMEMBERED = 4096;

export type Schedule = (run: () => void, ms: number) => () => void;

const timer: Schedule = (run, ms) => {
  const handle = setTimeout(run, ms);
  // A wait for a release keeps no process alive: stop() ends it anyway.
  handle.unref();
  return () => clearTimeout(handle);
};

interface Held {
  backoff: Backoff;
  /** Readings released and not settled for good since the waits last started over. */
  released: Set<number>;
  /** Cancels the wait under way; undefined when the address does not wait. */
  timer: (() => void) | undefined;
}

export class Holds {
  readonly #options: HoldsOptions;
  readonly #addresses = new Map<string, Held>();

  constructor(options: HoldsOptions) {
    this.#options = options;
  }

  /** The address waits now: send nothing to it. */
  held(address: string): boolean {
    return this.#addresses.get(address)?.timer !== undefined;
  }

  /** Addresses waiting now. */
  get waiting(): number {
    let n = 0;
    for (const held of this.#addresses.values()) if (held.timer !== undefined) n += 1;
    return n;
  }

  /**
   * A reading of `address` (spool seq) was released: the address waits. Returns how long, when
   * this started a wait; undefined when it waits already (or holds are off: capMs 0).
   */
  released(address: string, seq: number): number | undefined {
    const { baseMs, capMs, random } = this.#options;
    if (capMs <= 0) return undefined;
    let held = this.#addresses.get(address);
    if (held === undefined) {
      held = { backoff: new Backoff({ baseMs, capMs, ...(random === undefined ? {} : { random }) }), released: new Set(), timer: undefined };
      this.#addresses.set(address, held);
    }
    // Bounded: past this many untaken, forget which (the waits go on growing).
    if (held.released.size >= MAX_REMEMBERED) held.released.clear();
    held.released.add(seq);
    // Several readings released in one burst (a disposition frame settles many) make one wait.
    if (held.timer !== undefined) return undefined;
    const delay = held.backoff.next();
    const entry = held;
    entry.timer = (this.#options.schedule ?? timer)(() => {
      entry.timer = undefined;
      // Started over meanwhile (#reset): nothing left to remember.
      if (entry.released.size === 0) this.#addresses.delete(address);
      this.#options.wake(address);
    }, delay);
    return delay;
  }

  /** A reading of `address` was accepted, or left the spool: once no released reading is left untaken, the waits start over. */
  settled(address: string, seq: number): void {
    const held = this.#addresses.get(address);
    if (held === undefined || !held.released.delete(seq) || held.released.size > 0) return;
    this.#reset(address, held);
  }

  /** Attempts in the current run of waits of `address` (0 when it is not held). */
  attempts(address: string): number {
    return this.#addresses.get(address)?.backoff.attempts ?? 0;
  }

  clear(): void {
    for (const held of this.#addresses.values()) held.timer?.();
    this.#addresses.clear();
  }

  #reset(address: string, held: Held): void {
    // A wait under way runs out: the readings behind it were sent before the news came.
    if (held.timer === undefined) this.#addresses.delete(address);
    else {
      held.released.clear();
      held.backoff.reset();
    }
  }
}
