/**
 * Downlink: messages the upstream sends to the gateway (commands), received on one link per source
 * address, each within a credit window.
 *
 * Error rules
 * - A delivery stays unsettled until `settle` is called. A receiver never has more than `credit`
 *   deliveries in the hands of its consumer, counting those of an earlier link that went away:
 *   a consumer that does not settle stops the link (back-pressure), it does not fill memory.
 * - When the link or the connection goes away, unsettled deliveries go back to the broker, which
 *   sends them again (after the reconnect, marked redelivered). Settling one of them afterwards
 *   returns false and writes nothing, but gives its credit back to the new link: until then the
 *   new link is granted `credit` minus the deliveries still in the consumer's hands.
 * - Link errors (the broker refuses or closes the link, or ends its session) are translated once
 *   into GatewayErrors (UPSTREAM_*), kept in the receiver's `lastError` until the next successful
 *   attach, and shown in the upstream's state (`lastError`). The receiver is attached again after
 *   every reconnect, and a while after the broker closed the link.
 */

import type { AmqpId } from './interface.js';

export interface DownlinkMessage {
  /** The message_id, when the sender set one. */
  id?: string;
  subject?: string;
  /** A data section's bytes; otherwise the value of the amqp-value (or sequence) section. */
  body: unknown;
  contentType?: string;
  /** The correlation_id as text (a binary one in hex), for logs and Node-RED. */
  correlationId?: string;
  /** The message_id and correlation_id as they came (AmqpId), to send back unchanged in a reply. */
  idValue?: AmqpId;
  correlationIdValue?: AmqpId;
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
  /**
   * Settles the delivery once; false when it cannot be settled any more (settled already, or its
   * link is gone). Either way the consumer is done with it, and its credit goes back to the link.
   */
  settle(outcome: DownlinkOutcome): boolean;
}

export interface UpstreamReceiverOptions {
  /** The AMQP source address, e.g. /queue/commands. */
  address: string;
  /** Deliveries in the consumer's hands at most: the credit window granted to the broker. */
  credit: number;
  /** Called once for every delivery; `settle` must eventually be called. */
  onDelivery: (delivery: DownlinkDelivery) => void;
  /** Called when `attached` or `lastError` changes. */
  onChange?: () => void;
}

export interface ReceiverError {
  code: string;
  message: string;
  /** The AMQP error condition, when the broker sent one. */
  condition?: string;
  /** ms since the epoch. */
  at: number;
}

export interface UpstreamReceiver {
  readonly address: string;
  /** True while the link is attached: the broker confirmed it and has not closed it since. */
  readonly attached: boolean;
  /** Why the link was last refused or closed by the broker; cleared by the next successful attach. */
  readonly lastError: ReceiverError | undefined;
  /** Deliveries handed to the consumer and not settled yet, including those of a link that went away. */
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
