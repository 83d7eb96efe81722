/**
 * The config of commands down to devices (`downlink:` in uplink.yaml): the AMQP 1.0 source the
 * gateway receives them from, over the upstream connection, and how long it waits for devices.
 */
import { z } from 'zod';
import { duration } from './duration.js';

export const DownlinkSchema = z.strictObject({
  address: z.string().min(1, 'must not be empty')
    .describe('the AMQP 1.0 source address commands come from, e.g. /queue/commands (RabbitMQ declares the queue)'),
  credit: z.number().int('must be an integer').min(1, 'must be from 1 to 1000').max(1000, 'must be from 1 to 1000').default(10)
    .describe('commands in progress at most: the credit window granted to the broker'),
  mqttTimeout: duration.default(10_000)
    .describe('how long a command published to MQTT subscribers waits for their PUBACK before it is released'),
  replies: z.boolean().default(true)
    .describe("send a reply (result or error) to a command's reply_to address, with its correlation_id"),
});
