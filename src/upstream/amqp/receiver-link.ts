/**
 * One receiver link from one source address, on its own session: the downlink (commands from the
 * upstream). It survives reconnects like the sender links: after each connection it is attached
 * again with a fresh credit window.
 *
 * Credit. rhea's `credit_window` tops the credit up when a message *arrives*, so a consumer that is
 * slow to settle would pile up unsettled deliveries without bound. Here rhea's window is off: the
 * window is granted once per attach and one credit is given back per settled delivery, so the
 * broker never has more than `credit` deliveries outstanding with us.
 *
 * Settling. rhea merges the dispositions written in one tick into ranges, and it merges the first
 * two whatever their outcomes (FACTS.md): an accept followed by a reject in the same tick would
 * both be sent as accepted. So settlements are queued and written one a tick.
 */
import type { Connection, Delivery, EventContext, Message, Receiver } from 'rhea';
import type { Logger } from '../../core/logger.js';
import type { DownlinkDelivery, DownlinkMessage, DownlinkOutcome, UpstreamReceiver, UpstreamReceiverOptions } from '../interface.js';
import { translateAmqpError, type UpstreamError } from './errors.js';

let linkCounter = 0;

export class AmqpReceiverLink implements UpstreamReceiver {
  readonly address: string;
  readonly #credit: number;
  readonly #onDelivery: (delivery: DownlinkDelivery) => void;
  readonly #log: Logger;
  readonly #onError: (error: UpstreamError) => void;
  readonly #onClose: () => void;
  /** Link names must be unique per connection; two nodes may read the same address. */
  readonly #name = `uplink:in:${++linkCounter}`;
  #receiver: Receiver | undefined;
  /** Bumped on every attach and detach: a settlement of an older link is void. */
  #generation = 0;
  #unsettled = 0;
  #closed = false;
  readonly #queue: Array<() => void> = [];
  #draining: NodeJS.Immediate | undefined;
  readonly #flushed: Array<() => void> = [];

  constructor(options: UpstreamReceiverOptions & { log: Logger; onError: (error: UpstreamError) => void; onClose: () => void }) {
    if (!Number.isInteger(options.credit) || options.credit < 1) throw new RangeError(`receiver credit must be a whole number from 1, not ${options.credit}`);
    this.address = options.address;
    this.#credit = options.credit;
    this.#onDelivery = options.onDelivery;
    this.#log = options.log;
    this.#onError = options.onError;
    this.#onClose = options.onClose;
  }

  get attached(): boolean {
    return this.#receiver !== undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  unsettled(): number {
    return this.#unsettled;
  }

  attach(connection: Connection): void {
    if (this.#closed) return;
    const session = connection.create_session();
    session.begin();
    const receiver = session.open_receiver({
      name: this.#name,
      // durable: 2 = the broker keeps the terminus (RabbitMQ declares a durable queue).
      source: { address: this.address, durable: 2 },
      credit_window: 0,
      autoaccept: false,
    } as Parameters<Connection['open_receiver']>[0]);
    this.#receiver = receiver;
    this.#generation += 1;
    this.#unsettled = 0;
    receiver.add_credit(this.#credit);
    const generation = this.#generation;
    receiver.on('message', (ctx: EventContext) => {
      if (ctx.message === undefined || ctx.delivery === undefined) return;
      this.#unsettled += 1;
      this.#deliver(ctx.message, ctx.delivery, generation);
    });
    const detached = (ctx: EventContext): void => {
      const translated = translateAmqpError(ctx.receiver?.error ?? { condition: 'amqp:link:detach-forced', description: 'link closed by the broker' },
        `receiver link from ${this.address}`);
      this.#log.error({ address: this.address, condition: translated.condition, code: translated.code, err: translated.message },
        'upstream closed the receiver link');
      this.#onError(translated);
      this.detach();
    };
    receiver.on('receiver_error', detached);
    receiver.on('receiver_close', (ctx: EventContext) => {
      if (this.#receiver === ctx.receiver) detached(ctx);
    });
  }

  /** The link or its connection is gone: its unsettled deliveries are the broker's again. */
  detach(): void {
    const receiver = this.#receiver;
    this.#receiver = undefined;
    this.#generation += 1;
    this.#unsettled = 0;
    this.#queue.length = 0;
    this.#wakeFlushed();
    if (receiver !== undefined) {
      receiver.removeAllListeners();
      // Keep a late error from an abandoned link from crashing the process.
      receiver.on('receiver_error', () => {});
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    const receiver = this.#receiver;
    this.detach();
    if (receiver !== undefined && receiver.is_open()) {
      receiver.close();
      receiver.session.close();
    }
    this.#onClose();
  }

  /** Resolves once the outcomes passed to `settle` so far are written (or the link is gone). */
  flush(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#flushed.push(resolve));
  }

  #wakeFlushed(): void {
    for (const wake of this.#flushed.splice(0)) wake();
  }

  #deliver(message: Message, delivery: Delivery, generation: number): void {
    let settled = false;
    const downlink: DownlinkDelivery = {
      address: this.address,
      message: toDownlinkMessage(message),
      settle: (outcome) => {
        if (settled || generation !== this.#generation) return false;
        settled = true;
        this.#enqueue(() => {
          if (generation !== this.#generation) return;
          writeOutcome(delivery, outcome);
          this.#unsettled -= 1;
          this.#receiver?.add_credit(1);
        });
        return true;
      },
    };
    try {
      this.#onDelivery(downlink);
    } catch (err) {
      // A throwing consumer must not break the link; the delivery goes back to the broker.
      this.#log.error({ address: this.address, err }, 'downlink consumer failed; releasing the delivery');
      downlink.settle({ kind: 'release' });
    }
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
  if (typeof m.subject === 'string') result.subject = m.subject;
  if (typeof m.content_type === 'string') result.contentType = m.content_type;
  const correlationId = idText(m.correlation_id);
  if (correlationId !== undefined) result.correlationId = correlationId;
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

function idText(id: unknown): string | undefined {
  if (id === undefined || id === null) return undefined;
  if (Buffer.isBuffer(id)) return id.toString('hex');
  return String(id);
}
