/**
 * The upstream: where readings go (an AMQP 1.0 broker). The forwarder sends through links, one
 * per target address, and only within the credit a link reports. (Receiving, the downlink, is
 * its own boundary: downlink.ts.)
 *
 * Error rules
 * - Every error is a GatewayError with a code (UPSTREAM_AUTH, UPSTREAM_TLS, UPSTREAM_CONNECTION,
 *   UPSTREAM_REJECTED) and `retryable`. The upstream reconnects by itself, and attaches refused
 *   links again, with waits of the one retry policy (core/retry.ts): backoff with jitter, capped,
 *   for a retryable error; the cap for one that is not (credentials, certificates, and the AMQP
 *   conditions errors.ts marks not retryable, such as amqp:not-allowed). It never throws to the
 *   forwarder for that.
 * - Every message sent gets exactly one outcome: accepted, released, modified, rejected (with the
 *   broker's condition and description), or `lost` when the link or connection went away before
 *   the broker settled it. Lost messages were maybe delivered: send them again (same message id).
 * - A message larger than the receiver takes (the max_message_size of its attach) is not sent: it
 *   is reported `rejected` with amqp:link:message-size-exceeded, after `send` returns.
 * - `send` on a link without credit throws (a bug in the caller, never a broker condition).
 * - A listener (onState, onCredit, an outcome callback) that throws is logged with the link or
 *   connection it concerns and otherwise ignored: it costs neither the connection nor the other
 *   listeners. Listeners run inside the upstream's event handling: they must not block.
 * - A connection silent for twice the idle timeout (a half-open connection: no FIN, no RST) is
 *   given up like any other failure: everything unsettled is `lost`, then the next URL is tried.
 *   `reload()` is no failure: it reconnects to the URL in use.
 */
/** An AMQP message-id or correlation-id as rhea gives it: a string, a ulong as a number, a uuid or binary as its bytes. */
export type AmqpId = string | number | Buffer;

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
  /** The correlation_id (a reply to a command carries the command's, of the same type). */
  correlationId?: AmqpId;
}

export type Outcome =
  | { kind: 'accepted' }
  | { kind: 'released' }
  | { kind: 'modified'; deliveryFailed: boolean }
  | { kind: 'rejected'; condition: string; description?: string }
  | { kind: 'lost' };

export interface UpstreamLink {
  readonly address: string;
  /**
   * True once the upstream dropped this object: closed after it was idle (nothing sent, nothing
   * unsettled) for a while, or to keep the number of open links under the cap. Only a link that
   * has credit counts as idle: one waiting for the broker's credit stays. A closed link has
   * no credit and calls its onCredit listeners once more, right after the close (so a caller
   * with readings still waiting learns of it), and never again; `Upstream.link(address)` then returns a new
   * object for the address. So a caller asks `link()` again whenever it starts to send, and moves
   * its `onCredit` subscription to the new object.
   */
  readonly closed: boolean;
  /**
   * Transfers that may be handed to `send` now without exceeding the receiver's link credit or
   * its session window (which a broker may shut, e.g. RabbitMQ 4 during a memory or disk alarm).
   */
  credit(): number;
  /** Sends one message; `onOutcome` is called exactly once. Presettled links report `accepted` at once. */
  send(message: UpstreamMessage, onOutcome: (outcome: Outcome) => void): void;
  /**
   * Called when credit may have grown (a flow from the receiver for the link or its session, a
   * link (re)attached, an outcome), or the receiver asks to drain; and once when the link is
   * closed (see `closed`), in a later microtask, never inside the upstream's own bookkeeping.
   */
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
  /**
   * Addresses whose link the broker refuses while the connection is up (e.g. a queue that does not
   * exist): their readings wait, the link is attached again with backoff. Absent when none.
   */
  refused?: RefusedAddress[];
}

export interface RefusedAddress {
  address: string;
  code: string;
  condition?: string;
  message: string;
  /** When it was first refused (ms since the epoch). */
  since: number;
  /** Attaches refused so far. */
  attempts: number;
}

export interface Upstream {
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * The link for `address` (opened when first asked for, and again after every reconnect). The
   * same object until it is `closed` (see UpstreamLink.closed); a link waiting for a place under
   * the cap of open links has no credit and calls onCredit once it is attached.
   */
  link(address: string, mode: 'at-least-once' | 'at-most-once'): UpstreamLink;
  state(): UpstreamState;
  /** Credit summed over the open links: how many transfers the receivers let us send right now. */
  credit(): number;
  /** Called on connect and disconnect. */
  onState(listener: (state: UpstreamState) => void): () => void;
  /**
   * Re-reads certificates and keys, and reconnects if they changed. Resolves to what it found:
   * `changed` (reconnecting with them), `unchanged` (the connection stays), or `unreadable` (a
   * file is missing or cannot be used: logged, and the current connection stays). Never rejects.
   */
  reload(): Promise<UpstreamReload>;
}

/** What `Upstream.reload()` found. */
export type UpstreamReload = 'changed' | 'unchanged' | 'unreadable';
