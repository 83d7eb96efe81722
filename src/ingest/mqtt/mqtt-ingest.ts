/**
 * MQTT ingest: an embedded aedes broker whose acknowledgements mean "on disk".
 *
 * - broker.ts: the aedes broker, its options and hooks;
 * - sessions.ts: who is behind a connection, settled at CONNECT (auth, the will checked);
 * - publish-steps.ts: the steps of a PUBLISH into the spool, and why in that order (topic limits,
 *   ACL, route, unrouted policy, QoS 2 dedupe (qos2.ts), submit to the connection's pipeline
 *   (publish-pipeline.ts)): the PUBACK/PUBREC is written only once the reading is committed;
 * - listeners.ts, frame-guard.ts: the sockets, and limits enforced before bytes are buffered;
 * - commands.ts: commands published to subscribed devices (the downlink).
 *
 * Refusals close only the client concerned: a denied publish (ACL, $SYS) or an unrouted one under
 * refuse, a topic over the limits, an oversized or malformed packet (see frame-guard.ts). MQTT
 * 3.1.1 cannot say "no" to a PUBLISH, so closing (and not acknowledging) is the honest answer.
 * A denied SUBSCRIBE gets the failure code 0x80 in its SUBACK; a refused CONNECT a CONNACK code.
 *
 * Will messages are published as if the client had sent them: checked against the limits and the
 * ACL at CONNECT (refused with CONNACK 5), and when the connection drops, stored in the spool
 * (if routed) before local subscribers get them. Not on gateway shutdown: stop() drops them.
 */
import type { Duplex } from 'node:stream';
import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';
import { BoundedCounts } from '../../core/bounded-counts.js';
import type { RoutedReading } from '../../core/envelope.js';
import { GatewayError, messageOf } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { RateLimitedLog } from '../../core/rate-limited-log.js';
import type { Router } from '../../route/router.js';
import type { Spool } from '../../spool/interface.js';
import type { IngestAdapter, IngestStats } from '../interface.js';
import { Acl } from './acl.js';
import { Authenticator } from './auth.js';
import { AEDES_MAX_TOPIC_LEVELS, closeBroker, heldByBroker, startBroker } from './broker.js';
import { classifyClientError, Refusal } from './client-errors.js';
import { CommandPublisher, type MqttCommand, type MqttCommandResult } from './commands.js';
import type { MqttIngestConfig } from './config.js';
import { FrameGuard, type FrameProblem } from './frame-guard.js';
import { GuardedConnection, type ConnectionInfo } from './guarded-connection.js';
import { Listeners, type BoundListener } from './listeners.js';
import { runPublish, type PublishEnv } from './publish-steps.js';
import { clientFields, Sessions, type Session } from './sessions.js';
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

export class MqttIngest implements IngestAdapter {
  readonly name = 'mqtt';
  readonly #config: MqttIngestConfig;
  readonly #spool: Pick<Spool, 'append'>;
  readonly #log: Logger;
  readonly #limited: RateLimitedLog;
  readonly #auth: Authenticator;
  readonly #acl: Acl;
  readonly #sessions: Sessions;
  readonly #publishEnv: PublishEnv;
  /** Per address: bounded, since `{N}` templates give one address per device. */
  readonly #ingested = new BoundedCounts();
  readonly #rejected: Record<string, number> = {};
  readonly #refused: Record<string, number> = {};
  readonly #commands = new CommandPublisher();
  #broker: Aedes | undefined;
  #listeners: Listeners | undefined;
  #stopping = false;

  constructor(options: MqttIngestOptions) {
    const config = options.config;
    this.#config = config;
    this.#spool = options.spool;
    this.#log = options.log;
    this.#limited = new RateLimitedLog(options.log);
    this.#auth = new Authenticator(config);
    this.#acl = new Acl(config.acl);
    const append = (session: Session, readings: RoutedReading[], signal: AbortSignal | undefined): Promise<void> => this.#append(session, readings, signal);
    this.#sessions = new Sessions({
      config, auth: this.#auth, acl: this.#acl, log: this.#log, limited: this.#limited, append,
      refused: (reason) => this.#count(this.#refused, reason),
    });
    const now = options.now ?? Date.now;
    this.#publishEnv = {
      limits: config, unrouted: config.unrouted, acl: this.#acl, router: options.router, log: this.#limited, now, append,
      stopping: () => this.#stopping,
      rejected: (reason) => this.#count(this.#rejected, reason),
      heldByBroker: (client, messageId) => heldByBroker(this.#broker, client, messageId),
    };
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
    const broker = await startBroker({
      maxInFlight: config.maxInFlight, sessions: this.#sessions, log: this.#log,
      authorizePublish: (client, packet, callback) => this.#authorizePublish(client, packet, callback),
      authorizeSubscribe: (client, subscription) => this.#authorizeSubscribe(client, subscription),
      authorizeForward: (client, packet) => this.#commands.forward(client, packet),
      onClientError: (client, err) => this.#onClientError(client, err),
      onClientDisconnect: (client) => {
        const session = this.#sessions.get(client);
        if (session !== undefined) this.#log.debug(clientFields(session), 'mqtt client disconnected');
      },
    });
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

  #accept(broker: Aedes, stream: Duplex, info: ConnectionInfo, guard: FrameGuard): void {
    const connection = new GuardedConnection(stream, info, guard, (problem) => this.#onFrameProblem(connection, problem));
    connection.on('error', () => { /* the client's error handler reports it */ });
    broker.handle(connection);
  }

  /** aedes' authorizePublish: the publish steps (publish-steps.ts), for a client that authenticated. */
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
    runPublish({ client, session, packet, will: this.#sessions.isWill(client, packet), done: callback }, this.#publishEnv);
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
