/**
 * The one schema of uplink's configuration. It validates `uplink.yaml`, supplies the defaults, and
 * is published as JSON Schema (`schema/uplink.schema.json`, written by `npm run build`) so that
 * editors can check the file as it is typed. Every object is strict: an unknown (for example
 * misspelt) key is an error, never a silent fall-back to a default.
 *
 * Files (TLS keys and certificates) are referenced by path only; their contents are never part
 * of the config, so they cannot leak into logs or error messages.
 */
import { z } from 'zod';

const port = z.number()
  .int('must be an integer port number')
  .min(1, 'must be a port from 1 to 65535')
  .max(65535, 'must be a port from 1 to 65535');

const host = z.string().min(1, 'must not be empty')
  .describe('interface or host name; 127.0.0.1 keeps it off the network');

const filePath = z.string().min(1, 'must be a file path');

/** One MQTT topic filter: `+` stands for one whole level, `#` for the rest and only at the end. */
export function topicFilterProblem(filter: string): string | undefined {
  if (filter.length === 0) return 'must not be empty';
  if (filter.includes('\u0000')) return 'must not contain NUL';
  const levels = filter.split('/');
  for (const [i, level] of levels.entries()) {
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return "'#' must be a whole level and the last one";
    }
    if (level.includes('+') && level !== '+') return "'+' must be a whole level";
  }
  return undefined;
}

const topicFilter = z.string().superRefine((value, ctx) => {
  const problem = topicFilterProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `${problem} (an MQTT topic filter)` });
});

export const RouteSchema = z.strictObject({
  topic: topicFilter.describe('MQTT topic filter; + matches one level, # the rest'),
  address: z.string().min(1, 'must not be empty').describe('AMQP 1.0 target address, e.g. /queue/telemetry'),
});

export const TlsSchema = z.strictObject({
  ca: filePath.optional().describe('PEM file of the CA(s) that signed the broker certificate; the system CAs when unset'),
  cert: filePath.optional().describe('PEM file of the client certificate (needed for SASL EXTERNAL)'),
  key: filePath.optional().describe('PEM file of the client private key'),
  servername: z.string().min(1).optional().describe('name checked against the broker certificate; the URL host when unset'),
});

export const UpstreamSchema = z.strictObject({
  url: z.string()
    .regex(/^amqps?:\/\//i, 'must use the amqp:// or amqps:// scheme')
    .describe('the AMQP 1.0 broker, amqp://host:port or amqps://host:port (TLS)'),
  sasl: z.enum(['external', 'plain', 'anonymous'], { error: 'must be one of: external, plain, anonymous' })
    .default('external')
    .describe('SASL mechanism: external = the TLS client certificate is the identity'),
  tls: TlsSchema.optional(),
  username: z.string().min(1).optional().describe('for sasl: plain'),
  password: z.string().min(1).optional().describe('for sasl: plain'),
  allowInsecure: z.boolean().default(false)
    .describe('allow sasl: plain over amqp:// (the password crosses the network in clear text)'),
});

export const ConfigSchema = z.strictObject({
  gatewayId: z.string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit')
    .optional()
    .describe('name of this gateway, sent upstream with every reading; the host name when unset'),
  dataDir: z.string().min(1).default('./data').describe('directory of the spool'),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace'],
      { error: 'must be one of: fatal, error, warn, info, debug, trace' }).default('info'),
  }).prefault({}),
  mqtt: z.strictObject({
    host: host.default('127.0.0.1'),
    port: port.default(1883),
  }).prefault({}).describe('the embedded MQTT broker that devices publish to'),
  upstream: UpstreamSchema.optional()
    .describe('where readings go; when unset, readings wait in the spool'),
  routes: z.array(RouteSchema).min(1, 'must have at least one route')
    .default([{ topic: '#', address: '/queue/telemetry' }])
    .describe('first match wins; a reading goes to the address of the first route whose topic filter matches'),
  http: z.strictObject({
    host: host.default('127.0.0.1'),
    port: port.default(9464),
  }).prefault({}).describe('GET /metrics, /healthz, /readyz'),
});

/** The config as written: what `uplink.yaml` may contain. */
export type ConfigInput = z.input<typeof ConfigSchema>;
/** The config after validation and defaults, with relative paths resolved. */
export type Config = z.output<typeof ConfigSchema> & { gatewayId: string };
export type UpstreamConfig = NonNullable<Config['upstream']>;
export type RouteConfig = Config['routes'][number];

/** The JSON Schema of `uplink.yaml`, as published for editors. */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(ConfigSchema, { io: 'input' }),
    title: 'uplink gateway configuration (uplink.yaml)',
  };
}
