/**
 * `uplink in`: downlink commands. Receives from an AMQP 1.0 source address with a credit window
 * and sends each message into the flow as msg.payload, msg.topic (the subject, else the address),
 * msg.properties (the application properties) and msg.amqp (message id, correlation id, reply-to,
 * content type, creation time, delivery count, redelivered, and how often this node released it).
 *
 * The delivery is accepted only when the flow is done with the message: every node that received
 * it has called done(), or no node received it (see completion.ts for how a source node learns
 * that). A node that calls done(err), and the timeout (60 s unless set; 0 turns it off), settle
 * it with the configured outcome instead: `reject` (the broker drops or dead-letters it) or
 * `release` (the broker delivers it again), the release after a wait that doubles per message id
 * (release-backoff.ts), since RabbitMQ would redeliver it at once. A payload that cannot be
 * decoded is always rejected (amqp:decode-error). With the credit window full, the broker sends
 * nothing more until a message is settled. Unsettled messages go back to the broker when the node
 * closes or the connection drops.
 *
 * Status: disconnected (red ring), not attached and why (yellow ring), connected with the
 * messages in the flow, and "N waiting" (yellow) when some have been in the flow for more than
 * half the timeout (30 s without one): a flow that never finishes them shows before it stalls.
 */
import { messageOf } from '../core/errors.js';
import type { DownlinkDelivery, UpstreamReceiver } from '../upstream/downlink.js';
import { CompletionTracker } from './completion.js';
import { downlinkPayload, type PayloadMode } from './payload.js';
import type { Node, NodeAPI, NodeDef, NodeMessage } from './red-api.js';
import { ReleaseBackoff } from '../core/release-backoff.js';
import { failedStatus, receiverStatus } from './status.js';
import { useUplink } from './use-upstream.js';

export interface InDef extends NodeDef {
  upstream: string;
  address: string;
  /** Messages in the flow at most. */
  credit?: number | string;
  onError?: 'reject' | 'release';
  /** Seconds to wait for the flow before settling as on error; empty: 60; 0: wait for ever. */
  timeout?: number | string;
  payloadType?: PayloadMode;
}

export const DEFAULT_TIMEOUT_S = 60;
/** Without a timeout, a message this long in the flow counts as waiting. */
const WAITING_WITHOUT_TIMEOUT_MS = 30_000;

/** A message in the flow. */
interface InFlow {
  /** In the flow for longer than `waitingMs`. */
  waiting: boolean;
  timers: NodeJS.Timeout[];
}

export default function register(RED: NodeAPI): void {
  function UplinkInNode(this: Node, def: InDef): void {
    RED.nodes.createNode(this, def);
    const hooks = RED.hooks;
    const credit = Number(def.credit === undefined || def.credit === '' ? 10 : def.credit);
    const timeoutMs = Number(def.timeout === undefined || def.timeout === '' ? DEFAULT_TIMEOUT_S : def.timeout) * 1000;
    const problem = hooks === undefined ? 'this Node-RED has no RED.hooks (message completion needs Node-RED 2.0 or later)'
      : !def.address ? 'address is required'
        : !Number.isInteger(credit) || credit < 1 ? 'credit must be a whole number from 1'
          : !Number.isFinite(timeoutMs) || timeoutMs < 0 ? 'timeout must be 0 or more seconds' : undefined;
    if (problem !== undefined || hooks === undefined) {
      this.error(problem);
      this.status(failedStatus(problem ?? ''));
      return;
    }
    const used = useUplink(RED, this, def.upstream);
    if ('failure' in used) return;
    const { uplink, ready } = used;
    const onError = def.onError === 'release' ? 'release' : 'reject';
    const mode: PayloadMode = def.payloadType ?? 'auto';
    const waitingMs = timeoutMs > 0 ? timeoutMs / 2 : WAITING_WITHOUT_TIMEOUT_MS;
    const tracker = new CompletionTracker(hooks, `uplink-in-${this.id}`);
    tracker.start();
    const inFlow = new Map<string, InFlow>();
    const backoff = new ReleaseBackoff();
    /** Releases waiting for their backoff. */
    const releases = new Set<NodeJS.Timeout>();
    let closing = false;

    const refresh = (): void => {
      if (closing || !uplink.running) return;
      let waiting = 0;
      for (const entry of inFlow.values()) if (entry.waiting) waiting += 1;
      this.status(receiverStatus(uplink.upstream.state(), {
        address: def.address, attached: receiver.attached, lastError: receiver.lastError, inFlow: inFlow.size, waiting,
      }));
    };

    const leftFlow = (msgId: string): void => {
      const entry = inFlow.get(msgId);
      if (entry === undefined) return;
      for (const timer of entry.timers) clearTimeout(timer);
      inFlow.delete(msgId);
    };

    const failed = (delivery: DownlinkDelivery, why: string): void => {
      const id = delivery.message.id;
      if (onError === 'reject') {
        backoff.forget(id);
        delivery.settle({ kind: 'reject', condition: 'amqp:internal-error', description: why.slice(0, 1000) });
        return;
      }
      // Released at once, RabbitMQ would hand it back at once (at the head of the queue, its
      // delivery count unchanged): wait first, longer each time. It keeps its credit meanwhile.
      const timer = setTimeout(() => {
        releases.delete(timer);
        delivery.settle({ kind: 'release' });
      }, backoff.next(id));
      releases.add(timer);
    };

    const onDelivery = (delivery: DownlinkDelivery): void => {
      const { message } = delivery;
      let payload: unknown;
      try {
        payload = downlinkPayload(message, mode);
      } catch (err) {
        // Always rejected: delivered again, the same bytes would fail the same way.
        this.warn(`${def.address}: ${messageOf(err)}; rejected`);
        delivery.settle({ kind: 'reject', condition: 'amqp:decode-error', description: messageOf(err).slice(0, 1000) });
        return;
      }
      const msg: NodeMessage = {
        _msgid: RED.util.generateId(),
        topic: message.subject ?? def.address,
        payload,
        properties: message.properties,
        amqp: {
          address: def.address, messageId: message.id, correlationId: message.correlationId, replyTo: message.replyTo,
          contentType: message.contentType, creationTime: message.creationTime, deliveryCount: message.deliveryCount,
          redelivered: message.redelivered, releases: backoff.attempts(message.id),
        },
      };
      const msgId = msg._msgid!;
      const entry: InFlow = { waiting: false, timers: [] };
      entry.timers.push(setTimeout(() => {
        entry.waiting = true;
        refresh();
      }, waitingMs));
      inFlow.set(msgId, entry);
      if (timeoutMs > 0) {
        entry.timers.push(setTimeout(() => {
          if (!tracker.forget(msgId)) return;
          leftFlow(msgId);
          this.warn(`${def.address}: the flow did not finish message ${message.id ?? msgId} within ${timeoutMs / 1000} s; ${onError === 'release' ? 'releasing' : 'rejecting'} it`);
          failed(delivery, `not handled within ${timeoutMs / 1000} s`);
          refresh();
        }, timeoutMs));
      }
      tracker.track(msgId, (error) => {
        leftFlow(msgId);
        if (error === undefined) {
          backoff.forget(message.id);
          delivery.settle({ kind: 'accept' });
        } else {
          failed(delivery, messageOf(error));
        }
        refresh();
      });
      this.send(msg);
      refresh();
    };

    // Deliveries arrive from the network, so after `receiver` and `refresh` exist.
    const receiver: UpstreamReceiver = uplink.receiver({ address: def.address, credit, onDelivery, onChange: () => refresh() });
    const stopFollowing = uplink.onChange(refresh);
    ready.then(refresh, () => {});

    this.on('close', (_removed, done) => {
      closing = true;
      tracker.stop();
      for (const id of [...inFlow.keys()]) leftFlow(id);
      for (const timer of releases) clearTimeout(timer);
      releases.clear();
      stopFollowing();
      this.status({});
      // Outcomes decided are written first; unsettled deliveries go back to the broker with the link.
      receiver.close().catch((err: unknown) => this.error(`closing the receiver: ${messageOf(err)}`)).finally(done);
    });
  }
  RED.nodes.registerType('uplink in', UplinkInNode);
}
