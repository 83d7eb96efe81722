/**
 * A reading as an AMQP 1.0 message (DESIGN.md, "What arrives upstream"): the exact payload bytes
 * as one data section, durable, message_id stable across retries, subject = topic,
 * creation_time = when the gateway received it, application_properties.gateway = the gateway id.
 */
import rhea from 'rhea';
import type { AmqpId, UpstreamMessage } from '../interface.js';

/**
 * header.ttl is an AMQP uint (ms): about 49.7 days at most. rhea throws on a larger one, and the
 * reading would never leave; a longer ttl is sent as the longest the header holds.
 */
const MAX_TTL = 0xffff_ffff;

export function toAmqpMessage(message: UpstreamMessage, gatewayId: string): Record<string, unknown> {
  return {
    message_id: message.id,
    durable: true,
    priority: message.priority,
    ...(message.ttlMs === undefined ? {} : { ttl: Math.min(MAX_TTL, Math.max(1, Math.floor(message.ttlMs))) }),
    subject: message.topic,
    ...(message.correlationId === undefined ? {} : { correlation_id: wrapId(message.correlationId) }),
    creation_time: new Date(message.receivedAt),
    application_properties: { ...message.properties, gateway: gatewayId },
    body: rhea.message.data_section(message.payload),
  };
}

/**
 * An id back in its AMQP type: rhea decodes a uuid and a binary both to bytes, and would encode
 * any bytes as a uuid; 16 bytes go back as a uuid, other lengths as binary. (So a binary id of
 * exactly 16 bytes comes back as a uuid, and a ulong beyond 2^53, which rhea gives as 8 bytes,
 * as binary.)
 */
function wrapId(id: AmqpId): unknown {
  if (!Buffer.isBuffer(id)) return id;
  return id.length === 16 ? rhea.types.wrap_uuid(id) : rhea.types.wrap_binary(id);
}
