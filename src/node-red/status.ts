/** The status line under a node (Node-RED's fill/shape/text): the connection, the spool, the last error. */
import type { ReceiverError } from '../upstream/downlink.js';
import type { UpstreamState } from '../upstream/interface.js';
import type { UplinkSnapshot } from './runtime.js';
import type { NodeStatus } from './red-api.js';

const MAX_TEXT = 72;

export function uplinkStatus(snapshot: UplinkSnapshot, extra: { detail?: string; error?: string } = {}): NodeStatus {
  const { upstream, spool } = snapshot;
  const parts = [upstream.connected ? 'connected' : 'disconnected', `${spool.depth} spooled`];
  if (extra.detail !== undefined) parts.push(extra.detail);
  if (spool.blocked) parts.push(spool.diskFull ? 'disk full' : 'spool full');
  const error = extra.error ?? (upstream.connected ? undefined : connectionError(upstream));
  if (error !== undefined) parts.push(error);
  return {
    fill: extra.error !== undefined || spool.blocked ? 'yellow' : upstream.connected ? 'green' : 'red',
    shape: upstream.connected ? 'dot' : 'ring',
    text: shorten(parts.join(' · ')),
  };
}

export interface ReceiverView {
  address: string;
  attached: boolean;
  lastError: ReceiverError | undefined;
  /** Messages in the flow, not settled yet. */
  inFlow: number;
  /** Of those, how many have been in the flow for long (see uplink-in.ts). */
  waiting: number;
}

/**
 * The status of `uplink in`: the connection, whether its link is attached (and why not), and the
 * messages in the flow. The spool is not shown: it holds readings going up, not commands.
 */
export function receiverStatus(upstream: UpstreamState, receiver: ReceiverView): NodeStatus {
  if (!upstream.connected) {
    const error = connectionError(upstream);
    return { fill: 'red', shape: 'ring', text: shorten(['disconnected', receiver.address, ...(error === undefined ? [] : [error])].join(' · ')) };
  }
  if (!receiver.attached) {
    const reason = receiver.lastError?.message.replace(/^receiver link from \S+: /, '');
    return { fill: 'yellow', shape: 'ring', text: shorten(reason === undefined ? `attaching ${receiver.address}` : `not attached: ${reason}`) };
  }
  const parts = ['connected', receiver.address];
  if (receiver.waiting > 0) parts.push(`${receiver.waiting} waiting`);
  else if (receiver.inFlow > 0) parts.push(`${receiver.inFlow} in the flow`);
  return { fill: receiver.waiting > 0 ? 'yellow' : 'green', shape: 'dot', text: shorten(parts.join(' · ')) };
}

export function failedStatus(error: string): NodeStatus {
  return { fill: 'red', shape: 'ring', text: shorten(error) };
}

/** The URL is in the config node already; the status line keeps the reason. */
function connectionError(upstream: UpstreamState): string | undefined {
  return upstream.lastError?.message.replace(/^upstream \S+( closed the connection)?: /, '');
}

function shorten(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > MAX_TEXT ? `${line.slice(0, MAX_TEXT - 1)}…` : line;
}
