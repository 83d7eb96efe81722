/**
 * `uplink out`: a Node-RED message becomes a reading (msg.payload as bytes, msg.topic or the
 * node's topic), is routed as the gateway routes it, and is appended to the spool. `done()` is
 * called only once the reading is committed to disk, so a Complete node means "stored, will be
 * forwarded"; `done(err)` (unrouted, bad payload, spool full and given up on close, spool failure)
 * sends the message to Catch nodes with the reason. The status shows the connection, the spool
 * depth and the last error.
 */
import { messageOf } from '../core/errors.js';
import { toEnvelope } from './payload.js';
import type { Node, NodeAPI, NodeDef } from './red-api.js';
import { followStatus, useUplink } from './use-upstream.js';

export interface OutDef extends NodeDef {
  upstream: string;
  /** Overrides msg.topic when set. */
  topic?: string;
}

export default function register(RED: NodeAPI): void {
  function UplinkOutNode(this: Node, def: OutDef): void {
    RED.nodes.createNode(this, def);
    const used = useUplink(RED, this, def.upstream);
    if ('failure' in used) {
      this.on('input', (_msg, _send, done) => done(used.failure));
      return;
    }
    const { uplink, ready } = used;
    // Appends still waiting (a full spool under `block`) give up when the node closes.
    const closing = new AbortController();
    let lastError: string | undefined;
    const status = followStatus(this, uplink, () => (lastError === undefined ? {} : { error: lastError }));
    ready.then(status.refresh, () => {});

    this.on('input', (msg, _send, done) => {
      let envelope;
      try {
        envelope = toEnvelope(msg, def.topic);
      } catch (err) {
        lastError = messageOf(err);
        status.refresh();
        done(err as Error);
        return;
      }
      uplink.append([envelope], closing.signal).then(() => {
        if (lastError !== undefined) {
          lastError = undefined;
          status.refresh();
        }
        done();
      }, (err: unknown) => {
        lastError = messageOf(err);
        status.refresh();
        done(err instanceof Error ? err : new Error(messageOf(err)));
      });
    });

    this.on('close', (_removed, done) => {
      closing.abort();
      status.stop();
      this.status({});
      done();
    });
  }
  RED.nodes.registerType('uplink out', UplinkOutNode);
}
