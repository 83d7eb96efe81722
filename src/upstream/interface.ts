/**
 * The upstream: where readings go (an AMQP 1.0 broker). The forwarder sends through links, one
 * per target address, and only within the credit a link reports.
 *
 * Error rules
 * - Every error is a GatewayError with a code (UPSTREAM_AUTH, UPSTREAM_TLS, UPSTREAM_CONNECTION,
 *   UPSTREAM_REJECTED) and `retryable`. The upstream reconnects by itself (backoff with jitter,
 *   capped; auth and TLS failures retry at the cap); it never throws to the forwarder for that.
 * - Every message sent gets exactly one outcome: accepted, released, modified, rejected (with the
 *   broker's condition and description), or `lost` when the link or connection went away before
 *   the broker settled it. Lost messages were maybe delivered: send them again (same message id).
 * - `send` on a link without credit throws (a bug in the caller, never a broker condition).
 */
export interface UpstreamMessage {
  id: string;
  topic: string;
  payload: Buffer;
  receivedAt: number;
  priority: number;
  /** Remaining time to live in ms, if any. */
  ttlMs?: number;
  /** Extra application properties of its route. */
  properties?: Record<string, string | number | boolean>;
}

export type Outcome =
  | { kind: 'accepted' }
  | { kind: 'released' }
  | { kind: 'modified'; deliveryFailed: boolean; undeliverableHere: boolean }
  | { kind: 'rejected'; condition: string; description?: string }
  | { kind: 'lost' };

export interface UpstreamLink {
  readonly address: string;
  /** Transfers that may be handed to `send` now without exceeding the receiver's credit. */
  credit(): number;
  /** Sends one message; `onOutcome` is called exactly once. Presettled links report `accepted` at once. */
  send(message: UpstreamMessage, onOutcome: (outcome: Outcome) => void): void;
  /** Called when credit may have grown (a flow from the receiver, a link (re)attached), or the receiver asks to drain. */
  onCredit(listener: () => void): () => void;
  /**
   * The caller has nothing to send on this link now. A receiver that asked the link to drain
   * (a flow with drain=true) gets the unused credit back at once, as AMQP 1.0 requires.
   */
  idle(): void;
}

export interface UpstreamState {
  connected: boolean;
  /** The URL connected to or being tried. */
  url: string;
  reconnects: number;
  lastError?: { code: string; message: string; condition?: string; at: number };
}

export interface Upstream {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The link for `address` (opened when first asked for, and again after every reconnect). */
  link(address: string, mode: 'at-least-once' | 'at-most-once'): UpstreamLink;
  state(): UpstreamState;
  /** Called on connect and disconnect. */
  onState(listener: (state: UpstreamState) => void): () => void;
  /** Re-reads certificates and keys, and reconnects if they changed. */
  reload(): Promise<void>;
}

/**
 * Downlink: messages the upstream sends to the gateway (commands), received on one link per source
 * address, each within a credit window.
 *
 * Error rules
 * - A delivery stays unsettled until `settle` is called. A receiver never holds more than `credit`
 *   unsettled deliveries: a consumer that does not settle stops the link (back-pressure), it does
 *   not fill memory.
 * - When the link or the connection goes away, unsettled deliveries go back to the broker, which
 *   sends them again (after the reconnect, with a higher delivery count). Settling one of them
 *   afterwards does nothing and returns false.
 * - Link errors are translated once into GatewayErrors (UPSTREAM_*) and show in the upstream's
 *   state (`lastError`); the receiver is attached again after every reconnect, and a while after
 *   the broker closed the link.
 */
export interface DownlinkMessage {
  /** The message_id, when the sender set one. */
  id?: string;
  subject?: string;
  /** A data section's bytes; otherwise the value of the amqp-value (or sequence) section. */
  body: unknown;
  contentType?: string;
  correlationId?: string;
  replyTo?: string;
  /** ms since the epoch. */
  creationTime?: number;
  /** The application properties. */
  properties: Record<string, unknown>;
  /** How often the broker delivered it before (the header's delivery-count). */
  deliveryCount: number;
  /** Delivered before, maybe to another receiver (first-acquirer false, or a delivery count). */
  redelivered: boolean;
}

export type DownlinkOutcome =
  | { kind: 'accept' }
  | { kind: 'release' }
  | { kind: 'reject'; condition?: string; description?: string };

export interface DownlinkDelivery {
  readonly address: string;
  readonly message: DownlinkMessage;
  /** Settles the delivery once; false when it cannot be settled any more (settled already, or its link is gone). */
  settle(outcome: DownlinkOutcome): boolean;
}

export interface UpstreamReceiverOptions {
  /** The AMQP source address, e.g. /queue/commands. */
  address: string;
  /** Unsettled deliveries at most: the credit window granted to the broker. */
  credit: number;
  /** Called once for every delivery; it must eventually be settled. */
  onDelivery: (delivery: DownlinkDelivery) => void;
}

export interface UpstreamReceiver {
  readonly address: string;
  /** True while the link is attached. */
  readonly attached: boolean;
  /** Deliveries received and not settled yet. */
  unsettled(): number;
  /**
   * Detaches for good. Outcomes already passed to `settle` are written first; deliveries not
   * settled go back to the broker.
   */
  close(): Promise<void>;
}

/** An upstream that can also receive (AmqpUpstream). */
export interface DownlinkSource {
  receiver(options: UpstreamReceiverOptions): UpstreamReceiver;
}
