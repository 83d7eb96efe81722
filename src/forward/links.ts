/**
 * The forwarder's hold on the upstream's links: one onCredit subscription per address, on the link
 * object the upstream hands out now (upstream/interface.ts, UpstreamLink.closed).
 *
 * The upstream may drop a link (idle, or to stay under its cap of open links); the dropped object
 * calls its listeners once more and then never again, and `link(address)` returns a new one. So:
 * - the subscription moves to the new object when a pump finds one (`follow`);
 * - when a link is closed, an address whose last pump stopped for want of credit (`starved`:
 *   readings may be left) is pumped again, which asks for a new link; any other address is
 *   forgotten, and the spool's next onAvailable for it starts over. So the map holds the
 *   addresses with a link open or readings waiting, not every device ever seen (`{N}` templates).
 */
import type { UpstreamLink } from '../upstream/interface.js';

interface Entry {
  link: UpstreamLink;
  off: () => void;
  /** The last pump stopped for want of credit, with readings possibly left. */
  starved: boolean;
}

export class Links {
  readonly #entries = new Map<string, Entry>();
  readonly #wake: (address: string) => void;

  /** `wake` pumps an address. */
  constructor(wake: (address: string) => void) {
    this.#wake = wake;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Subscribes to `link` for `address`, moving the subscription off an older object. */
  follow(address: string, link: UpstreamLink): void {
    const known = this.#entries.get(address);
    if (known?.link === link) return;
    known?.off();
    const entry: Entry = {
      link, starved: known?.starved ?? false,
      off: link.onCredit(() => (link.closed ? this.#closed(address, link) : this.#wake(address))),
    };
    this.#entries.set(address, entry);
  }

  starved(address: string, starved: boolean): void {
    const entry = this.#entries.get(address);
    if (entry !== undefined) entry.starved = starved;
  }

  clear(): void {
    for (const entry of this.#entries.values()) entry.off();
    this.#entries.clear();
  }

  /** The upstream closed `link`: see the head. */
  #closed(address: string, link: UpstreamLink): void {
    const entry = this.#entries.get(address);
    if (entry?.link !== link) return;
    if (entry.starved) {
      this.#wake(address);
      return;
    }
    entry.off();
    this.#entries.delete(address);
  }
}
