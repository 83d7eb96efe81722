/**
 * One sender link to one target address, on its own session. It survives reconnects: after each
 * connection it is attached again, and every message still waiting for an outcome when the link or
 * connection goes away is reported `lost` (rhea drops them silently, see FACTS.md). It ends for
 * good only by `close()`, which SenderLinks (links.ts) calls when the link is idle.
 *
 * Credit. rhea lowers `sender.credit` only when it writes a transfer, a tick after `send()`, and
 * `sendable()` also counts its session buffer; a loop on `sendable()` queues far beyond credit.
 * So the credit offered here is the link credit minus the transfers handed to rhea and not yet
 * written, which are exactly the session's pending deliveries (this link has the session alone),
 * and never more than the free places in the session's buffer.
 *
 * Session window. A receiver also limits the transfers of a whole session (its incoming window);
 * RabbitMQ 4 sets it to 0 during a memory or disk alarm while the links keep their credit. rhea
 * honours it by holding transfers in its buffer (Outgoing.process stops at `transfer_window()`),
 * but `sendable()` ignores it. Readings handed over then would sit in rhea's buffer, taken out of
 * the spool, until the alarm ends or the connection drops. So the credit offered is also no more
 * than the window left, less what waits unwritten. A window that opens comes as a flow for the
 * session alone, on which rhea raises no event: the session's flow handler is wrapped to notify.
 *
 * Size. A receiver may state in its attach the largest message it takes (max_message_size;
 * RabbitMQ 4: 16 MiB by default). A larger message is never sent: it is reported `rejected` with
 * amqp:link:message-size-exceeded, so the forwarder dead-letters it with that reason. (Sent, it
 * would end the session, lose every delivery in flight, and come back for ever.) A message larger
 * than the connection's max_frame_size is no problem: rhea splits it into several transfer frames.
 *
 * Drain. A receiver may ask for its credit back (flow with drain=true): rhea raises
 * `sender_draining`, the forwarder sends what the spool has, and when it has nothing more it calls
 * idle(); only then, and only once every transfer handed to rhea is written, is the rest of the
 * credit given up (rhea's set_drained, which advances the delivery count in the next flow).
 */
import { performance } from 'node:perf_hooks';
import rhea, { type Connection, type Delivery, type EventContext, type Sender, type Session } from 'rhea';
import type { Logger } from '../../core/logger.js';
import type { Outcome, UpstreamLink, UpstreamMessage } from '../interface.js';
import { translateAmqpError, type UpstreamError } from './errors.js';
import { guarded } from './guard.js';
import { toAmqpMessage } from './message.js';

/** rhea internals of a session's outgoing side that the credit rule reads (not in rhea's typings). */
interface OutgoingWindow {
  next_delivery_id: number;
  next_pending_delivery: number;
  /** Free places in the session's buffer of unsettled deliveries (2048 in all). */
  available(): number;
  /** Transfer frames the receiver's session window still allows (0 before its first flow). */
  transfer_window(): number;
}

export type DeliveryMode = 'at-least-once' | 'at-most-once';

export interface SenderLinkOptions {
  address: string;
  mode: DeliveryMode;
  gatewayId: string;
  log: Logger;
  /** The broker refused or closed the link (or ended its session). */
  onError: (error: UpstreamError) => void;
  /** Something changed that may make the link idle: an outcome came, credit or the window moved. */
  onChange?: () => void;
  /**
   * The broker took the link, once per attach: it settled a message sent on it, or the caller had
   * nothing to send while the link had credit. (An attach answered is not enough: RabbitMQ 3.10
   * answers one to a missing queue and ends the session at the first transfer.)
   */
  onTaken?: () => void;
}

export class AmqpSenderLink implements UpstreamLink {
  readonly address: string;
  readonly mode: DeliveryMode;
  readonly #gatewayId: string;
  readonly #log: Logger;
  readonly #onError: (error: UpstreamError) => void;
  readonly #onChange: () => void;
  readonly #onTaken: () => void;
  #sender: Sender | undefined;
  #session: Session | undefined;
  readonly #unsettled = new Map<Delivery, (outcome: Outcome) => void>();
  readonly #listeners = new Set<() => void>();
  #closed = false;
  #lastUsed = performance.now();
  /** Since the last attach: the caller sent on the link, or said it has nothing to send (idle()). */
  #served = false;
  /** The broker refused or closed the link, and it has not been attached since. */
  #refused = false;
  /** onTaken was called since the last attach. */
  #taken = false;

  constructor(options: SenderLinkOptions) {
    this.address = options.address;
    this.mode = options.mode;
    this.#gatewayId = options.gatewayId;
    this.#log = options.log;
    this.#onError = options.onError;
    this.#onChange = options.onChange ?? (() => {});
    this.#onTaken = options.onTaken ?? (() => {});
  }

  /** See UpstreamLink.closed. */
  get closed(): boolean {
    return this.#closed;
  }

  get attached(): boolean {
    return this.#sender !== undefined;
  }

  /** Messages sent and not yet settled by the broker. */
  get unsettled(): number {
    return this.#unsettled.size;
  }

  /** Nothing unsettled and nothing waiting in rhea's buffer: closing the link now loses nothing. */
  get quiet(): boolean {
    return this.#unsettled.size === 0 && (this.#sender === undefined || this.#unwritten(this.#sender) === 0);
  }

  /** When a message was last sent or settled, or the link attached (performance.now(), monotonic). */
  get lastUsed(): number {
    return this.#lastUsed;
  }

  /**
   * The caller has had its turn since the link was attached: it sent on it, or said it has
   * nothing to send. A link just attached, whose caller is still fetching what to send, has not.
   */
  get served(): boolean {
    return this.#served;
  }

  /** The broker refused or closed the link; it is attached again a while later (AmqpUpstream). */
  get refused(): boolean {
    return this.#refused;
  }

  attach(connection: Connection): void {
    if (this.#closed) return;
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
    this.#session = session;
    this.#lastUsed = performance.now();
    this.#served = false;
    this.#taken = false;
    this.#watchSessionFlow(session);
    const wake = (): void => this.#notify();
    sender.on('sendable', wake);
    sender.on('sender_open', () => {
      // A broker that refuses the link answers the attach without a target, then detaches it.
      if (!isNullTerminus((sender as unknown as { target?: unknown }).target)) this.#refused = false;
      wake();
    });
    sender.on('sender_flow', wake);
    sender.on('sender_draining', wake);
    sender.on('accepted', (ctx: EventContext) => this.#settle(ctx, { kind: 'accepted' }));
    sender.on('released', (ctx: EventContext) => this.#settle(ctx, { kind: 'released' }));
    sender.on('modified', (ctx: EventContext) => {
      // undeliverable_here ("not to this link again") is not passed on: an address has one link,
      // and the reading can go nowhere else; the forwarder's holds keep it from spinning.
      const state = (ctx.delivery?.remote_state ?? {}) as { delivery_failed?: boolean };
      this.#settle(ctx, { kind: 'modified', deliveryFailed: state.delivery_failed === true });
    });
    sender.on('rejected', (ctx: EventContext) => {
      const error = ((ctx.delivery?.remote_state ?? {}) as { error?: { condition?: string; description?: string } }).error;
      this.#settle(ctx, { kind: 'rejected', condition: error?.condition ?? 'amqp:rejected', ...(error?.description ? { description: error.description } : {}) });
    });
    const closedByBroker = (error: unknown, fallback: string): void => {
      if (this.#sender !== sender) return;
      const translated = translateAmqpError(error ?? { condition: 'amqp:link:detach-forced', description: fallback },
        `sender link to ${this.address}`);
      // At debug: what the address waits for is logged once by the upstream (refusals.ts).
      this.#log.debug({ address: this.address, condition: translated.condition, code: translated.code, err: translated.message },
        'upstream closed the sender link');
      this.#refused = true;
      this.detach();
      this.#onError(translated);
    };
    sender.on('sender_error', (ctx: EventContext) => closedByBroker(ctx.sender?.error, 'link closed by the broker'));
    sender.on('sender_close', (ctx: EventContext) => closedByBroker(ctx.sender?.error, 'link closed by the broker'));
    // RabbitMQ 3.10 refuses an attach by ending the session, not the link.
    session.on('session_error', (ctx: EventContext) => closedByBroker(ctx.session?.error, 'session ended by the broker'));
    session.on('session_close', (ctx: EventContext) => closedByBroker(ctx.session?.error, 'session ended by the broker'));
  }

  /** The link or its connection is gone: everything unsettled is lost (to be sent again). */
  detach(): void {
    this.#release();
    const lost = [...this.#unsettled.values()];
    this.#unsettled.clear();
    for (const report of lost) guarded(this.#log, { address: this.address }, () => report({ kind: 'lost' }));
  }

  /**
   * Ends the link for good (detach, then end its session); only when `quiet`, so nothing can be
   * lost or reported twice. `ended` is called once the broker ended the session too, or at once
   * when there is no session to end; a connection lost meanwhile is the caller's to notice.
   */
  close(ended: () => void): void {
    if (!this.quiet) throw new Error(`uplink bug: closing the link to ${this.address} with deliveries outstanding`);
    this.#closed = true;
    // The callers hear of the close once (interface.ts): one with readings waiting asks for a new
    // link. Later, so that they never run inside the link pool's own bookkeeping (links.ts).
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    queueMicrotask(() => {
      for (const listener of listeners) guarded(this.#log, { address: this.address }, listener);
    });
    const session = this.#session;
    const open = session?.is_open() === true;
    this.#release();
    if (session === undefined || !open) {
      ended();
      return;
    }
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      ended();
    };
    session.once('session_close', end);
    session.once('session_error', end);
  }

  credit(): number {
    const sender = this.#sender;
    if (this.#closed || sender === undefined || !sender.is_open()) return 0;
    const outgoing = outgoingOf(sender);
    const unwritten = this.#unwritten(sender);
    // rhea internal: Sender.credit, lowered only as transfers are written.
    const linkCredit = (sender as unknown as { credit: number }).credit;
    // Counted in transfers: a message larger than the broker's frame size takes several frames of
    // the window, which rhea then sends as the window allows (it never exceeds it).
    const window = outgoing.transfer_window();
    const sessionWindow = Number.isFinite(window) ? window : 0;
    // RabbitMQ grants far more credit than rhea's buffer holds; lease only what can be handed over.
    return Math.max(0, Math.min(linkCredit - unwritten, sessionWindow - unwritten, outgoing.available()));
  }

  send(message: UpstreamMessage, onOutcome: (outcome: Outcome) => void): void {
    const sender = this.#sender;
    if (sender === undefined || this.credit() <= 0) {
      throw new Error(`uplink bug: send to ${this.address} without credit`);
    }
    const encoded = rhea.message.encode(toAmqpMessage(message, this.#gatewayId) as never);
    const limit = maxMessageSize(sender);
    if (limit !== undefined && encoded.length > limit) {
      // Never sent: a broker ends the link or its session for it (RabbitMQ 4:
      // amqp:link:message-size-exceeded), taking every reading in flight with it, and the reading
      // would be sent again for ever. Reported after send returns, as a broker's outcome would be.
      const outcome: Outcome = { kind: 'rejected', condition: 'amqp:link:message-size-exceeded',
        description: `${encoded.length} bytes encoded; the broker takes at most ${limit} (max_message_size of its attach)` };
      this.#log.warn({ address: this.address, id: message.id, bytes: encoded.length, maxMessageSize: limit },
        'upstream: a reading larger than the broker takes was not sent');
      queueMicrotask(() => guarded(this.#log, { address: this.address, outcome: outcome.kind }, () => onOutcome(outcome)));
      return;
    }
    // Format 0: the bytes are the encoded message (rhea would encode it again otherwise).
    const delivery = sender.send(encoded as never, undefined, 0);
    this.#lastUsed = performance.now();
    this.#served = true;
    if (this.mode === 'at-most-once') guarded(this.#log, { address: this.address }, () => onOutcome({ kind: 'accepted' }));
    else this.#unsettled.set(delivery, onOutcome);
  }

  idle(): void {
    const sender = this.#sender;
    if (sender === undefined || !sender.is_open()) return;
    this.#served = true;
    // rhea internals: _draining (a drain was asked for) and Connection._register (schedules a write).
    const internals = sender as unknown as { _draining?: boolean; connection: { _register?: () => void } };
    if (this.credit() > 0) this.#took();
    if (internals._draining !== true || this.#unwritten(sender) > 0) return;
    sender.set_drained(true);
    // set_drained only marks the flow as due; a drain that nothing else wakes must still be answered.
    internals.connection._register?.();
  }

  onCredit(listener: () => void): () => void {
    if (this.#closed) return () => {};
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops listening to the current link and session, and ends the session (ours alone) if still open. */
  #release(): void {
    const sender = this.#sender;
    const session = this.#session;
    this.#sender = undefined;
    this.#session = undefined;
    if (sender === undefined || session === undefined) return;
    sender.removeAllListeners();
    session.removeAllListeners();
    // Late events of an abandoned link or session must not reach the container as errors.
    for (const event of ['sender_error', 'sender_close'] as const) sender.on(event, () => {});
    for (const event of ['session_error', 'session_close'] as const) session.on(event, () => {});
    // Ended by the broker already, or the connection is gone or closing (a detach or end after
    // the broker's close is a protocol error): rhea cleans up by itself.
    if (!session.is_open() || !session.connection.is_open()) return;
    // The link is detached first (also when the broker detached it: rhea would answer on the next
    // tick, after the end of the session, which is a protocol error).
    sender.close();
    session.close();
  }

  /**
   * rhea raises no event for a flow frame that only moves the session window (no link handle), so
   * its handler (rhea internal: Session.on_flow, called by the connection for every flow frame) is
   * wrapped: once rhea has taken the new window in, the listeners hear of it.
   */
  #watchSessionFlow(session: Session): void {
    const internals = session as unknown as { on_flow(frame: { performative?: { handle?: unknown } }): void };
    const onFlow = internals.on_flow.bind(session);
    internals.on_flow = (frame) => {
      onFlow(frame);
      // A flow for the link also raises sender_flow, which notifies.
      if (this.#session === session && (frame.performative?.handle === undefined || frame.performative.handle === null)) this.#notify();
    };
  }

  /** Transfers handed to rhea and not yet written: the session's pending deliveries (this link has it alone). */
  #unwritten(sender: Sender): number {
    const outgoing = outgoingOf(sender);
    return outgoing.next_delivery_id - outgoing.next_pending_delivery;
  }

  #settle(ctx: EventContext, outcome: Outcome): void {
    const delivery = ctx.delivery;
    if (delivery === undefined) return;
    const report = this.#unsettled.get(delivery);
    if (report === undefined) return;
    this.#unsettled.delete(delivery);
    this.#lastUsed = performance.now();
    this.#took();
    guarded(this.#log, { address: this.address, outcome: outcome.kind }, () => report(outcome));
    // A settled delivery frees room in rhea's session buffer: more may be sent now, flow or not.
    this.#notify();
  }

  #took(): void {
    if (this.#taken) return;
    this.#taken = true;
    guarded(this.#log, { address: this.address }, this.#onTaken);
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) {
      // A listener may have closed the link (through the upstream): the others are not called then.
      if (this.#closed) return;
      guarded(this.#log, { address: this.address }, listener);
    }
    if (!this.#closed) this.#onChange();
  }
}

/** A terminus the broker answered as null (rhea decodes it as undefined, or as a described null). */
function isNullTerminus(terminus: unknown): boolean {
  if (terminus === undefined || terminus === null) return true;
  const typed = terminus as { type?: unknown; value?: unknown };
  return typed.type !== undefined && typed.value === null;
}

/**
 * The largest message the receiver takes, from its attach (rhea's remote-attach alias); none when
 * it states none (0 or absent) or one too large for a JavaScript number (rhea gives a Buffer then).
 */
function maxMessageSize(sender: Sender): number | undefined {
  const stated = (sender as unknown as { max_message_size?: unknown }).max_message_size;
  return typeof stated === 'number' && stated > 0 ? stated : undefined;
}

/** rhea internal: the outgoing side of the link's session (Session.outgoing). */
function outgoingOf(sender: Sender): OutgoingWindow {
  return (sender.session as unknown as { outgoing: OutgoingWindow }).outgoing;
}
