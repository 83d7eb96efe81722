/**
 * The embedded aedes broker: its options, its hooks wired to the ingest (sessions at CONNECT, the
 * publish steps, subscribe and forward authorization) and its events. Retained messages,
 * subscriptions and the QoS 1/2 queues of local subscribers stay in aedes' in-memory persistence:
 * the broker is a normal MQTT 3.1.1 broker for a local dashboard too.
 */
import { Aedes, type AedesOptions, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import { messageOf } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { Refusal } from './client-errors.js';
import type { Sessions } from './sessions.js';

/** How long a new connection may take to send CONNECT. */
const CONNECT_TIMEOUT_MS = 10_000;
/** aedes (its topic matcher) cannot go beyond 100 levels. */
export const AEDES_MAX_TOPIC_LEVELS = 100;

export interface BrokerOptions {
  /** mqtt.maxInFlight: also how many packets a client may pipeline behind its CONNECT. */
  maxInFlight: number;
  sessions: Pick<Sessions, 'preConnect' | 'authenticate'>;
  log: Logger;
  /** aedes' authorizePublish: calls back once the publish is stored, or with the error that closes the client. */
  authorizePublish: (client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void) => void;
  /** The subscription as granted, or null for a failure code 0x80 in the SUBACK. */
  authorizeSubscribe: (client: Client, subscription: Subscription) => Subscription | null;
  authorizeForward: (client: Client, packet: AedesPublishPacket) => AedesPublishPacket | null | undefined;
  /** A client closed with an error (aedes' clientError and connectionError). */
  onClientError: (client: Client, error: Error) => void;
  onClientDisconnect: (client: Client) => void;
}

export async function startBroker(options: BrokerOptions): Promise<Aedes> {
  const { sessions, log } = options;
  const aedesOptions: AedesOptions = {
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxTopicLevels: AEDES_MAX_TOPIC_LEVELS,
    // Packets a client pipelines behind its CONNECT while the password is checked.
    queueLimit: Math.max(42, options.maxInFlight),
    preConnect: (client, packet, callback) => {
      sessions.preConnect(client, packet);
      callback(null, true);
    },
    authenticate: (client, username, password, callback) => {
      sessions.authenticate(client, username, password).then(() => callback(null, true), (err: unknown) => {
        if (!(err instanceof Refusal)) {
          log.error({ clientId: client.id, username, err: messageOf(err) }, 'mqtt: authentication could not be done (CONNACK 3)');
        }
        callback(toAuthError(err), false);
      });
    },
    authorizePublish: (client, packet, callback) => {
      try {
        options.authorizePublish(client, packet, callback);
      } catch (err) {
        log.error({ err: messageOf(err), topic: packet.topic }, 'mqtt: publish failed unexpectedly');
        callback(err instanceof Error ? err : new Error(String(err)));
      }
    },
    authorizeSubscribe: (client, subscription, callback) => {
      callback(null, options.authorizeSubscribe(client, subscription));
    },
    authorizeForward: (client, packet) => options.authorizeForward(client, packet),
  };
  const broker = await Aedes.createBroker(aedesOptions);
  broker.on('clientError', options.onClientError);
  broker.on('connectionError', options.onClientError);
  broker.on('clientDisconnect', options.onClientDisconnect);
  // aedes emits 'error' for failures of its in-memory persistence (not in its typings).
  (broker as unknown as NodeJS.EventEmitter).on('error', (err: Error) => log.error({ err: err.message }, 'mqtt broker error'));
  return broker;
}

export function closeBroker(broker: Aedes): Promise<void> {
  return new Promise((resolve) => broker.close(() => resolve()));
}

type Persistence = { incomingGetPacket?: (client: Client, packet: { messageId?: number }) => Promise<unknown> };

/**
 * Resolves when aedes' store holds the QoS 2 packet `messageId` of `client` (from its PUBREC until
 * the PUBREL), rejects when not. `persistence` is not in aedes' typings (test/internals/aedes.test.ts).
 */
export function heldByBroker(broker: Aedes | undefined, client: Client, messageId: number): Promise<unknown> {
  const persistence = (broker as unknown as { persistence?: Persistence } | undefined)?.persistence;
  return persistence?.incomingGetPacket?.(client, { messageId }) ?? Promise.reject(new Error('no store'));
}

/** The error aedes expects from authenticate: a CONNACK return code. */
function toAuthError(err: unknown): Error & { returnCode: number } {
  if (err instanceof Refusal && err.returnCode !== undefined) return Object.assign(err, { returnCode: err.returnCode });
  // Anything else (a bug, a failing scrypt): "server unavailable", the device may try again.
  return Object.assign(new Refusal('auth_error', `authentication could not be done: ${messageOf(err)}`, 3), { returnCode: 3 });
}
