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
import { DownlinkSchema } from './downlink-schema.js';
import { duration } from './duration.js';
import { ModbusSchema } from './modbus-schema.js';
import { SerialPortSchema } from './serial-schema.js';

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

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
/** A size as bytes (a number) or text such as `512MiB`, `2GB`; in bytes. */
const size = z.union([
  z.number().int().positive('must be more than 0'),
  z.string().regex(/^\d+(\.\d+)?\s*(B|KB|MB|GB|KiB|MiB|GiB)$/i, 'must be a size such as 512MiB or 2GB')
    .transform((text) => {
      const [, amount, unit] = /^([\d.]+)\s*(\w+)$/.exec(text)!;
      return Math.floor(Number(amount) * SIZE_UNITS[unit!.toLowerCase()]!);
    }),
], { error: 'must be a size: bytes, or text such as 512MiB or 2GB' });

const priority = z.number().int('must be an integer from 0 to 9').min(0, 'must be from 0 to 9').max(9, 'must be from 0 to 9');

export const RouteSchema = z.strictObject({
  topic: topicFilter.describe('MQTT topic filter; + matches one level, # the rest'),
  address: z.string().min(1, 'must not be empty')
    .regex(/^([^{}]|\{[1-9]\d*\})*$/, 'placeholders must be {N}, N a topic level from 1')
    .describe('AMQP 1.0 target address, e.g. /queue/telemetry; {N} is level N of the topic (from 1), e.g. /exchange/telemetry/{2}.{3}'),
  delivery: z.enum(['at-least-once', 'at-most-once'], { error: 'must be at-least-once or at-most-once' }).default('at-least-once')
    .describe('at-least-once: unsettled, deleted from the spool only when accepted; at-most-once: pre-settled, best effort'),
  properties: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional()
    .describe('extra AMQP application properties of the readings of this route'),
  priority: priority.default(4).describe('0 (lowest) to 9; higher priorities leave the spool first (AMQP header priority)'),
  ttl: duration.optional().describe('readings older than this are never forwarded; spool.ttl when unset'),
});

const MqttUserSchema = z.strictObject({
  username: z.string().min(1),
  password: z.string().regex(/^\$scrypt\$/, "must be a hash made by 'uplink passwd' (starting with $scrypt$), never the password itself")
    .describe("scrypt hash from 'uplink passwd'"),
});

const MqttAclSchema = z.strictObject({
  user: z.string().min(1).default('*')
    .describe('username or certificate CN this entry is for; * for everyone'),
  publish: z.array(topicFilter).default([]).describe('topic filters the device may publish to; %u = username, %c = client id'),
  subscribe: z.array(topicFilter).default([]).describe('topic filters the device may subscribe to; %u and %c as for publish'),
});

export const MqttSchema = z.strictObject({
  host: host.default('127.0.0.1'),
  port: port.default(1883),
  tls: z.strictObject({
    host: host.optional().describe('mqtt.host when unset'),
    port: port.default(8883),
    cert: filePath.describe('PEM file of the server certificate'),
    key: filePath.describe('PEM file of the server key'),
    ca: filePath.optional().describe('PEM file of the CA that signs device certificates (auth: certificate)'),
  }).optional().describe('an MQTT over TLS listener, besides the plain one'),
  websocket: z.strictObject({
    host: host.optional().describe('mqtt.host when unset'),
    port: port.default(8080),
  }).optional().describe('an MQTT over WebSocket listener'),
  auth: z.enum(['none', 'password', 'certificate'], { error: 'must be none, password or certificate' }).default('none')
    .describe('none: anyone may connect; password: users (hashed); certificate: the TLS client certificate CN is the identity'),
  users: z.array(MqttUserSchema).default([]).describe('for auth: password'),
  usersFile: filePath.optional().describe('for auth: password; lines of "username:hash", as from uplink passwd'),
  acl: z.array(MqttAclSchema).optional()
    .describe('who may publish and subscribe to what; unset: everyone may do everything; set: what no entry allows is denied'),
  maxPayload: size.default(256 * 1024).describe('largest publish payload accepted; a larger packet disconnects the client'),
  maxTopicLength: z.number().int().min(1).max(65535).default(256),
  maxTopicLevels: z.number().int().min(1).max(100, 'must be at most 100 (the embedded broker allows no more)').default(16),
  maxConnections: z.number().int().min(1).default(1000),
  maxInFlight: z.number().int().min(1).max(65535).default(64)
    .describe('QoS 1/2 publishes of one client waiting for the spool; more wait in the socket'),
  unrouted: z.enum(['drop', 'refuse'], { error: 'must be drop or refuse' }).default('drop')
    .describe('a publish that matches no route: drop (acknowledged, counted, logged) or refuse (not acknowledged, counted, logged)'),
});

export const SpoolSchema = z.strictObject({
  durability: z.enum(['full', 'normal'], { error: 'must be full or normal' }).default('full')
    .describe('full: every commit is fsynced (nothing acknowledged is lost on power loss); normal: faster, the last commits may be lost on power loss'),
  groupCommitMs: z.number().min(0).max(100).default(0)
    .describe('0: appends that arrive in the same turn of the event loop share one commit; more: also wait up to this many ms for others'),
  maxBytes: size.default(1024 ** 3).describe('payload bytes the spool may hold'),
  maxReadings: z.number().int().positive().default(10_000_000).describe('readings the spool may hold'),
  policy: z.enum(['block', 'drop-oldest'], { error: 'must be block or drop-oldest' }).default('block')
    .describe('when full: block holds devices back; drop-oldest evicts the oldest, lowest-priority readings'),
  ttl: duration.optional().describe('default time to live of a reading; unset: forever'),
  expired: z.enum(['drop', 'dead-letter'], { error: 'must be drop or dead-letter' }).default('drop')
    .describe('what happens to a reading whose TTL passed'),
  maxAttempts: z.number().int().min(1).default(10)
    .describe('a reading the upstream returns as modified this many times is dead-lettered'),
  onCorrupt: z.enum(['fail', 'fresh'], { error: 'must be fail or fresh' }).default('fail')
    .describe('fail: refuse to start and leave a corrupt spool file as it is; fresh: move it aside (spool.db.corrupt-TIME) and start with an empty spool'),
});

export const TlsSchema = z.strictObject({
  ca: filePath.optional().describe('PEM file of the CA(s) that signed the broker certificate; the system CAs when unset'),
  cert: filePath.optional().describe('PEM file of the client certificate (needed for SASL EXTERNAL)'),
  key: filePath.optional().describe('PEM file of the client private key'),
  passphrase: z.string().min(1).optional().describe('passphrase of an encrypted key file (an unencrypted key readable only by the uplink user is usual)'),
  servername: z.string().min(1).optional().describe('name checked against the broker certificate; the URL host when unset'),
});

const upstreamUrl = z.string().regex(/^amqps?:\/\//i, 'must use the amqp:// or amqps:// scheme');

export const UpstreamSchema = z.strictObject({
  url: z.union([upstreamUrl, z.array(upstreamUrl).min(1, 'must list at least one URL')],
    { error: (issue) => (issue.input === undefined ? 'is required' : 'must be an amqp:// or amqps:// URL, or a list of them') })
    .describe('the AMQP 1.0 broker, amqp://host:port or amqps://host:port (TLS); or a list, tried in turn (failover)'),
  sasl: z.enum(['external', 'plain', 'anonymous'], { error: 'must be one of: external, plain, anonymous' })
    .default('external')
    .describe('SASL mechanism: external = the TLS client certificate is the identity'),
  tls: TlsSchema.optional(),
  username: z.string().min(1).optional().describe('for sasl: plain'),
  password: z.string().min(1).optional().describe('for sasl: plain'),
  allowInsecure: z.boolean().default(false)
    .describe('allow sasl: plain over amqp:// (the password crosses the network in clear text)'),
  idleTimeout: duration.pipe(z.number().min(100, 'must be at least 100ms').max(3_600_000, 'must be at most 1h')).prefault('20s')
    .describe('the broker must send something this often (heartbeats); a connection silent for twice this (+1 s) is taken for dead (half-open) and replaced'),
  maxLinks: z.number({ error: 'must be a whole number from 1 to 10000' }).int('must be a whole number from 1 to 10000').min(1, 'must be a whole number from 1 to 10000').max(10_000, 'must be a whole number from 1 to 10000').default(64)
    .describe('sender links (one per target address) open at once at most; more addresses wait for an idle link to close'),
  linkIdleTimeout: duration.pipe(z.number().min(100, 'must be at least 100ms')).prefault('5m')
    .describe('a sender link with nothing sent or unsettled for this long is closed (detach and end of its session)'),
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
  mqtt: MqttSchema.prefault({}).describe('the embedded MQTT broker that devices publish to'),
  serial: z.array(SerialPortSchema).default([]).describe('serial lines read as devices; each frame becomes a reading'),
  modbus: ModbusSchema.prefault({}).describe('Modbus RTU and TCP devices polled; each answer becomes a reading'),
  spool: SpoolSchema.prefault({}),
  upstream: UpstreamSchema.optional()
    .describe('where readings go; when unset, readings wait in the spool'),
  downlink: DownlinkSchema.optional()
    .describe('commands down to devices (MQTT subscribers, Modbus points), received over the upstream connection'),
  routes: z.array(RouteSchema).min(1, 'must have at least one route')
    .prefault([{ topic: '#', address: '/queue/telemetry' }])
    .describe('first match wins; a reading goes to the address of the first route whose topic filter matches'),
  http: z.strictObject({
    host: host.default('127.0.0.1'),
    port: port.default(9464),
  }).prefault({}).describe('GET /metrics, /healthz, /readyz, /status'),
});

/** The config as written: what `uplink.yaml` may contain. */
export type ConfigInput = z.input<typeof ConfigSchema>;
/** The config after validation and defaults, with relative paths resolved. */
export type Config = z.output<typeof ConfigSchema> & { gatewayId: string };
export type UpstreamConfig = NonNullable<Config['upstream']>;
export type RouteConfig = Config['routes'][number];
export type SpoolConfig = Config['spool'];
export type MqttConfig = Config['mqtt'];
export type ModbusConfig = Config['modbus'];
export type DownlinkConfig = NonNullable<Config['downlink']>;

/** The JSON Schema of `uplink.yaml`, as published for editors. */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(ConfigSchema, { io: 'input' }),
    title: 'uplink gateway configuration (uplink.yaml)',
  };
}
