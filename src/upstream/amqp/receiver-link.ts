/**
 * One receiver link from one source address, on its own session: the downlink (commands from the
 * upstream). It survives reconnects like the sender links: after each connection it is attached
 * again.
 *
 * Credit. rhea's `credit_window` tops the credit up when a message *arrives*, so a consumer that is
 * slow to settle would pile up unsettled deliveries without bound. Here rhea's window is off: the
 * window is granted once per attach and one credit is given back per settled delivery, so the
 * broker never has more than `credit` deliveries outstanding with us. Deliveries of a link that
 * went away (a reconnect) may still be in the consumer's hands: the broker sends them again on
 * the new link, so the new link is granted `credit` minus those, and gets one credit more as each
 * of them is finished (it can no longer be settled). The broker's credit, the deliveries of this
 * link not settled yet and those held over from earlier links always add up to `credit`.
 *
 * Sessions. RabbitMQ 3.10 refuses an attach (an unknown queue or exchange, a bad address) by
 * ending the session, not the link; other brokers detach the link and keep the session. Either
 * way the link is given up, the error kept in `lastError`, and its session ended, so that
 * attaching again (AmqpUpstream retries with growing waits from linkRetryMs) never leaves a session behind.
 *
 * Settling. rhea merges the dispositions written in one tick into ranges, and it merges the first
 * two whatever their outcomes (FACTS.md): an accept followed by a reject in the same tick would
 * both be sent as accepted. So settlements are queued and written one a tick.
 */
import type { Connection, Delivery, EventContext, Message, Receiver, Session } from 'rhea';
import type { Logger } from '../../core/logger.js';
import type { DownlinkDelivery, DownlinkMessage, DownlinkOutcome, ReceiverError, UpstreamReceiver, UpstreamReceiverOptions } from '../downlink.js';
import type { AmqpId } from '../interface.js';
import { translateAmqpError, type UpstreamError } from './errors.js';
import { guarded } from './guard.js';

let linkCounter = 0;

interface Link {
  session: Session;
  receiver: Receiver;
  generation: number;
}

/** A delivery handed to the consumer. */
interface Held {
  generation: number;
  settled: boolean;
  /** Its link went away before it was settled: it keeps one credit of the window until settled. */
  orphan: boolean;
}

export class AmqpReceiverLink implements UpstreamReceiver {
  readonly address: string;
  readonly #credit: number;
  readonly #onDelivery: (delivery: DownlinkDelivery) => void;
  readonly #onChange: () => void;
  readonly #log: Logger;
  readonly #onError: (error: UpstreamError) => void;
  readonly #onAttached: () => void;
  readonly #onClose: () => void;
  /** Link names must be unique per connection; two nodes may read the same address. */
  readonly #name = `uplink:in:${++linkCounter}`;
  #link: Link | undefined;
  #attached = false;
  #lastError: ReceiverError | undefined;
  /** Bumped on every attach and detach: a settlement of an older link is void. */
  #generation = 0;
  /** Deliveries of the current link whose `settle` has not been called. */
  readonly #inHand = new Set<Held>();
  /** Deliveries of earlier links whose `settle` has not been called. */
  #orphans = 0;
  #closed = false;
  readonly #queue: Array<() => void> = [];
  #draining: NodeJS.Immediate | undefined;
  readonly #flushed: Array<() => void> = [];

  constructor(options: UpstreamReceiverOptions & { log: Logger; onError: (error: UpstreamError) => void; onAttached?: () => void; onClose: () => void }) {
    if (!Number.isInteger(options.credit) || options.credit < 1) throw new RangeError(`receiver credit must be a whole number from 1, not ${options.credit}`);
    this.address = options.address;
    this.#credit = options.credit;
    this.#onDelivery = options.onDelivery;
    const onChange = options.onChange;
    // Called from rhea's handlers (attach, detach): a throw must not cost the connection.
    this.#onChange = onChange === undefined ? () => {} : () => guarded(options.log, { address: options.address }, onChange);
    this.#log = options.log;
    this.#onError = options.onError;
    this.#onAttached = options.onAttached ?? (() => {});
    this.#onClose = options.onClose;
  }

  get attached(): boolean {
    return this.#attached;
  }

  get lastError(): ReceiverError | undefined {
    return this.#lastError;
  }

  /** A link exists (attached, or waiting for the broker to answer the attach). */
  get linked(): boolean {
    return this.#link !== undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  unsettled(): number {
    return this.#inHand.size + this.#orphans;
  }

  /** The credit granted to a new link: the window less what the consumer still holds. */
  get #grant(): number {
    return Math.max(0, this.#credit - this.#orphans);
  }

  attach(connection: Connection): void {
    if (this.#closed) return;
    if (this.#link !== undefined) {
      if (this.#link.session.connection === connection) return;
      this.detach();
    }
    const session = connection.create_session();
    session.begin();
    const receiver = session.open_receiver({
      name: this.#name,
      // durable: 2 = the broker keeps the terminus (RabbitMQ declares a durable queue).
      source: { address: this.address, durable: 2 },
      credit_window: 0,
      autoaccept: false,
    } as Parameters<Connection['open_receiver']>[0]);
    this.#generation += 1;
    const link: Link = { session, receiver, generation: this.#generation };
    this.#link = link;
    if (this.#grant > 0) receiver.add_credit(this.#grant);
    receiver.on('receiver_open', () => {
      // A broker that refuses the link answers the attach without a source, then detaches it.
      if (this.#link !== link || isNullTerminus((receiver as { source?: unknown }).source)) return;
      this.#attached = true;
      this.#lastError = undefined;
      this.#onAttached();
      this.#onChange();
    });
    receiver.on('message', (ctx: EventContext) => {
      if (this.#link !== link || ctx.message === undefined || ctx.delivery === undefined) return;
      this.#deliver(ctx.message, ctx.delivery, link.generation);
    });
    const failed = (error: unknown, fallback: string): void => {
      if (this.#link !== link) return;
      const translated = translateAmqpError(error ?? { condition: 'amqp:link:detach-forced', description: fallback },
        `receiver link from ${this.address}`);
      this.#log.error({ address: this.address, condition: translated.condition, code: translated.code, err: translated.message },
        'upstream refused or closed the receiver link');
      this.#lastError = { code: translated.code, message: translated.message, ...(translated.condition ? { condition: translated.condition } : {}), at: Date.now() };
      this.detach();
      this.#onError(translated);
      this.#onChange();
    };
    receiver.on('receiver_error', (ctx: EventContext) => failed(ctx.receiver?.error, 'the broker closed the link'));
    receiver.on('receiver_close', (ctx: EventContext) => failed(ctx.receiver?.error, 'the broker closed the link'));
    session.on('session_error', (ctx: EventContext) => failed(ctx.session?.error, 'the broker ended the session'));
    session.on('session_close', (ctx: EventContext) => failed(ctx.session?.error, 'the broker ended the session'));
  }

  /** The link or its connection is gone: its unsettled deliveries are the broker's again. */
  detach(): void {
    const link = this.#link;
    this.#link = undefined;
    const wasAttached = this.#attached;
    this.#attached = false;
    this.#generation += 1;
    for (const held of this.#inHand) held.orphan = true;
    this.#orphans += this.#inHand.size;
    this.#inHand.clear();
    this.#queue.length = 0;
    this.#wakeFlushed();
    if (link !== undefined) this.#release(link);
    if (wasAttached) this.#onChange();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    this.detach();
    this.#onClose();
  }

  /** Resolves once the outcomes passed to `settle` so far are written (or the link is gone). */
  flush(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#flushed.push(resolve));
  }

  /** Stops listening to a link given up, and ends its session (ours alone) if still open. */
  #release(link: Link): void {
    const { session, receiver } = link;
    receiver.removeAllListeners();
    session.removeAllListeners();
    // Late events of an abandoned link or session must not reach the container as errors.
    for (const event of ['receiver_error', 'receiver_close'] as const) receiver.on(event, () => {});
    for (const event of ['session_error', 'session_close'] as const) session.on(event, () => {});
    // Ended by the broker already, or the connection is gone or closing (a detach or end after
    // the broker's close is a protocol error): rhea cleans up by itself.
    if (!session.is_open() || !session.connection.is_open()) return;
    // The link is detached first (also when the broker detached it: rhea would answer on the
    // next tick, after the end of the session, which is a protocol error).
    receiver.close();
    session.close();
  }

  #wakeFlushed(): void {
    for (const wake of this.#flushed.splice(0)) wake();
  }

  #deliver(message: Message, delivery: Delivery, generation: number): void {
    const held: Held = { generation, settled: false, orphan: false };
    this.#inHand.add(held);
    const downlink: DownlinkDelivery = {
      address: this.address,
      message: toDownlinkMessage(message),
      settle: (outcome) => this.#settle(held, delivery, outcome),
    };
    try {
      this.#onDelivery(downlink);
    } catch (err) {
      // A throwing consumer must not break the link; the delivery goes back to the broker.
      this.#log.error({ address: this.address, err }, 'downlink consumer failed; releasing the delivery');
      downlink.settle({ kind: 'release' });
    }
  }

  #settle(held: Held, delivery: Delivery, outcome: DownlinkOutcome): boolean {
    if (held.settled) return false;
    held.settled = true;
    if (held.orphan) {
      // Its link is gone (the broker has it again), but its place in the window is free now.
      this.#orphans -= 1;
      this.#link?.receiver.add_credit(1);
      return false;
    }
    if (held.generation !== this.#generation) return false;
    this.#inHand.delete(held);
    this.#enqueue(() => {
      if (held.generation !== this.#generation) return;
      writeOutcome(delivery, outcome);
      this.#link?.receiver.add_credit(1);
    });
    return true;
  }

  #enqueue(write: () => void): void {
    this.#queue.push(write);
    if (this.#draining === undefined) this.#draining = setImmediate(() => this.#drain());
  }

  #drain(): void {
    this.#draining = undefined;
    this.#queue.shift()?.();
    if (this.#queue.length > 0) this.#draining = setImmediate(() => this.#drain());
    // rhea writes the disposition on the next tick, before any close that follows a flush.
    else this.#wakeFlushed();
  }
}

/** No terminus: absent, or AMQP null (rhea hands a described null over as a Typed with value null). */
function isNullTerminus(terminus: unknown): boolean {
  if (terminus === undefined || terminus === null) return true;
  const typed = terminus as { type?: unknown; value?: unknown };
  return typed.type !== undefined && typed.value === null;
}

function writeOutcome(delivery: Delivery, outcome: DownlinkOutcome): void {
  switch (outcome.kind) {
    case 'accept':
      delivery.accept();
      break;
    case 'release':
      delivery.release();
      break;
    case 'reject':
      delivery.reject({ condition: outcome.condition ?? 'amqp:internal-error', ...(outcome.description === undefined ? {} : { description: outcome.description }) });
      break;
  }
}

/** rhea's message, in our terms. */
export function toDownlinkMessage(message: Message): DownlinkMessage {
  const m = message as Message & { delivery_count?: number; first_acquirer?: boolean };
  const deliveryCount = typeof m.delivery_count === 'number' ? m.delivery_count : 0;
  const result: DownlinkMessage = {
    body: bodyOf(m.body),
    properties: { ...(m.application_properties ?? {}) },
    deliveryCount,
    // RabbitMQ 3.10 marks a redelivery with first-acquirer false and leaves the count at 0.
    redelivered: deliveryCount > 0 || m.first_acquirer === false,
  };
  const id = idText(m.message_id);
  if (id !== undefined) result.id = id;
  const idValue = idAsIs(m.message_id);
  if (idValue !== undefined) result.idValue = idValue;
  if (typeof m.subject === 'string') result.subject = m.subject;
  if (typeof m.content_type === 'string') result.contentType = m.content_type;
  const correlationId = idText(m.correlation_id);
  if (correlationId !== undefined) result.correlationId = correlationId;
  const correlationIdValue = idAsIs(m.correlation_id);
  if (correlationIdValue !== undefined) result.correlationIdValue = correlationIdValue;
  if (typeof m.reply_to === 'string') result.replyTo = m.reply_to;
  const created = m.creation_time as unknown;
  if (created instanceof Date) result.creationTime = created.getTime();
  else if (typeof created === 'number') result.creationTime = created;
  return result;
}

function bodyOf(body: unknown): unknown {
  // A data section arrives either as the bytes or as a section object, depending on the sender.
  const section = body as { typecode?: number; content?: unknown } | undefined;
  if (section !== null && typeof section === 'object' && section.typecode === 0x75 && Buffer.isBuffer(section.content)) return section.content;
  return body;
}

function idAsIs(id: unknown): AmqpId | undefined {
  return typeof id === 'string' || typeof id === 'number' || Buffer.isBuffer(id) ? id : undefined;
}

function idText(id: unknown): string | undefined {
  if (id === undefined || id === null) return undefined;
  if (Buffer.isBuffer(id)) return id.toString('hex');
  return String(id);
}
