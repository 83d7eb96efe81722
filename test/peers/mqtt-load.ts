/**
 * QoS 1 load from real MQTT clients (mqtt.js), each publish with a unique payload, recording which
 * packet id on which connection carried which payload (to read the gateway's PUBACKs in a trace)
 * and which publishes the client saw acknowledged. Stops publishing when the gateway goes away.
 */
import type { Socket } from 'node:net';
import mqtt from 'mqtt';

export interface LoadOptions {
  port: number;
  clients: number;
  perClient: number;
  /** In every payload, so that a trace or a spool file can be searched for them. */
  tag: string;
  /** Publishes each client keeps unacknowledged. */
  inFlight?: number;
  /** Bytes added to each payload (more WAL pages per reading). */
  padding?: number;
}

export interface LoadResult {
  /** `clientPort:packetId` → payload, for every PUBLISH the clients wrote. */
  sent: Map<string, string>;
  /** Payloads the clients got a PUBACK for. */
  acked: Set<string>;
  /** Payloads in publishing order. */
  payloads: string[];
}

/** Matches the payloads of a load with `tag` anywhere in a buffer read as latin1. */
export function payloadPattern(tag: string): RegExp {
  return new RegExp(`${tag}\\|\\d+\\|\\d{6}\\|`, 'g');
}

export async function qos1Load(options: LoadOptions): Promise<LoadResult> {
  const result: LoadResult = { sent: new Map(), acked: new Set(), payloads: [] };
  await Promise.all(Array.from({ length: options.clients }, (_, c) => oneClient(options, c, result)));
  return result;
}

async function oneClient(options: LoadOptions, c: number, result: LoadResult): Promise<void> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${options.port}`, {
    clientId: `${options.tag}-${c}`, reconnectPeriod: 0, connectTimeout: 10_000,
  });
  const localPort = (client.stream as Socket).localPort;
  let closed = false;
  const gone = new Promise<void>((resolve) => client.once('close', () => { closed = true; resolve(); }));
  client.on('packetsend', (packet) => {
    if (packet.cmd !== 'publish' || packet.messageId === undefined) return;
    const key = `${localPort}:${packet.messageId}`;
    if (result.sent.has(key)) throw new Error(`packet id ${key} used twice: the trace could not tell the publishes apart`);
    result.sent.set(key, String(packet.payload));
  });
  const window = new Set<Promise<void>>();
  const padding = 'p'.repeat(options.padding ?? 0);
  for (let n = 0; n < options.perClient && !closed; n++) {
    const payload = `${options.tag}|${c}|${String(n).padStart(6, '0')}|${padding}`;
    result.payloads.push(payload);
    const published = new Promise<void>((resolve) => {
      client.publish(`sensor/${options.tag}-${c}/temperature`, payload, { qos: 1 }, (err) => {
        if (!err) result.acked.add(payload);
        resolve();
      });
    });
    window.add(published);
    void published.then(() => window.delete(published));
    if (window.size >= (options.inFlight ?? 64)) await Promise.race([...window, gone]);
  }
  await Promise.race([Promise.all(window), gone]);
  // Calls back what is still unacknowledged (with an error) and closes the socket.
  await client.endAsync(true);
}
