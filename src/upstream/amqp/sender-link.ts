/**
 * One sender link to one target address, on its own session. It survives reconnects: after each
 * connection it is attached again, and every message still waiting for an outcome when the link or
 * connection goes away is reported `lost` (rhea drops them silently, see FACTS.md).
 *
 * Credit. rhea lowers `sender.credit` only when it writes a transfer, a tick after `send()`, and
 * `sendable()` also counts its session buffer; a loop on `sendable()` queues far beyond credit.
 * So the credit offered here is the link credit minus the transfers handed to rhea and not yet
 * written, which are exactly the session's pending deliveries (this link has the session alone),
 * and never more than the free places in the session's buffer.
 *
 * Drain. A receiver may ask for its credit back (flow with drain=true): rhea raises
 * `sender_draining`, the forwarder sends what the spool has, and when it has nothing more it calls
 * idle(); only then, and only once every transfer handed to rhea is written, is the rest of the
 * credit given up (rhea's set_drained, which advances the delivery count in the next flow).
 */
import type { Connection, Delivery, EventContext, Sender } from 'rhea';
import type { Logger } from '../../core/logger.js';
import type { Outcome, UpstreamLink, UpstreamMessage } from '../interface.js';
import { translateAmqpError, type UpstreamError } from './errors.js';
import { toAmqpMessage } from './message.js';

/** The parts of rhea's session internals the credit rule reads (not in rhea's typings). */
interface OutgoingWindow {
  next_delivery_id: number;
  next_pending_delivery: number;
  /** Free places in the session's buffer of unsettled deliveries (2048 in all). */
  available(): number;
}

export type DeliveryMode = 'at-least-once' | 'at-most-once';

export class AmqpSenderLink implements UpstreamLink {
  readonly address: string;
  readonly mode: DeliveryMode;
  readonly #gatewayId: string;
  readonly #log: Logger;
  readonly #onError: (error: UpstreamError) => void;
  #sender: Sender | undefined;
  readonly #unsettled = new Map<Delivery, (outcome: Outcome) => void>();
  readonly #listeners = new Set<() => void>();
  #sent = 0;

  constructor(options: { address: string; mode: DeliveryMode; gatewayId: string; log: Logger; onError: (error: UpstreamError) => void }) {
    this.address = options.address;
    this.mode = options.mode;
    this.#gatewayId = options.gatewayId;
    this.#log = options.log;
    this.#onError = options.onError;
  }

  /** See UpstreamLink.closed. */
  get closed(): boolean {
    return false;
  }

  get attached(): boolean {
    return this.#sender !== undefined;
  }

  /** Messages sent and not yet settled by the broker. */
  get unsettled(): number {
    return this.#unsettled.size;
  }

  get sent(): number {
    return this.#sent;
  }

  attach(connection: Connection): void {
    const session = connection.create_session();
    session.begin();
    const sender = session.open_sender({
      name: `uplink:${this.address}`,
      // durable: 2 = the broker keeps the terminus (RabbitMQ declares a durable queue).
      target: { address: this.address, durable: 2 },
      snd_settle_mode: this.mode === 'at-most-once' ? 1 : 0,
      autosettle: true,
      // Our own outcome mapping needs `modified` as itself, not as `released`.
      treat_modified_as_released: false,
    } as Parameters<Connection['open_sender']>[0]);
    this.#sender = sender;
    const wake = (): void => this.#notify();
    sender.on('sendable', wake);
    sender.on('sender_open', wake);
    sender.on('sender_flow', wake);
    sender.on('sender_draining', wake);
    sender.on('accepted', (ctx: EventContext) => this.#settle(ctx, { kind: 'accepted' }));
    sender.on('released', (ctx: EventContext) => this.#settle(ctx, { kind: 'released' }));
    sender.on('modified', (ctx: EventContext) => {
      const state = (ctx.delivery?.remote_state ?? {}) as { delivery_failed?: boolean; undeliverable_here?: boolean };
      this.#settle(ctx, { kind: 'modified', deliveryFailed: state.delivery_failed === true, undeliverableHere: state.undeliverable_here === true });
    });
    sender.on('rejected', (ctx: EventContext) => {
      const error = ((ctx.delivery?.remote_state ?? {}) as { error?: { condition?: string; description?: string } }).error;
      this.#settle(ctx, { kind: 'rejected', condition: error?.condition ?? 'amqp:rejected', ...(error?.description ? { description: error.description } : {}) });
    });
    const detached = (ctx: EventContext): void => {
      const error = ctx.sender?.error;
      const translated = translateAmqpError(error ?? { condition: 'amqp:link:detach-forced', description: 'link closed by the broker' },
        `sender link to ${this.address}`);
      this.#log.error({ address: this.address, condition: translated.condition, code: translated.code, err: translated.message },
        'upstream closed the sender link');
      this.#onError(translated);
      this.detach();
    };
    sender.on('sender_error', detached);
    sender.on('sender_close', (ctx: EventContext) => {
      if (this.#sender === ctx.sender) detached(ctx);
    });
  }

  /** The link or its connection is gone: everything unsettled is lost (to be sent again). */
  detach(): void {
    const sender = this.#sender;
    this.#sender = undefined;
    if (sender !== undefined) {
      sender.removeAllListeners();
      // Keep a late error from an already abandoned link from crashing the process.
      sender.on('sender_error', () => {});
    }
    const lost = [...this.#unsettled.values()];
    this.#unsettled.clear();
    for (const report of lost) report({ kind: 'lost' });
  }

  credit(): number {
    const sender = this.#sender;
    if (sender === undefined || !sender.is_open()) return 0;
    const outgoing = (sender.session as unknown as { outgoing: OutgoingWindow }).outgoing;
    const unwritten = this.#unwritten(sender);
    // RabbitMQ grants far more credit than rhea's buffer holds; lease only what can be handed over.
    return Math.max(0, Math.min((sender as unknown as { credit: number }).credit - unwritten, outgoing.available()));
  }

  send(message: UpstreamMessage, onOutcome: (outcome: Outcome) => void): void {
    const sender = this.#sender;
    if (sender === undefined || this.credit() <= 0) {
      throw new Error(`uplink bug: send to ${this.address} without credit`);
    }
    const delivery = sender.send(toAmqpMessage(message, this.#gatewayId) as never);
    this.#sent += 1;
    if (this.mode === 'at-most-once') onOutcome({ kind: 'accepted' });
    else this.#unsettled.set(delivery, onOutcome);
  }

  idle(): void {
    const sender = this.#sender;
    if (sender === undefined || !sender.is_open()) return;
    const internals = sender as unknown as { _draining?: boolean; connection: { _register?: () => void } };
    if (internals._draining !== true || this.#unwritten(sender) > 0) return;
    sender.set_drained(true);
    // set_drained only marks the flow as due; a drain that nothing else wakes must still be answered.
    internals.connection._register?.();
  }

  onCredit(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Transfers handed to rhea and not yet written: the session's pending deliveries (this link has it alone). */
  #unwritten(sender: Sender): number {
    const outgoing = (sender.session as unknown as { outgoing: OutgoingWindow }).outgoing;
    return outgoing.next_delivery_id - outgoing.next_pending_delivery;
  }

  #settle(ctx: EventContext, outcome: Outcome): void {
    const delivery = ctx.delivery;
    if (delivery === undefined) return;
    const report = this.#unsettled.get(delivery);
    if (report === undefined) return;
    this.#unsettled.delete(delivery);
    report(outcome);
    // A settled delivery frees room in rhea's session buffer: more may be sent now, flow or not.
    this.#notify();
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }
}
