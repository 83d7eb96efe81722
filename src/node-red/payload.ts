/**
 * Node-RED messages ↔ readings and downlink messages. Readings carry bytes: a Buffer goes as it is,
 * a string as UTF-8, anything else as its JSON text. Errors are GatewayErrors with code BAD_INPUT.
 */
import { systemClock } from '../core/clock.js';
import { isUtf8 } from 'node:buffer';
import type { Envelope } from '../core/envelope.js';
import { GatewayError } from '../core/errors.js';
import { newReadingId } from '../core/ids.js';
import type { DownlinkMessage } from '../upstream/downlink.js';
import type { NodeMessage } from './red-api.js';

/** The reading for `msg`; the node's own topic, when set, wins over msg.topic (as in mqtt out). */
export function toEnvelope(msg: NodeMessage, nodeTopic: string | undefined, now = systemClock.now()): Envelope {
  const topic = nodeTopic !== undefined && nodeTopic !== '' ? nodeTopic : msg.topic;
  if (typeof topic !== 'string' || topic === '') {
    throw new GatewayError('BAD_INPUT', 'msg.topic must be a non-empty string (or set a topic on the node)');
  }
  return { id: newReadingId(now), topic, payload: payloadBytes(msg.payload), receivedAt: now };
}

export function payloadBytes(payload: unknown): Buffer {
  if (Buffer.isBuffer(payload)) return payload;
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (payload === undefined || payload === null) throw new GatewayError('BAD_INPUT', 'msg.payload is missing');
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch (err) {
    throw new GatewayError('BAD_INPUT', `msg.payload cannot be sent as JSON: ${(err as Error).message}`, { cause: err });
  }
  if (text === undefined) throw new GatewayError('BAD_INPUT', `msg.payload of type ${typeof payload} cannot be sent as JSON`);
  return Buffer.from(text, 'utf8');
}

export type PayloadMode = 'auto' | 'buffer' | 'utf8' | 'json';

/**
 * The payload of a downlink message. auto: JSON when the content type says so, else a string when
 * the bytes are UTF-8, else the Buffer; a non-binary body (amqp-value) as it is.
 */
export function downlinkPayload(message: DownlinkMessage, mode: PayloadMode): unknown {
  const body = message.body;
  const bytes = Buffer.isBuffer(body) ? body : undefined;
  switch (mode) {
    case 'buffer':
      return bytes ?? (typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(JSON.stringify(body ?? null), 'utf8'));
    case 'utf8':
      return bytes?.toString('utf8') ?? (typeof body === 'string' ? body : JSON.stringify(body ?? null));
    case 'json':
      return bytes !== undefined || typeof body === 'string' ? parseJson(String(bytes ?? body)) : body;
    case 'auto':
      if (bytes === undefined) return body;
      if (/\bjson\b/i.test(message.contentType ?? '')) return parseJson(bytes.toString('utf8'));
      return isUtf8(bytes) ? bytes.toString('utf8') : bytes;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new GatewayError('BAD_INPUT', `downlink payload is not JSON: ${(err as Error).message}`, { cause: err });
  }
}
