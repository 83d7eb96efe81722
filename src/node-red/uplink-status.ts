/**
 * `uplink status`: sends the statistics of its upstream (connection, credit, last error, spool
 * depth and bytes, dead letters, forwarding outcomes) as msg.payload, on every input and, when an
 * interval is set, every that many seconds.
 */
import { messageOf } from '../core/errors.js';
import type { Node, NodeAPI, NodeDef, NodeMessage } from './red-api.js';
import type { UplinkRuntime } from './runtime.js';
import { followStatus, useUplink } from './use-upstream.js';

export interface StatusDef extends NodeDef {
  upstream: string;
  /** Seconds between messages; 0 or empty: only on input. */
  interval?: number | string;
}

export default function register(RED: NodeAPI): void {
  function UplinkStatusNode(this: Node, def: StatusDef): void {
    RED.nodes.createNode(this, def);
    const used = useUplink(RED, this, def.upstream);
    if ('failure' in used) {
      this.on('input', (_msg, _send, done) => done(used.failure));
      return;
    }
    const { uplink, ready } = used;
    const status = followStatus(this, uplink);
    ready.then(status.refresh, () => {});
    const payload = async (): Promise<ReturnType<UplinkRuntime['snapshot']>> => {
      await ready;
      return uplink.snapshot();
    };

    this.on('input', (msg, send, done) => {
      payload().then((snapshot) => {
        msg.payload = snapshot;
        send(msg);
        done();
      }, (err: unknown) => done(err instanceof Error ? err : new Error(messageOf(err))));
    });

    const seconds = Number(def.interval === undefined || def.interval === '' ? 0 : def.interval);
    let timer: NodeJS.Timeout | undefined;
    if (Number.isFinite(seconds) && seconds > 0) {
      timer = setInterval(() => {
        payload().then((snapshot) => this.send({ topic: 'uplink/status', payload: snapshot } satisfies NodeMessage), () => {});
      }, seconds * 1000);
    }

    this.on('close', (_removed, done) => {
      clearInterval(timer);
      status.stop();
      this.status({});
      done();
    });
  }
  RED.nodes.registerType('uplink status', UplinkStatusNode);
}
