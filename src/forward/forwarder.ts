/**
 * The pump from the spool to the upstream. For each address it leases only as many readings as
 * the link has credit for, so a link without credit never pulls the backlog into memory, and maps
 * each outcome back onto the spool:
 *   accepted → ack; released, lost (connection gone) → release; modified → release, or count an
 *   attempt when the broker says the delivery failed; rejected → dead-letter with the condition.
 * When the upstream disconnects, everything in flight returns to the spool in order.
 */
import type { Logger } from '../core/logger.js';
import type { Spool, SpooledReading } from '../spool/interface.js';
import type { Outcome, Upstream, UpstreamLink, UpstreamMessage } from '../upstream/interface.js';

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
}

export interface ForwardStats {
  forwarded: Record<string, number>;
  outcomes: Record<Outcome['kind'], number>;
}

export class Forwarder {
  readonly #options: ForwarderOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #linked = new Set<UpstreamLink>();
  readonly #pumping = new Set<string>();
  readonly #again = new Set<string>();
  readonly #unsubscribe: Array<() => void> = [];
  #running = false;
  /** Follows the upstream's state events: state() builds a whole object, too much for every pump. */
  #connected = false;
  #acks: number[] = [];
  readonly #stats: ForwardStats = { forwarded: {}, outcomes: { accepted: 0, released: 0, modified: 0, rejected: 0, lost: 0 } };

  constructor(options: ForwarderOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
  }

  async start(): Promise<void> {
    this.#running = true;
    const { spool, upstream } = this.#options;
    this.#unsubscribe.push(spool.onAvailable((address) => this.#pump(address)));
    this.#connected = upstream.state().connected;
    this.#unsubscribe.push(upstream.onState((state) => {
      this.#connected = state.connected;
      if (state.connected) this.#pumpAll();
      // Unsettled readings were reported lost one by one; this also catches any lease not yet sent.
      else spool.releaseAll();
    }));
    this.#pumpAll();
  }

  async stop(): Promise<void> {
    this.#running = false;
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
  }

  stats(): ForwardStats {
    return { forwarded: { ...this.#stats.forwarded }, outcomes: { ...this.#stats.outcomes } };
  }

  #pumpAll(): void {
    for (const address of this.#options.spool.addresses()) this.#pump(address);
  }

  /** Sends from the spool to `address` while its link has credit; one pump per address at a time. */
  #pump(address: string): void {
    if (!this.#running || !this.#connected) return;
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
    });
  }

  async #drain(address: string): Promise<void> {
    const link = this.#options.upstream.link(address, this.#options.route(address)?.delivery ?? 'at-least-once');
    if (!this.#linked.has(link)) {
      this.#linked.add(link);
      link.onCredit(() => this.#pump(address));
    }
    for (;;) {
      const credit = link.credit();
      if (credit <= 0 || !this.#running) return;
      const readings = await this.#options.spool.lease(address, credit);
      if (readings.length === 0) {
        // Nothing more for this address now: a receiver that asked to drain gets its credit back.
        link.idle();
        return;
      }
      for (const [i, reading] of readings.entries()) {
        if (link.credit() <= 0) {
          // The link went away while leasing: the rest goes back, in order.
          await this.#options.spool.release(readings.slice(i).map((r) => r.seq));
          return;
        }
        link.send(this.#message(reading), (outcome) => this.#settle(reading, outcome));
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
   * the spool as one ack at the end of the burst. A microtask later, so nothing can come between:
   * a disconnect (releaseAll) is a later event, not part of the frame being handled.
   */
  #ack(seq: number): void {
    this.#acks.push(seq);
    if (this.#acks.length > 1) return;
    queueMicrotask(() => {
      const seqs = this.#acks;
      this.#acks = [];
      this.#options.spool.ack(seqs).catch((err: unknown) =>
        this.#log.error({ err, readings: seqs.length }, 'could not record accepted readings in the spool; they will be sent again'));
    });
  }

  #settle(reading: SpooledReading, outcome: Outcome): void {
    const { spool } = this.#options;
    this.#stats.outcomes[outcome.kind] += 1;
    let done: Promise<void>;
    switch (outcome.kind) {
      case 'accepted':
        this.#stats.forwarded[reading.address] = (this.#stats.forwarded[reading.address] ?? 0) + 1;
        this.#ack(reading.seq);
        return;
      case 'released':
      case 'lost':
        done = spool.release([reading.seq]);
        break;
      case 'modified':
        done = outcome.deliveryFailed ? spool.modify([reading.seq]) : spool.release([reading.seq]);
        break;
      case 'rejected':
        this.#log.warn({ address: reading.address, id: reading.id, topic: reading.topic, condition: outcome.condition, description: outcome.description },
          'upstream rejected a reading: moved to the dead-letter store');
        done = spool.reject([reading.seq], { condition: outcome.condition, ...(outcome.description ? { description: outcome.description } : {}) });
        break;
    }
    done.catch((err: unknown) => this.#log.error({ err, id: reading.id, outcome: outcome.kind }, 'could not record an outcome in the spool; the reading will be sent again'));
  }
}
