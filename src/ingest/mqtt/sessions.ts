/**
 * Who is behind each MQTT connection, settled at CONNECT (aedes' preConnect and authenticate
 * hooks). An authenticated connection gets its Session: its identity (the username, or the CN of
 * its certificate: what ACL entries name), the pipeline its publishes take into the spool, and
 * its QoS 2 window. A connection without a Session may not publish or subscribe.
 *
 * A will message is checked here, at CONNECT, against the limits and the ACL, and refused with
 * CONNACK 5: it is published when the connection drops, when nobody could be told it was refused.
 */
import type { Client, ConnectPacket } from 'aedes';
import type { RoutedReading } from '../../core/envelope.js';
import type { Logger } from '../../core/logger.js';
import type { RateLimitedLog } from '../../core/rate-limited-log.js';
import type { Acl } from './acl.js';
import type { Authenticator } from './auth.js';
import { Refusal } from './client-errors.js';
import type { MqttIngestConfig } from './config.js';
import { GuardedConnection, type ConnectionInfo } from './guarded-connection.js';
import { PublishPipeline } from './publish-pipeline.js';
import { Qos2Window } from './qos2.js';
import { topicProblem } from './topic-limits.js';

/** One authenticated MQTT connection. */
export interface Session {
  info: ConnectionInfo;
  clientId: string;
  username: string | undefined;
  /** Username, or certificate CN: what ACL entries name. */
  identity: string | undefined;
  pipeline: PublishPipeline;
  qos2: Qos2Window;
}

type Will = NonNullable<ConnectPacket['will']>;

export interface SessionsOptions {
  config: Pick<MqttIngestConfig, 'maxTopicLength' | 'maxTopicLevels' | 'maxPayload' | 'maxInFlight'>;
  auth: Pick<Authenticator, 'authenticate'>;
  acl: Pick<Acl, 'allows'>;
  log: Logger;
  limited: Pick<RateLimitedLog, 'write'>;
  /** Counts a refused connection, by reason (`auth`, `will_denied`). */
  refused: (reason: string) => void;
  /** Stores the readings of a session's pipeline (resolves once committed). */
  append: (session: Session, readings: RoutedReading[], signal: AbortSignal | undefined) => Promise<void>;
}

export class Sessions {
  readonly #options: SessionsOptions;
  readonly #sessions = new WeakMap<Client, Session>();
  readonly #wills = new WeakMap<Client, Will>();

  constructor(options: SessionsOptions) {
    this.#options = options;
  }

  /** aedes' preConnect: remembers the will, which authenticate() checks. */
  preConnect(client: Client, packet: ConnectPacket): void {
    if (packet.will) this.#wills.set(client, packet.will);
  }

  /** aedes' authenticate: resolves with the client's Session made, or rejects with a Refusal (a CONNACK code). */
  async authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> {
    const { config, acl, limited } = this.#options;
    const info = connectionInfo(client);
    const fields = { clientId: client.id, username, remoteAddress: info.remoteAddress, transport: info.transport };
    const result = await this.#options.auth.authenticate({ username, password, certCn: info.certCn });
    if (!result.ok) {
      this.#options.refused('auth');
      limited.write('warn', 'auth', { ...fields, reason: result.reason }, 'mqtt connection refused: authentication failed');
      throw new Refusal('auth', `authentication failed: ${result.reason}`, result.returnCode);
    }
    const subject = { identity: result.identity, clientId: client.id };
    const will = this.#wills.get(client);
    if (will !== undefined) {
      const problem = topicProblem(will.topic, config)?.detail
        ?? (will.payload.length > config.maxPayload ? `will payload of ${will.payload.length} bytes; mqtt.maxPayload is ${config.maxPayload}` : undefined)
        ?? (will.topic.startsWith('$') || !acl.allows(subject, 'publish', will.topic) ? `may not publish to ${will.topic}` : undefined);
      if (problem !== undefined) {
        this.#options.refused('will_denied');
        limited.write('warn', 'will_denied', { ...fields, identity: result.identity, willTopic: will.topic, reason: problem },
          'mqtt connection refused: its will message is not allowed');
        throw new Refusal('will_denied', `will not allowed: ${problem}`, 5);
      }
    }
    const session: Session = {
      info, clientId: client.id, username, identity: result.identity, qos2: new Qos2Window(),
      pipeline: new PublishPipeline({ maxInFlight: config.maxInFlight, append: (reading, signal) => this.#options.append(session, reading, signal) }),
    };
    this.#sessions.set(client, session);
    client.conn.once('close', () => session.pipeline.close());
    this.#options.log.debug({ ...fields, identity: result.identity }, 'mqtt client connected');
  }

  get(client: Client): Session | undefined {
    return this.#sessions.get(client);
  }

  /** aedes publishes a client's will (once the connection is gone) with the very object CONNECT carried. */
  isWill(client: Client, packet: object): boolean {
    return packet === this.#wills.get(client);
  }
}

function connectionInfo(client: Client): ConnectionInfo {
  const conn = client.conn;
  if (conn instanceof GuardedConnection) return conn.info;
  return { id: 0, transport: 'tcp', remoteAddress: 'unknown', remotePort: undefined };
}

/** The fields of a log line about the client of `session`. */
export function clientFields(session: Session): Record<string, unknown> {
  return { clientId: session.clientId, username: session.username, remoteAddress: session.info.remoteAddress, transport: session.info.transport };
}
