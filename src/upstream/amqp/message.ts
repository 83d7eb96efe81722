/**
 * A reading as an AMQP 1.0 message (DESIGN.md, "What arrives upstream"): the exact payload bytes
 * as one data section, durable, message_id stable across retries, subject = topic,
 * creation_time = when the gateway received it, application_properties.gateway = the gateway id.
 */
import rhea from 'rhea';
import type { UpstreamMessage } from '../interface.js';

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
    ...(message.correlationId === undefined ? {} : { correlation_id: message.correlationId }),
    creation_time: new Date(message.receivedAt),
    application_properties: { ...message.properties, gateway: gatewayId },
    body: rhea.message.data_section(message.payload),
  };
}
