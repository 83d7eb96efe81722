/**
 * MQTT ingest: an embedded aedes broker whose acknowledgements mean "on disk".
 *
 * The publish path (aedes lib/handlers/publish.js runs `authorizePublish`, then writes the PUBACK
 * (QoS 1) or stores the packet and writes the PUBREC (QoS 2), then publishes to local
 * subscribers). Our `authorizePublish` is where a reading enters the spool:
 *
 *   topic limits → $SYS and ACL → reading {id, topic, exact payload, receivedAt} → router.route()
 *   → PublishPipeline (arrival order, maxInFlight) → spool.append() committed → callback
 *
 * so the PUBACK/PUBREC is written only after the commit, and under `spool.policy: block` a full
 * spool holds the callback, hence the acknowledgement, hence the device. QoS 0 publishes take the
 * same path (nothing to acknowledge, but aedes reads no further from that socket until they are
 * committed, so a slow spool slows the device instead of losing readings).
 *
 * Routes: the first route in config order whose filter matches the topic (see route/router.ts);
 * a topic no route matches is counted (`rejected.unrouted`) and logged, then under
 * `unrouted: drop` acknowledged without being stored, under `refuse` the client is disconnected
 * without an acknowledgement. Either way it still reaches local subscribers only if acknowledged.
 *
 * Refusals close only the client concerned: a denied publish (ACL, $SYS) or an unrouted one under
 * refuse, a topic over the limits, an oversized or malformed packet (see frame-guard.ts). MQTT
 * 3.1.1 cannot say "no" to a PUBLISH, so closing (and not acknowledging) is the honest answer.
 * A denied SUBSCRIBE gets the failure code 0x80 in its SUBACK; a refused CONNECT a CONNACK code.
 *
 * Will messages are published as if the client had sent them: checked against the limits and the
 * ACL at CONNECT (refused with CONNACK 5), and when the connection drops, stored in the spool
 * (if routed) before local subscribers get them. Not on gateway shutdown: stop() drops them.
 *
 * Retained messages, subscriptions and QoS 1/2 queues of local subscribers live in aedes'
 * in-memory persistence: the broker stays a normal MQTT 3.1.1 broker for a local dashboard.
 */
import { BoundedCounts } from '../../core/bounded-counts.js';
import type { Duplex } from 'node:stream';
import { Aedes, type AedesOptions, type Client, type ConnectPacket, type PublishPacket, type Subscription } from 'aedes';
import type { RoutedReading } from '../../core/envelope.js';
import { GatewayError, messageOf } from '../../core/errors.js';
import { newReadingId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Router } from '../../route/router.js';
import type { Spool } from '../../spool/interface.js';
import type { IngestAdapter, IngestStats } from '../interface.js';
import { Acl } from './acl.js';
import { Authenticator } from './auth.js';
import { classifyClientError, Refusal } from './client-errors.js';
import { CommandPublisher, type MqttCommand, type MqttCommandResult } from './commands.js';
import type { MqttIngestConfig } from './config.js';
import { FrameGuard, type FrameProblem } from './frame-guard.js';
import { GuardedConnection, type ConnectionInfo } from './guarded-connection.js';
import { Listeners, type BoundListener } from './listeners.js';
import { PublishPipeline, type PipelineJob } from './publish-pipeline.js';
import { RateLimitedLog } from '../../core/rate-limited-log.js';
import { topicProblem } from './topic-limits.js';

export interface MqttIngestOptions {
  config: MqttIngestConfig;
  spool: Pick<Spool, 'append'>;
  router: Router;
  log: Logger;
  now?: () => number;
}

export interface MqttIngestStats extends IngestStats {
  /** Connections and subscriptions refused, by reason (`auth`, `max_connections`, `tls_handshake`, `will_denied`, `subscribe_denied`). */
  refused: Record<string, number>;
  /** Sockets open on all listeners, MQTT handshake done or not. */
  sockets: number;
}

/** One authenticated MQTT connection. */
interface Session {
  info: ConnectionInfo;
  clientId: string;
  username: string | undefined;
  /** Username, or certificate CN: what ACL entries name. */
  identity: string | undefined;
  pipeline: PublishPipeline;
  /** QoS 2 message ids whose append has not committed yet, for retransmissions. */
  pendingQos2: Map<number, Promise<void>>;
}

type Will = NonNullable<ConnectPacket['will']>;
type Persistence = { incomingGetPacket?: (client: Client, packet: { messageId?: number }) => Promise<unknown> };

/** How long a new connection may take to send CONNECT. */
const CONNECT_TIMEOUT_MS = 10_000;
/** aedes (its topic matcher) cannot go beyond 100 levels. */
const AEDES_MAX_TOPIC_LEVELS = 100;

export class MqttIngest implements IngestAdapter {
  readonly name = 'mqtt';
  readonly #config: MqttIngestConfig;
  readonly #spool: Pick<Spool, 'append'>;
  readonly #router: Router;
  readonly #log: Logger;
  readonly #limited: RateLimitedLog;
  readonly #now: () => number;
  readonly #auth: Authenticator;
  readonly #acl: Acl;
  readonly #sessions = new WeakMap<Client, Session>();
  readonly #wills = new WeakMap<Client, Will>();
  /** Per address: bounded, since `{N}` templates give one address per device. */
  readonly #ingested = new BoundedCounts();
  readonly #rejected: Record<string, number> = {};
  readonly #refused: Record<string, number> = {};
  readonly #commands = new CommandPublisher();
  #broker: Aedes | undefined;
  #listeners: Listeners | undefined;
  #stopping = false;

  constructor(options: MqttIngestOptions) {
    this.#config = options.config;
    this.#spool = options.spool;
    this.#router = options.router;
    this.#log = options.log;
    this.#limited = new RateLimitedLog(options.log);
    this.#now = options.now ?? Date.now;
    this.#auth = new Authenticator(options.config);
    this.#acl = new Acl(options.config.acl);
  }

  /** The listeners and the ports they are bound to (useful with port 0). */
  get listening(): BoundListener[] {
    return this.#listeners?.addresses ?? [];
  }

  async start(): Promise<void> {
    if (this.#broker !== undefined) throw new GatewayError('INTERNAL', 'mqtt ingest started twice');
    const config = this.#config;
    this.#stopping = false;
    const accounts = await this.#auth.load();
    if (config.maxTopicLevels > AEDES_MAX_TOPIC_LEVELS) {
      this.#log.warn({ maxTopicLevels: config.maxTopicLevels }, `mqtt.maxTopicLevels above ${AEDES_MAX_TOPIC_LEVELS} is not possible with aedes; ${AEDES_MAX_TOPIC_LEVELS} applies`);
    }
    const broker = await Aedes.createBroker(this.#brokerOptions());
    broker.on('clientError', (client, err) => this.#onClientError(client, err));
    broker.on('connectionError', (client, err) => this.#onClientError(client, err));
    broker.on('clientDisconnect', (client) => {
      const session = this.#sessions.get(client);
      if (session !== undefined) this.#log.debug(clientFields(session), 'mqtt client disconnected');
    });
    // aedes emits 'error' for failures of its in-memory persistence (not in its typings).
    (broker as unknown as NodeJS.EventEmitter).on('error', (err: Error) => this.#log.error({ err: err.message }, 'mqtt broker error'));
    this.#commands.attach(broker);
    this.#broker = broker;

    const guardLimits = { maxPayload: config.maxPayload, maxTopicLength: config.maxTopicLength };
    const listeners = new Listeners({
      config,
      maxWebSocketMessage: new FrameGuard(guardLimits).maxPacket,
      onConnection: (stream, info) => this.#accept(broker, stream, info, new FrameGuard(guardLimits)),
      onRefused: (reason, info, detail) => {
        this.#count(this.#refused, reason);
        this.#limited.write('warn', reason, { ...info, reason, ...(detail ? { detail } : {}) },
          reason === 'max_connections' ? `mqtt connection refused: mqtt.maxConnections (${config.maxConnections}) reached` : 'mqtt TLS handshake failed');
      },
    });
    this.#listeners = listeners;
    try {
      const bound = await listeners.open();
      this.#log.info({ listeners: bound, auth: config.auth, accounts, acl: config.acl?.length ?? 'everyone may do everything',
        maxPayload: config.maxPayload, maxConnections: config.maxConnections, unrouted: config.unrouted }, 'mqtt broker listening');
    } catch (err) {
      this.#listeners = undefined;
      this.#broker = undefined;
      await closeBroker(broker);
      throw err;
    }
  }

  async stop(): Promise<void> {
    const broker = this.#broker;
    const listeners = this.#listeners;
    this.#broker = undefined;
    this.#listeners = undefined;
    this.#stopping = true;
    this.#commands.detach();
    await listeners?.close();
    if (broker !== undefined) await closeBroker(broker);
  }

  /**
   * Publishes a command to the devices subscribed to its topic (commands.ts); resolves once they
   * confirmed it (QoS 1: PUBACK, QoS 2: PUBCOMP), or with why not.
   */
  async publishCommand(command: MqttCommand): Promise<MqttCommandResult> {
    const topic = command.topic;
    const problem = topic.length === 0 ? 'is empty' : /[+#]/.test(topic) || topic.includes('\u0000') ? 'has a wildcard or NUL' : topic.startsWith('$') ? 'starts with $ (reserved)'
      : topicProblem(topic, this.#config)?.detail;
    if (problem !== undefined) return { status: 'refused', code: 'invalid_topic', reason: `MQTT topic ${JSON.stringify(topic)} ${problem}` };
    const result = await this.#commands.publish(command);
    const fields = { topic, qos: command.qos, bytes: command.payload.length, status: result.status };
    if (result.status === 'done') this.#log.info({ ...fields, subscribers: result.result.subscribers }, 'mqtt command confirmed by its subscribers');
    else this.#log.warn({ ...fields, reason: result.reason }, 'mqtt command not done');
    return result;
  }

  stats(): MqttIngestStats {
    return {
      ingested: this.#ingested.toRecord(),
      rejected: { ...this.#rejected },
      refused: { ...this.#refused },
      connections: this.#broker?.connectedClients ?? 0,
      sockets: this.#listeners?.connections ?? 0,
    };
  }

  #brokerOptions(): AedesOptions {
    const config = this.#config;
    return {
      connectTimeout: CONNECT_TIMEOUT_MS,
      maxTopicLevels: AEDES_MAX_TOPIC_LEVELS,
      // Packets a client pipelines behind its CONNECT while the password is checked.
      queueLimit: Math.max(42, config.maxInFlight),
      preConnect: (client, packet, callback) => {
        if (packet.will) this.#wills.set(client, packet.will);
        callback(null, true);
      },
      authenticate: (client, username, password, callback) => {
        this.#authenticate(client, username, password).then(() => callback(null, true), (err: unknown) => {
          if (!(err instanceof Refusal)) {
            this.#log.error({ clientId: client.id, username, err: messageOf(err) }, 'mqtt: authentication could not be done (CONNACK 3)');
          }
          callback(toAuthError(err), false);
        });
      },
      authorizePublish: (client, packet, callback) => {
        try {
          this.#authorizePublish(client, packet, callback);
        } catch (err) {
          this.#log.error({ err: messageOf(err), topic: packet.topic }, 'mqtt: publish failed unexpectedly');
          callback(err instanceof Error ? err : new Error(String(err)));
        }
      },
      authorizeSubscribe: (client, subscription, callback) => {
        callback(null, this.#authorizeSubscribe(client, subscription));
      },
      authorizeForward: (client, packet) => this.#commands.forward(client, packet),
    };
  }

  #accept(broker: Aedes, stream: Duplex, info: ConnectionInfo, guard: FrameGuard): void {
    const connection = new GuardedConnection(stream, info, guard, (problem) => this.#onFrameProblem(connection, problem));
    connection.on('error', () => { /* the client's error handler reports it */ });
    broker.handle(connection);
  }

  // ---- connect ---------------------------------------------------------------------------

  async #authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> {
    const info = connectionInfo(client);
    const fields = { clientId: client.id, username, remoteAddress: info.remoteAddress, transport: info.transport };
    const result = await this.#auth.authenticate({ username, password, certCn: info.certCn });
    if (!result.ok) {
      this.#count(this.#refused, 'auth');
      this.#limited.write('warn', 'auth', { ...fields, reason: result.reason }, 'mqtt connection refused: authentication failed');
      throw new Refusal('auth', `authentication failed: ${result.reason}`, result.returnCode);
    }
    const subject = { identity: result.identity, clientId: client.id };
    const will = this.#wills.get(client);
    if (will !== undefined) {
      const problem = topicProblem(will.topic, this.#config)?.detail
        ?? (will.payload.length > this.#config.maxPayload ? `will payload of ${will.payload.length} bytes; mqtt.maxPayload is ${this.#config.maxPayload}` : undefined)
        ?? (will.topic.startsWith('$') || !this.#acl.allows(subject, 'publish', will.topic) ? `may not publish to ${will.topic}` : undefined);
      if (problem !== undefined) {
        this.#count(this.#refused, 'will_denied');
        this.#limited.write('warn', 'will_denied', { ...fields, identity: result.identity, willTopic: will.topic, reason: problem },
          'mqtt connection refused: its will message is not allowed');
        throw new Refusal('will_denied', `will not allowed: ${problem}`, 5);
      }
    }
    const session: Session = {
      info, clientId: client.id, username, identity: result.identity, pendingQos2: new Map(),
      pipeline: new PublishPipeline({ maxInFlight: this.#config.maxInFlight, append: (reading, signal) => this.#append(session, reading, signal) }),
    };
    this.#sessions.set(client, session);
    client.conn.once('close', () => session.pipeline.close());
    this.#log.debug({ ...fields, identity: result.identity }, 'mqtt client connected');
  }

  // ---- publish ---------------------------------------------------------------------------

  #authorizePublish(client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    if (client === null) {
      // A will left by another broker instance (aedes clusters); we run none.
      callback(new Error('no client'));
      return;
    }
    const session = this.#sessions.get(client);
    if (session === undefined) {
      callback(new Refusal('denied', 'publish before authentication'));
      return;
    }
    // aedes authorizes a will (once the connection is gone) with the object CONNECT carried.
    const isWill = packet === this.#wills.get(client);
    if (isWill && this.#stopping) {
      callback(new Refusal('will_dropped', 'the gateway is stopping'));
      return;
    }
    const topic = packet.topic;
    const limit = topicProblem(topic, this.#config);
    if (limit !== undefined) {
      callback(this.#refuse(session, limit.reason, topic, limit.detail));
      return;
    }
    if (topic.startsWith('$SYS/') || !this.#acl.allows(session, 'publish', topic)) {
      callback(this.#refuse(session, 'denied', topic, `may not publish to ${topic}`));
      return;
    }
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const receivedAt = this.#now();
    const reading = this.#router.route({ id: newReadingId(receivedAt), topic, payload, receivedAt });
    if (reading === undefined) {
      this.#count(this.#rejected, 'unrouted');
      if (this.#config.unrouted === 'refuse') {
        callback(this.#refuse(session, 'unrouted', topic, 'no route matches (mqtt.unrouted: refuse)', false));
        return;
      }
      this.#limited.write('warn', 'unrouted', { ...clientFields(session), topic }, 'mqtt publish dropped: no route matches its topic (mqtt.unrouted: drop)');
    }
    if (isWill) {
      if (reading === undefined) callback(null);
      else this.#append(session, [reading], undefined).then(() => callback(null), (err: Error) => callback(err));
      return;
    }
    const qos = packet.qos;
    const job: PipelineJob = { reading, qos };
    if (qos !== 2 || reading === undefined) {
      session.pipeline.submit(job, (err) => callback(err ?? null));
      return;
    }
    this.#submitQos2(client, session, packet, job, callback);
  }

  /**
   * A QoS 2 retransmission (DUP) of a publish whose PUBREL has not come yet is stored already
   * (aedes keeps it until PUBREL), or is on its way: it is acknowledged again, not stored twice.
   */
  #submitQos2(client: Client, session: Session, packet: PublishPacket, job: PipelineJob, callback: (error?: Error | null) => void): void {
    const messageId = packet.messageId ?? 0;
    const pending = session.pendingQos2.get(messageId);
    if (packet.dup) {
      const persistence = (this.#broker as unknown as { persistence?: Persistence } | undefined)?.persistence;
      job.check = pending !== undefined
        ? () => pending.then(() => false, () => true)
        : () => (persistence?.incomingGetPacket?.(client, { messageId }) ?? Promise.reject(new Error('no store'))).then(() => false, () => true);
    }
    const committed = new Promise<void>((resolve, reject) => {
      session.pipeline.submit(job, (err) => {
        if (err) reject(err);
        else resolve();
        callback(err ?? null);
      });
    });
    session.pendingQos2.set(messageId, committed);
    committed.catch(() => undefined).finally(() => {
      if (session.pendingQos2.get(messageId) === committed) session.pendingQos2.delete(messageId);
    });
  }

  async #append(session: Session, readings: RoutedReading[], signal: AbortSignal | undefined): Promise<void> {
    try {
      await this.#spool.append(readings, signal === undefined ? {} : { signal });
    } catch (err) {
      if (signal?.aborted) {
        this.#log.debug({ ...clientFields(session), readings: readings.length },
          'mqtt: connection closed while its readings waited for room; not acknowledged, the device sends them again');
        throw err;
      }
      const error = err instanceof GatewayError ? err : new GatewayError('INTERNAL', messageOf(err), { cause: err });
      this.#count(this.#rejected, 'spool_error', readings.length);
      this.#limited.write('error', 'spool_error', { ...clientFields(session), readings: readings.length, topic: readings[0]?.topic, code: error.code, err: error.message },
        'mqtt: readings not stored; closing the connection without acknowledging them');
      throw error;
    }
    for (const reading of readings) this.#ingested.add(reading.address);
  }

  // ---- subscribe -------------------------------------------------------------------------

  #authorizeSubscribe(client: Client, subscription: Subscription): Subscription | null {
    const session = this.#sessions.get(client);
    const filter = subscription.topic;
    const problem = topicProblem(filter, this.#config)?.detail
      ?? (session === undefined || !this.#acl.allows(session, 'subscribe', filter) ? `may not subscribe to ${filter}` : undefined);
    if (problem === undefined) return subscription;
    this.#count(this.#refused, 'subscribe_denied');
    this.#limited.write('warn', 'subscribe_denied', { ...(session ? clientFields(session) : { clientId: client.id }), filter, reason: problem },
      'mqtt subscription refused (SUBACK 0x80)');
    return null;
  }

  // ---- errors ----------------------------------------------------------------------------

  /** Counts and logs a refusal; the returned error makes aedes close the connection. */
  #refuse(session: Session, reason: string, topic: string, detail: string, count = true): Refusal {
    if (count) this.#count(this.#rejected, reason);
    this.#limited.write('warn', reason, { ...clientFields(session), topic, reason, detail }, 'mqtt publish refused; closing the connection');
    return new Refusal(reason, detail);
  }

  #onFrameProblem(connection: GuardedConnection, problem: FrameProblem): void {
    this.#count(this.#rejected, problem.reason);
    const client = (connection as unknown as { client?: Client }).client;
    const session = client === undefined ? undefined : this.#sessions.get(client);
    const fields = session !== undefined ? clientFields(session)
      : { clientId: client?.id ?? undefined, remoteAddress: connection.info.remoteAddress, transport: connection.info.transport };
    this.#limited.write('warn', problem.reason, { ...fields, reason: problem.reason, detail: problem.detail },
      'mqtt packet refused; closing the connection');
  }

  #onClientError(client: Client, err: Error): void {
    const kind = classifyClientError(err, client.closed);
    if (kind === 'handled') return;
    const session = this.#sessions.get(client);
    const info = client.conn instanceof GuardedConnection ? client.conn.info : undefined;
    const fields = session !== undefined ? clientFields(session)
      : { clientId: client.id ?? undefined, remoteAddress: info?.remoteAddress, transport: info?.transport };
    if (kind === 'gone') {
      this.#log.debug({ ...fields, err: err.message }, 'mqtt client connection closed');
      return;
    }
    this.#count(this.#rejected, 'malformed');
    this.#limited.write('warn', 'malformed', { ...fields, reason: 'malformed', detail: err.message }, 'mqtt protocol violation; closing the connection');
  }

  #count(record: Record<string, number>, key: string, n = 1): void {
    record[key] = (record[key] ?? 0) + n;
  }
}

function connectionInfo(client: Client): ConnectionInfo {
  const conn = client.conn;
  if (conn instanceof GuardedConnection) return conn.info;
  return { id: 0, transport: 'tcp', remoteAddress: 'unknown', remotePort: undefined };
}

function clientFields(session: Session): Record<string, unknown> {
  return { clientId: session.clientId, username: session.username, remoteAddress: session.info.remoteAddress, transport: session.info.transport };
}

/** The error aedes expects from authenticate: a CONNACK return code. */
function toAuthError(err: unknown): Error & { returnCode: number } {
  if (err instanceof Refusal && err.returnCode !== undefined) return Object.assign(err, { returnCode: err.returnCode });
  // Anything else (a bug, a failing scrypt): "server unavailable", the device may try again.
  return Object.assign(new Refusal('auth_error', `authentication could not be done: ${messageOf(err)}`, 3), { returnCode: 3 });
}

function closeBroker(broker: Aedes): Promise<void> {
  return new Promise((resolve) => broker.close(() => resolve()));
}
