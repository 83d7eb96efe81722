/**
 * The command message format (README, "Commands down to devices"): a JSON object, as the bytes of
 * a data section (UTF-8) or as an AMQP value (a JSON string, or a map).
 *
 *   {"target": "mqtt", "topic": "cmd/valve-7", "qos": 1, "payload": {"open": true}}
 *   {"target": "modbus", "bus": "line1", "device": "boiler", "point": "setpoint", "value": 21.5}
 *
 * An MQTT payload that is a string is sent as its UTF-8 bytes, any other JSON value as its JSON
 * text; `payloadBase64` sends bytes as they are. What does not parse is a `CommandProblem` with
 * every error as "path: message".
 */
import { z } from 'zod';

export type Command =
  | { target: 'mqtt'; topic: string; qos: 0 | 1 | 2; payload: Buffer }
  | { target: 'modbus'; bus: string; device: string; point: string; value: unknown };

export interface CommandProblem {
  problem: string;
}

const text = z.string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') }).min(1, 'must not be empty');

const MqttSchema = z.strictObject({
  target: z.literal('mqtt'),
  topic: text,
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)], { error: 'must be 0, 1 or 2' }).default(1),
  payload: z.unknown().optional(),
  payloadBase64: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64').optional(),
}).superRefine((command, ctx) => {
  if ((command.payload === undefined) === (command.payloadBase64 === undefined)) {
    ctx.addIssue({ code: 'custom', path: ['payload'], message: 'give either payload or payloadBase64' });
  }
});

const ModbusSchema = z.strictObject({
  target: z.literal('modbus'),
  bus: text,
  device: text,
  point: text,
  value: z.unknown().refine((value) => value !== undefined, 'is required'),
});

const CommandSchema = z.discriminatedUnion('target', [MqttSchema, ModbusSchema], { error: 'must be "mqtt" or "modbus"' });

/** The JSON object a message body holds, or why there is none. */
function bodyObject(body: unknown): unknown {
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    return JSON.parse(text);
  }
  if (typeof body === 'string') return JSON.parse(body);
  return body;
}

export function parseCommand(body: unknown): Command | CommandProblem {
  let value: unknown;
  try {
    value = bodyObject(body);
  } catch (err) {
    return { problem: `the body is not UTF-8 JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { problem: 'the body is not a JSON object' };
  const parsed = CommandSchema.safeParse(value);
  if (!parsed.success) {
    return {
      problem: parsed.error.issues.map((issue) => (issue.code === 'unrecognized_keys'
        ? `${issue.keys.join(', ')}: ${issue.keys.length > 1 ? 'are not fields' : 'is not a field'} of a command`
        : `${issue.path.length > 0 ? issue.path.join('.') : 'command'}: ${issue.message}`)).join('; '),
    };
  }
  const command = parsed.data;
  if (command.target === 'modbus') return command;
  const payload = command.payloadBase64 !== undefined ? Buffer.from(command.payloadBase64, 'base64')
    : typeof command.payload === 'string' ? Buffer.from(command.payload, 'utf8') : Buffer.from(JSON.stringify(command.payload));
  return { target: 'mqtt', topic: command.topic, qos: command.qos, payload };
}

export function isProblem(value: Command | CommandProblem): value is CommandProblem {
  return 'problem' in value;
}

/** The command in a log line: where it goes, never the payload (it may hold secrets). */
export function describeCommand(command: Command): Record<string, unknown> {
  return command.target === 'mqtt'
    ? { target: 'mqtt', topic: command.topic, qos: command.qos, bytes: command.payload.length }
    : { target: 'modbus', bus: command.bus, device: command.device, point: command.point };
}
