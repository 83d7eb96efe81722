/**
 * `uplink in`: downlink commands. Receives from an AMQP 1.0 source address with a credit window
 * and sends each message into the flow as msg.payload, msg.topic (the subject, else the address),
 * msg.properties (the application properties) and msg.amqp (message id, correlation id, reply-to,
 * content type, creation time, delivery count, redelivered).
 *
 * The delivery is accepted only when the flow is done with the message: every node that received
 * it has called done() (see completion.ts for how a source node learns that). A node that calls
 * done(err) and (when set) a timeout settle it with the configured outcome instead: `reject`
 * (the broker drops or dead-letters it) or `release` (the broker delivers it again). A payload
 * that cannot be decoded is always rejected. With the credit window full, the broker sends
 * nothing more until a message is settled. Unsettled messages go back to the broker when the
 * node closes or the connection drops.
 */
import { messageOf } from '../core/errors.js';
import type { DownlinkDelivery, DownlinkOutcome, UpstreamReceiver } from '../upstream/interface.js';
import { CompletionTracker } from './completion.js';
import { downlinkPayload, type PayloadMode } from './payload.js';
import type { Node, NodeAPI, NodeDef, NodeMessage } from './red-api.js';
import { failedStatus } from './status.js';
import { followStatus, useUplink } from './use-upstream.js';

export interface InDef extends NodeDef {
  upstream: string;
  address: string;
  /** Unsettled deliveries at most. */
  credit?: number | string;
  onError?: 'reject' | 'release';
  /** Seconds to wait for the flow before settling as on error; 0 or empty: wait for ever. */
  timeout?: number | string;
  payloadType?: PayloadMode;
}

export default function register(RED: NodeAPI): void {
  function UplinkInNode(this: Node, def: InDef): void {
    RED.nodes.createNode(this, def);
    const hooks = RED.hooks;
    const credit = Number(def.credit === undefined || def.credit === '' ? 10 : def.credit);
    const timeoutMs = Number(def.timeout === undefined || def.timeout === '' ? 0 : def.timeout) * 1000;
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
    const onError: DownlinkOutcome['kind'] = def.onError === 'release' ? 'release' : 'reject';
    const mode: PayloadMode = def.payloadType ?? 'auto';
    const wired = (def.wires?.[0]?.length ?? 0) > 0;
    const tracker = new CompletionTracker(hooks, `uplink-in-${this.id}`);
    tracker.start();
    const timers = new Set<NodeJS.Timeout>();

    const failed = (delivery: DownlinkDelivery, why: string, outcome = onError): void => {
      delivery.settle(outcome === 'release' ? { kind: 'release' } : { kind: 'reject', condition: 'amqp:internal-error', description: why.slice(0, 1000) });
      status.refresh();
    };

    const onDelivery = (delivery: DownlinkDelivery): void => {
      const { message } = delivery;
      let payload: unknown;
      try {
        payload = downlinkPayload(message, mode);
      } catch (err) {
        // Always rejected: delivered again, the same bytes would fail the same way.
        this.warn(`${def.address}: ${messageOf(err)}; rejected`);
        failed(delivery, messageOf(err), 'reject');
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
          redelivered: message.redelivered,
        },
      };
      const msgId = msg._msgid!;
      if (!wired) {
        // Nothing in the flow gets it: the flow is done with it as soon as it is sent.
        this.send(msg);
        delivery.settle({ kind: 'accept' });
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          timers.delete(timer!);
          if (!tracker.forget(msgId)) return;
          this.warn(`${def.address}: the flow did not finish message ${message.id ?? msgId} within ${timeoutMs / 1000} s; ${onError === 'release' ? 'released' : 'rejected'}`);
          failed(delivery, `not handled within ${timeoutMs / 1000} s`);
        }, timeoutMs);
        timers.add(timer);
      }
      tracker.track(msgId, (error) => {
        if (timer !== undefined) {
          clearTimeout(timer);
          timers.delete(timer);
        }
        if (error === undefined) {
          delivery.settle({ kind: 'accept' });
          status.refresh();
        } else {
          failed(delivery, messageOf(error));
        }
      });
      this.send(msg);
      status.refresh();
    };

    // Deliveries arrive from the network, so after `receiver` and `status` exist.
    const receiver: UpstreamReceiver = uplink.receiver({ address: def.address, credit, onDelivery });
    const status = followStatus(this, uplink, () => ({
      detail: `${def.address}${receiver.unsettled() === 0 ? '' : ` · ${receiver.unsettled()} waiting`}`,
    }));
    ready.then(status.refresh, () => {});

    this.on('close', (_removed, done) => {
      tracker.stop();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      status.stop();
      this.status({});
      // Outcomes decided are written first; unsettled deliveries go back to the broker with the link.
      receiver.close().catch((err: unknown) => this.error(`closing the receiver: ${messageOf(err)}`)).finally(done);
    });
  }
  RED.nodes.registerType('uplink in', UplinkInNode);
}
