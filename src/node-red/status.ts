/** The status line under a node (Node-RED's fill/shape/text): the connection, the spool, the last error. */
import type { UplinkSnapshot } from './runtime.js';
import type { NodeStatus } from './red-api.js';

const MAX_TEXT = 72;

export function uplinkStatus(snapshot: UplinkSnapshot, extra: { detail?: string; error?: string } = {}): NodeStatus {
  const { upstream, spool } = snapshot;
  const parts = [upstream.connected ? 'connected' : 'disconnected', `${spool.depth} spooled`];
  if (extra.detail !== undefined) parts.push(extra.detail);
  if (spool.blocked) parts.push(spool.diskFull ? 'disk full' : 'spool full');
  // The URL is in the config node already; the status line keeps the reason.
  const error = extra.error ?? (upstream.connected ? undefined : upstream.lastError?.message.replace(/^upstream \S+( closed the connection)?: /, ''));
  if (error !== undefined) parts.push(error);
  return {
    fill: extra.error !== undefined || spool.blocked ? 'yellow' : upstream.connected ? 'green' : 'red',
    shape: upstream.connected ? 'dot' : 'ring',
    text: shorten(parts.join(' · ')),
  };
}

export function failedStatus(error: string): NodeStatus {
  return { fill: 'red', shape: 'ring', text: shorten(error) };
}

function shorten(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > MAX_TEXT ? `${line.slice(0, MAX_TEXT - 1)}…` : line;
}
