/**
 * The forwarder's hold on the upstream's links: one onCredit subscription per address, on the link
 * object the upstream hands out now (upstream/interface.ts, UpstreamLink.closed).
 *
 * The upstream may drop a link (idle, or to stay under its cap of open links); the dropped object
 * never calls its listeners again, and `link(address)` returns a new one. So:
 * - the subscription moves to the new object when a pump finds one (`follow`);
 * - entries of closed links are swept out, so the map is bounded by the links the upstream keeps
 *   open (plus those closed since the last sweep), not by the devices ever seen (`{N}` templates);
 * - an address whose readings wait for credit is `starved`: when its link is closed under it, no
 *   event will ever come for it again, so the sweep wakes it if the spool still has readings for
 *   it (and the pump then asks for a new link). A closed link with nothing waiting is forgotten.
 */
import type { UpstreamLink } from '../upstream/interface.js';

interface Entry {
  link: UpstreamLink;
  off: () => void;
  /** The last pump stopped for want of credit, with readings possibly left. */
  starved: boolean;
}

/** The map is swept when it has grown to this size at least (and to twice its size after the last sweep). */
const MIN_SWEEP = 64;

export class Links {
  readonly #entries = new Map<string, Entry>();
  readonly #wake: (address: string) => void;
  readonly #waiting: () => Iterable<string>;
  #sweepAt = MIN_SWEEP;

  /** `wake` pumps an address; `waiting` lists the addresses with readings waiting in the spool. */
  constructor(wake: (address: string) => void, waiting: () => Iterable<string>) {
    this.#wake = wake;
    this.#waiting = waiting;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Subscribes to `link` for `address`, moving the subscription off an older object. */
  follow(address: string, link: UpstreamLink): void {
    const known = this.#entries.get(address);
    if (known?.link === link) return;
    known?.off();
    const entry: Entry = { link, off: link.onCredit(() => this.#wake(address)), starved: known?.starved ?? false };
    this.#entries.set(address, entry);
    if (known === undefined && this.#entries.size >= this.#sweepAt) {
      this.sweep();
      this.#sweepAt = Math.max(MIN_SWEEP, 2 * this.#entries.size);
    }
  }

  starved(address: string, starved: boolean): void {
    const entry = this.#entries.get(address);
    if (entry !== undefined) entry.starved = starved;
  }

  /** Forgets the entries of closed links; wakes the starved ones that still have readings waiting. */
  sweep(): void {
    let waiting: Set<string> | undefined;
    for (const [address, entry] of this.#entries) {
      if (!entry.link.closed) continue;
      if (entry.starved) {
        waiting ??= new Set(this.#waiting());
        if (waiting.has(address)) {
          this.#wake(address);
          continue;
        }
      }
      entry.off();
      this.#entries.delete(address);
    }
  }

  clear(): void {
    for (const entry of this.#entries.values()) entry.off();
    this.#entries.clear();
    this.#sweepAt = MIN_SWEEP;
  }
}
