/**
 * The pump from the spool to the upstream. For each address it leases only as many readings as
 * the link has credit for, so a link without credit never pulls the backlog into memory, and maps
 * each outcome back onto the spool:
 *   accepted → ack; released, lost (connection gone) → release; modified → release, or count an
 *   attempt when the broker says the delivery failed; rejected → dead-letter with the condition.
 * When the upstream disconnects, everything in flight returns to the spool in order. After a
 * released or modified outcome the address waits a while before it sends again (holds.ts): a
 * reading the broker will never take must not go round in a loop.
 *
 * Rules that keep a reading from being sent twice at once, or needlessly:
 * - A disconnect ends a lease epoch: the acks already decided go to the spool first, then
 *   `releaseAll`. An outcome that arrives later for a transfer of an earlier epoch is about a lease
 *   that no longer exists (the reading may be out again on the new connection): it is ignored,
 *   and the reading's fate is decided by its new transfer.
 * - A lease that resolves after a disconnect or a stop is given back, never sent.
 * - Links: see links.ts (one subscription per address, on the current link object; bounded).
 */
import { BoundedCounts } from '../core/bounded-counts.js';
import type { Logger } from '../core/logger.js';
import type { Spool, SpooledReading } from '../spool/interface.js';
import type { Outcome, Upstream, UpstreamLink, UpstreamMessage } from '../upstream/interface.js';
import { Holds, type Schedule } from './holds.js';
import { Links } from './links.js';

/** What the forwarder needs of a route (route/router.ts's Route has it). */
export interface RouteInfo {
  /** at-least-once when unset. */
  delivery?: 'at-least-once' | 'at-most-once';
  properties?: Record<string, string | number | boolean>;
}

export interface ForwarderOptions {
  spool: Spool;
  upstream: Upstream;
  /** The route of the readings of an address or topic: their delivery mode and extra properties. */
  route: (address: string, topic?: string) => RouteInfo | undefined;
  log: Logger;
  now?: () => number;
  /** The waits of an address after a release (holds.ts); FORWARD_DEFAULTS when unset, none with capMs 0. */
  holdAfterRelease?: { baseMs: number; capMs: number; random?: () => number; schedule?: Schedule };
}

export const FORWARD_DEFAULTS = { holdAfterRelease: { baseMs: 500, capMs: 30_000 } } as const;

export interface ForwardStats {
  /** Accepted readings by address: the first 100 addresses, the rest under `_other` (core/bounded-counts.ts). */
  forwarded: Record<string, number>;
  outcomes: Record<Outcome['kind'], number>;
  /** Released (and modified) outcomes by address, bounded as `forwarded`. */
  released: Record<string, number>;
  /** Addresses waiting after a release now. */
  held: number;
}

export class Forwarder {
  readonly #options: ForwarderOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #links: Links;
  readonly #pumping = new Set<string>();
  readonly #again = new Set<string>();
  readonly #unsubscribe: Array<() => void> = [];
  #running = false;
  /** Follows the upstream's state events: state() builds a whole object, too much for every pump. */
  #connected = false;
  /** Bumped by every disconnect: outcomes of transfers sent before it are late (see the head). */
  #epoch = 0;
  #acks: number[] = [];
  /** What stop() waits for: the last pump under way to end. */
  #idle: { done: Promise<void>; resolve: () => void } | undefined;
  readonly #holds: Holds;
  readonly #forwarded = new BoundedCounts();
  readonly #released = new BoundedCounts();
  readonly #outcomes: Record<Outcome['kind'], number> = { accepted: 0, released: 0, modified: 0, rejected: 0, lost: 0 };

  constructor(options: ForwarderOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#links = new Links((address) => this.#pump(address));
    this.#holds = new Holds({ ...(options.holdAfterRelease ?? FORWARD_DEFAULTS.holdAfterRelease), wake: (address) => this.#pump(address) });
  }

  async start(): Promise<void> {
    this.#running = true;
    const { spool, upstream } = this.#options;
    this.#unsubscribe.push(spool.onAvailable((address) => this.#pump(address)));
    this.#connected = upstream.state().connected;
    this.#unsubscribe.push(upstream.onState((state) => {
      this.#connected = state.connected;
      if (state.connected) this.#pumpAll();
      else this.#disconnected();
    }));
    this.#pumpAll();
  }

  /** Sends nothing more; resolves once the pumps under way have ended (what they leased and did not send is back in the spool). */
  async stop(): Promise<void> {
    this.#running = false;
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    this.#links.clear();
    this.#holds.clear();
    this.#again.clear();
    this.#flushAcks();
    if (this.#pumping.size === 0) return;
    if (this.#idle === undefined) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => { resolve = r; });
      this.#idle = { done, resolve };
    }
    await this.#idle.done;
  }

  stats(): ForwardStats {
    return { forwarded: this.#forwarded.toRecord(), outcomes: { ...this.#outcomes }, released: this.#released.toRecord(), held: this.#holds.waiting };
  }

  #disconnected(): void {
    // Accepted outcomes of the frames read before the disconnect: once releaseAll has run, their
    // acks would find nothing in flight and the readings would be sent again.
    this.#flushAcks();
    this.#epoch += 1;
    // Unsettled readings were reported lost one by one; this also catches any lease not yet sent.
    this.#options.spool.releaseAll();
  }

  #pumpAll(): void {
    for (const address of this.#options.spool.addresses()) this.#pump(address);
  }

  /** Sends from the spool to `address` while its link has credit; one pump per address at a time. */
  #pump(address: string): void {
    // A held address is pumped when its wait ends.
    if (!this.#running || !this.#connected || this.#holds.held(address)) return;
    if (this.#pumping.has(address)) {
      this.#again.add(address);
      return;
    }
    this.#pumping.add(address);
    this.#drain(address).catch((err: unknown) => {
      this.#log.error({ err, address }, 'forwarding failed; will try again on the next change');
    }).finally(() => {
      this.#pumping.delete(address);
      if (this.#again.delete(address)) this.#pump(address);
      if (this.#pumping.size === 0 && this.#idle !== undefined) {
        this.#idle.resolve();
        this.#idle = undefined;
      }
    });
  }

  async #drain(address: string): Promise<void> {
    const { spool, upstream } = this.#options;
    const mode = this.#options.route(address)?.delivery ?? 'at-least-once';
    for (;;) {
      // A release that came meanwhile holds the address: its readings wait for the hold's end.
      if (!this.#running || this.#holds.held(address)) return;
      // Asked every round: the upstream may have closed the link and made a new one.
      const link = upstream.link(address, mode);
      this.#links.follow(address, link);
      const credit = link.credit();
      if (credit <= 0) {
        this.#links.starved(address, true);
        return;
      }
      const epoch = this.#epoch;
      const readings = await spool.lease(address, credit);
      if (readings.length === 0) {
        this.#links.starved(address, false);
        // Nothing more for this address now: a receiver that asked to drain gets its credit back.
        link.idle();
        return;
      }
      if (!this.#running || epoch !== this.#epoch || this.#holds.held(address)) {
        // Stopped, or a disconnect came while the lease was pending: whether its releaseAll saw
        // these readings or not, they go back (a release of what is not in flight is ignored).
        // Held meanwhile: they go back, behind the reading released first.
        await spool.release(readings.map((r) => r.seq));
        continue;
      }
      this.#send(link, readings, epoch);
    }
  }

  /** Sends leased readings in order while the link has credit; what it cannot send goes back, in order. */
  #send(link: UpstreamLink, readings: SpooledReading[], epoch: number): void {
    let i = 0;
    try {
      for (; i < readings.length; i++) {
        // The link can lose its credit while leasing (a disconnect, a drain answered, a close).
        if (link.credit() <= 0) break;
        const reading = readings[i]!;
        link.send(this.#message(reading), (outcome) => this.#settle(reading, epoch, outcome));
      }
    } finally {
      // Also when send threw: the readings not handed over must not stay leased until a disconnect.
      if (i < readings.length) {
        const seqs = readings.slice(i).map((r) => r.seq);
        this.#options.spool.release(seqs).catch((err: unknown) =>
          this.#log.error({ err, address: link.address, readings: seqs.length }, 'could not return unsent readings to the queue'));
      }
    }
  }

  #message(reading: SpooledReading): UpstreamMessage {
    const properties = this.#options.route(reading.address, reading.topic)?.properties;
    return {
      id: reading.id, topic: reading.topic, payload: reading.payload, receivedAt: reading.receivedAt, priority: reading.priority,
      ...(reading.expiresAt === undefined ? {} : { ttlMs: reading.expiresAt - this.#now() }),
      ...(properties === undefined ? {} : { properties }),
    };
  }

  /**
   * Accepted outcomes arrive in bursts (one disposition frame settles many deliveries); they go to
   * the spool as one ack at the end of the burst, a microtask later. A disconnect is a later event,
   * and flushes them first (#disconnected).
   */
  #ack(seq: number): void {
    this.#acks.push(seq);
    if (this.#acks.length === 1) queueMicrotask(this.#flushAcks);
  }

  readonly #flushAcks = (): void => {
    if (this.#acks.length === 0) return;
    const seqs = this.#acks;
    this.#acks = [];
    this.#options.spool.ack(seqs).catch((err: unknown) =>
      this.#log.error({ err, readings: seqs.length }, 'could not record accepted readings in the spool; they will be sent again'));
  };

  /** The broker did not take `reading`: its address waits (holds.ts); said once per run of waits. */
  #hold(reading: SpooledReading, outcome: Outcome): void {
    const waitMs = this.#holds.released(reading.address, reading.seq);
    if (waitMs === undefined) return;
    const attempts = this.#holds.attempts(reading.address);
    const fields = { address: reading.address, id: reading.id, outcome: outcome.kind, waitMs, attempts };
    if (attempts === 1) {
      this.#log.warn(fields, 'upstream did not take a reading (released or modified; e.g. nothing routes it): its address waits before sending again');
    } else {
      this.#log.debug(fields, 'upstream did not take a reading again; its address waits longer');
    }
  }

  #settle(reading: SpooledReading, epoch: number, outcome: Outcome): void {
    const { spool } = this.#options;
    this.#outcomes[outcome.kind] += 1;
    if (outcome.kind === 'released' || outcome.kind === 'modified') this.#released.add(reading.address);
    if (epoch !== this.#epoch) {
      this.#log.debug({ address: reading.address, id: reading.id, outcome: outcome.kind },
        'outcome from a connection that is gone: the reading was returned to the queue at the disconnect');
      return;
    }
    let done: Promise<void>;
    switch (outcome.kind) {
      case 'accepted':
        this.#forwarded.add(reading.address);
        this.#holds.settled(reading.address, reading.seq);
        this.#ack(reading.seq);
        return;
      case 'lost':
        done = spool.release([reading.seq]);
        break;
      case 'released':
        done = spool.release([reading.seq]);
        this.#hold(reading, outcome);
        break;
      case 'modified':
        done = outcome.deliveryFailed ? spool.modify([reading.seq]) : spool.release([reading.seq]);
        this.#hold(reading, outcome);
        break;
      case 'rejected':
        this.#holds.settled(reading.address, reading.seq);
        this.#log.warn({ address: reading.address, id: reading.id, topic: reading.topic, condition: outcome.condition, description: outcome.description },
          'upstream rejected a reading: moved to the dead-letter store');
        done = spool.reject([reading.seq], { condition: outcome.condition, ...(outcome.description ? { description: outcome.description } : {}) });
        break;
    }
    done.catch((err: unknown) => this.#log.error({ err, id: reading.id, outcome: outcome.kind }, 'could not record an outcome in the spool; the reading will be sent again'));
  }
}
