/**
 * Test harness for MQTT ingest: the real MqttIngest on port 0 (free loopback ports, never the
 * standard ones), on a real SqliteSpool in a temporary directory or on a HeldSpool whose appends
 * commit only when the test says so, plus raw-socket and mosquitto_pub helpers.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { MqttSchema } from '../../../src/config/schema.js';
import type { RoutedReading } from '../../../src/core/envelope.js';
import type { MqttIngestConfig } from '../../../src/ingest/mqtt/config.js';
import { MqttIngest } from '../../../src/ingest/mqtt/index.js';
import { Router, type Route } from '../../../src/route/router.js';
import type { Spool, SpooledReading } from '../../../src/spool/interface.js';
import { SqliteSpool, type SqliteSpoolOptions } from '../../../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../../peers/memory-log.js';
import { leaseAll } from '../../spool/lease-all.js';
import { spoolOptions } from '../../spool/options.js';
import { remainingLength, str } from './raw-packets.js';

export const DEFAULT_ROUTES: Route[] = [{ topic: '#', address: '/queue/telemetry', priority: 4 }];

/** The mqtt config as the schema makes it from `input`, with every listener on port 0. */
export function mqttConfig(input: Record<string, unknown> = {}): MqttIngestConfig {
  const config: MqttIngestConfig = MqttSchema.parse(input);
  config.port = 0;
  if (config.tls) config.tls.port = 0;
  if (config.websocket) config.websocket.port = 0;
  return config;
}

/** A spool whose appends wait until released: to see what happens before a commit. */
export class HeldSpool implements Pick<Spool, 'append'> {
  readonly calls: Array<{ readings: readonly RoutedReading[]; signal?: AbortSignal; settled: boolean; resolve(): void; reject(err: Error): void }> = [];
  /** Readings of the appends that were released, in commit order. */
  readonly committed: RoutedReading[] = [];

  append(readings: readonly RoutedReading[], options: { signal?: AbortSignal } = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const call = {
        readings, settled: false,
        resolve: () => { call.settled = true; this.committed.push(...readings); resolve(); },
        reject: (err: Error) => { call.settled = true; reject(err); },
        ...(options.signal ? { signal: options.signal } : {}),
      };
      options.signal?.addEventListener('abort', () => { if (!call.settled) call.reject(new Error('aborted')); }, { once: true });
      this.calls.push(call);
    });
  }

  get pending(): number {
    return this.calls.filter((c) => !c.settled).reduce((n, c) => n + c.readings.length, 0);
  }

  /** Commits every append waiting now (or the first `count` of them). */
  release(count = Infinity): void {
    for (const call of this.calls) {
      if (count <= 0) break;
      if (call.settled) continue;
      call.resolve();
      count -= 1;
    }
  }
}

export interface Harness {
  ingest: MqttIngest;
  port: number;
  tlsPort: number | undefined;
  wsPort: number | undefined;
  /** The real spool, unless the test passed its own. */
  spool: SqliteSpool | undefined;
  lines: Array<Record<string, unknown>>;
  url: string;
  /** Everything in the spool for `address`, in order (leases it). */
  spooled(address?: string): Promise<SpooledReading[]>;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  config?: Record<string, unknown>;
  routes?: Route[];
  spool?: Pick<Spool, 'append'>;
  spoolOptions?: Partial<SqliteSpoolOptions>;
  now?: () => number;
}

export async function startIngest(options: HarnessOptions = {}): Promise<Harness> {
  const { log, lines } = memoryLogger();
  const dir = await mkdtemp(join(tmpdir(), 'uplink-mqtt-'));
  let spool: SqliteSpool | undefined;
  if (options.spool === undefined) {
    spool = new SqliteSpool(spoolOptions(dir, options.spoolOptions));
    await spool.start();
  }
  const ingest = new MqttIngest({
    config: mqttConfig(options.config), spool: options.spool ?? spool!, log,
    router: new Router({ routes: options.routes ?? DEFAULT_ROUTES }),
    ...(options.now ? { now: options.now } : {}),
  });
  try {
    await ingest.start();
  } catch (err) {
    await spool?.stop();
    throw err;
  }
  const port = (kind: string): number | undefined => ingest.listening.find((l) => l.kind === kind)?.port;
  return {
    ingest, spool, lines,
    port: port('tcp')!, tlsPort: port('tls'), wsPort: port('websocket'),
    url: `mqtt://127.0.0.1:${port('tcp')}`,
    spooled: async (address = '/queue/telemetry') => (spool ? leaseAll(spool, address) : []),
    stop: async () => {
      await ingest.stop();
      await spool?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export const CLIENT_DEFAULTS = { reconnectPeriod: 0, connectTimeout: 5000, keepalive: 30 } as const;

export function connectClient(url: string, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(url, { ...CLIENT_DEFAULTS, ...options });
}

/** `promise`, or a rejection after `ms`: a test that waits for something that never comes fails, never hangs. */
export function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves when `client` has closed its connection (or the broker closed it). */
export function closed(client: mqtt.MqttClient): Promise<void> {
  if (!client.connected && client.disconnected) return Promise.resolve();
  return within(new Promise((resolve) => client.once('close', () => resolve())), 'the connection to close');
}

export function publishAsync(client: mqtt.MqttClient, topic: string, payload: string | Buffer, qos: 0 | 1 | 2 = 1): Promise<void> {
  return within(new Promise((resolve, reject) => client.publish(topic, payload, { qos }, (err) => (err ? reject(err) : resolve()))),
    `the acknowledgement of a publish to ${topic}`);
}

/** The QoS granted for `filter`, or 128 when the broker refused it. */
export function subscribeGranted(client: mqtt.MqttClient, filter: string, qos: 0 | 1 | 2 = 1): Promise<number> {
  return new Promise((resolve, reject) => {
    client.subscribe(filter, { qos }, (err, granted) => {
      const refused = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted?.[0];
      if (refused !== undefined) resolve(refused);
      else if (err) reject(err);
      else resolve(granted?.[0]?.qos ?? -1);
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitFor(condition: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export function logged(lines: Array<Record<string, unknown>>, match: (line: Record<string, unknown>) => boolean): Record<string, unknown> | undefined {
  return lines.find(match);
}

// ---- raw MQTT 3.1.1 bytes ---------------------------------------------------------------

export function connectPacket(clientId: string, options: { username?: string; password?: string } = {}): Buffer {
  let flags = 0x02; // clean session
  if (options.username !== undefined) flags |= 0x80;
  if (options.password !== undefined) flags |= 0x40;
  const variable = Buffer.concat([str('MQTT'), Buffer.from([4, flags, 0, 60])]);
  const payload = Buffer.concat([str(clientId),
    ...(options.username !== undefined ? [str(options.username)] : []),
    ...(options.password !== undefined ? [str(options.password)] : [])]);
  const body = Buffer.concat([variable, payload]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

export function publishPacket(topic: string, payload: Buffer | string, qos: 0 | 1 | 2 = 0, messageId = 1): Buffer {
  const id = Buffer.alloc(qos > 0 ? 2 : 0);
  if (qos > 0) id.writeUInt16BE(messageId);
  const body = Buffer.concat([str(topic), id, Buffer.from(payload)]);
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), remainingLength(body.length), body]);
}

/** Just the fixed header and topic of a PUBLISH that claims `payloadBytes` of payload. */
export function publishHeader(topic: string, payloadBytes: number, qos: 0 | 1 = 1): Buffer {
  const t = str(topic);
  const id = qos > 0 ? Buffer.from([0, 1]) : Buffer.alloc(0);
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), remainingLength(t.length + id.length + payloadBytes), t, id]);
}

export interface RawClient {
  socket: Socket;
  received: Buffer[];
  /** Resolves when the broker closed the connection; fails after 10 s. */
  closed(): Promise<void>;
  isClosed(): boolean;
  /** Resolves once the bytes received so far include `bytes`. */
  waitFor(bytes: Buffer, timeoutMs?: number): Promise<void>;
}

export const CONNACK_OK = Buffer.from([0x20, 0x02, 0x00, 0x00]);

export async function rawClient(port: number): Promise<RawClient> {
  const socket = netConnect(port, '127.0.0.1');
  socket.on('error', () => { /* reset by the broker: seen as close */ });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const received: Buffer[] = [];
  let isClosed = false;
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  const closedPromise = new Promise<void>((resolve) => socket.once('close', () => { isClosed = true; resolve(); }));
  return {
    socket, received, closed: () => within(closedPromise, 'the broker to close the connection'), isClosed: () => isClosed,
    waitFor: (bytes, timeoutMs = 5000) => waitFor(() => Buffer.concat(received).includes(bytes), timeoutMs, `bytes ${bytes.toString('hex')}`),
  };
}

// ---- mosquitto clients -------------------------------------------------------------------

export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs mosquitto_pub/mosquitto_sub (asynchronously: the broker runs in this process). */
export function mosquitto(command: 'mosquitto_pub' | 'mosquitto_sub', args: string[], timeoutMs = 10_000): Promise<ProcessResult> & { kill(): void } {
  let child: ReturnType<typeof execFile> | undefined;
  const promise = new Promise<ProcessResult>((resolve) => {
    child = execFile(command, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null;
      resolve({ code, stdout, stderr });
    });
  });
  return Object.assign(promise, { kill: () => child?.kill() });
}
