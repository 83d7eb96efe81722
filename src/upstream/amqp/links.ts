/**
 * The sender links of one connection, under a cap. An address template such as
 * `/queue/device-{2}` gives one address, and so one link and one session, per device; without a
 * bound a gateway in front of thousands of devices would hold thousands of them open at the
 * broker. So:
 *
 * - At most `maxLinks` links hold a place: attached, attaching, or (while disconnected) to be
 *   attached on the next connection. A link being closed keeps its place until the broker has
 *   ended its session, so the broker never sees more than `maxLinks` at once.
 * - A link is idle while it has credit, nothing unsettled, nothing waiting in rhea's buffer, and
 *   nothing was sent or settled on it. (Without credit it is not idle: its caller is waiting for
 *   the broker, and a closed link would never wake it.) A link idle for `idleTimeoutMs` is closed.
 * - A link asked for when every place is taken waits, with no credit, in the order asked. Each
 *   time a place may free up (an outcome, a flow, a closed session) the least recently used idle
 *   link whose caller has had its turn (it sent on the link, or called idle(), since the attach)
 *   is closed to make room, and the first waiter takes the place freed; its onCredit fires once
 *   it is attached and has credit. So links take turns, one batch each, and a link just attached
 *   is not closed before its caller could send. A link the broker refused (attached again
 *   with backoff, refusals.ts) gives its place up too: a refused address must not shut out the others. A waiter
 *   for an address whose old link is still closing waits for that link to go: two links of one
 *   name may not be attached at once.
 * - Closed links are forgotten. The memory held is bounded by `maxLinks` and by the waiters, one
 *   per address that a caller asked for and could not yet send to (addresses with readings).
 */
import { performance } from 'node:perf_hooks';
import type { Connection } from 'rhea';
import type { Logger } from '../../core/logger.js';
import type { AmqpSenderLink, DeliveryMode } from './sender-link.js';

export interface SenderLinksOptions {
  maxLinks: number;
  idleTimeoutMs: number;
  log: Logger;
  /** Builds a link; `onChange` is the pool's and must be passed on to AmqpSenderLink. */
  create: (address: string, mode: DeliveryMode, onChange: () => void) => AmqpSenderLink;
}

export class SenderLinks {
  readonly #options: SenderLinksOptions;
  readonly #log: Logger;
  /** Links holding a place, by address. */
  readonly #placed = new Map<string, AmqpSenderLink>();
  /** When the sweep last saw each placed link busy or without credit (performance.now()). */
  readonly #busySeen = new Map<AmqpSenderLink, number>();
  /** Links closed by us whose session the broker has not ended yet: they keep their place. */
  readonly #closing = new Set<AmqpSenderLink>();
  /** Links waiting for a place, in the order asked. */
  readonly #waiting = new Map<string, AmqpSenderLink>();
  #connection: Connection | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #roomSoon: NodeJS.Immediate | undefined;

  constructor(options: SenderLinksOptions) {
    if (!Number.isInteger(options.maxLinks) || options.maxLinks < 1) throw new RangeError(`maxLinks must be a whole number from 1, not ${options.maxLinks}`);
    this.#options = options;
    this.#log = options.log;
  }

  start(): void {
    // A quarter of the timeout: a link is closed between 1 and 1.25 timeouts after its last use.
    const every = Math.max(10, Math.min(this.#options.idleTimeoutMs / 4, 30_000));
    this.#sweeper = setInterval(() => this.#sweep(), every);
    this.#sweeper.unref();
  }

  stop(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    if (this.#roomSoon !== undefined) clearImmediate(this.#roomSoon);
    this.#roomSoon = undefined;
    this.#connection = undefined;
    for (const link of this.#placed.values()) link.detach();
    this.#closing.clear();
  }

  /** The link for `address`: the one holding a place or waiting, else a new one (see the header). */
  get(address: string, mode: DeliveryMode): AmqpSenderLink {
    const known = this.#placed.get(address) ?? this.#waiting.get(address);
    if (known !== undefined) return known;
    const link = this.#options.create(address, mode, () => this.#changed());
    this.#waiting.set(address, link);
    this.#promote();
    if (this.#waiting.has(address)) {
      this.#log.debug({ address, maxLinks: this.#options.maxLinks, waiting: this.#waiting.size }, 'upstream: every link place taken; the link waits');
      this.#changed();
    }
    return link;
  }

  /** A link for `address` holds a place or waits for one. */
  knows(address: string): boolean {
    return this.#placed.has(address) || this.#waiting.has(address);
  }

  /** Still wanted: holds a place (a link refused by the broker is attached again only then). */
  placed(link: AmqpSenderLink): boolean {
    return this.#placed.get(link.address) === link;
  }

  /** A connection is open: every link holding a place attaches. */
  connected(connection: Connection): void {
    this.#connection = connection;
    for (const link of this.#placed.values()) link.attach(connection);
  }

  /** The connection is gone: unsettled messages are lost, closings are over, waiters take free places. */
  disconnected(): void {
    this.#connection = undefined;
    for (const link of this.#placed.values()) link.detach();
    this.#closing.clear();
    this.#promote();
  }

  /** Credit summed over the links holding a place. */
  credit(): number {
    let total = 0;
    for (const link of this.#placed.values()) total += link.credit();
    return total;
  }

  /** How many links hold a place, are being closed, and wait. */
  counts(): { open: number; closing: number; waiting: number } {
    return { open: this.#placed.size, closing: this.#closing.size, waiting: this.#waiting.size };
  }

  /** Something moved on a link: if links wait, look for room a little later (outside rhea's handler). */
  #changed(): void {
    if (this.#waiting.size === 0 || this.#roomSoon !== undefined || this.#connection === undefined) return;
    // After the caller's reaction to the same event: a link it sends on again is not idle then.
    this.#roomSoon = setImmediate(() => {
      this.#roomSoon = undefined;
      this.#makeRoom();
    });
  }

  #idle(link: AmqpSenderLink): boolean {
    return link.quiet && link.credit() > 0;
  }

  /** May be closed for a waiting link (see the header). */
  #yields(link: AmqpSenderLink): boolean {
    return link.quiet && ((link.served && link.credit() > 0) || (link.refused && !link.attached));
  }

  /** Closes least recently used idle links while links wait and no place is free. */
  #makeRoom(): void {
    this.#promote();
    if (this.#connection === undefined) return;
    let wanted = this.#waiting.size - this.#closing.size;
    while (wanted > 0) {
      let lru: AmqpSenderLink | undefined;
      for (const link of this.#placed.values()) {
        if (this.#yields(link) && (lru === undefined || link.lastUsed < lru.lastUsed)) lru = link;
      }
      if (lru === undefined) return;
      this.#close(lru, 'to make room for a waiting link');
      wanted -= 1;
    }
  }

  /** Waiters take free places, first asked first. */
  #promote(): void {
    for (const [address, link] of this.#waiting) {
      if (this.#placed.size + this.#closing.size >= this.#options.maxLinks) return;
      if ([...this.#closing].some((c) => c.address === address)) continue;
      this.#waiting.delete(address);
      this.#placed.set(address, link);
      if (this.#connection !== undefined) link.attach(this.#connection);
    }
  }

  #close(link: AmqpSenderLink, why: string): void {
    this.#placed.delete(link.address);
    this.#busySeen.delete(link);
    this.#closing.add(link);
    this.#log.debug({ address: link.address, why }, 'upstream: closing an idle sender link');
    link.close(() => {
      if (!this.#closing.delete(link)) return;
      this.#promote();
    });
  }

  #sweep(): void {
    if (this.#connection === undefined) return;
    const now = performance.now();
    for (const link of [...this.#placed.values()]) {
      if (!this.#idle(link)) {
        this.#busySeen.set(link, now);
        continue;
      }
      const since = Math.max(link.lastUsed, this.#busySeen.get(link) ?? 0);
      if (now - since >= this.#options.idleTimeoutMs) this.#close(link, `idle for ${this.#options.idleTimeoutMs} ms`);
    }
    this.#makeRoom();
  }
}
