/**
 * The brokers the data-path suite runs against, behind one shape: RabbitMQ 3.10 (Debian 12, AMQP
 * 1.0 plugin), RabbitMQ 4.0 (Debian 13 root, native AMQP 1.0) and ActiveMQ Classic 5.17 (Debian 12,
 * AMQP module added). Each is a real broker on free loopback ports with TLS and client
 * certificates required; what differs (address forms, SASL, the credit it grants) is said here.
 */
import type { Message } from 'rhea';
import { startActiveMq } from '../peers/activemq.js';
import { consume } from '../peers/amqp-consumer.js';
import type { TestPki } from '../peers/certs.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';
import { startRabbitMq4 } from '../peers/rabbitmq4.js';
import type { PipelineOptions } from '../upstream/pipeline.js';

export const PLAIN_USER = { name: 'gw-plain', password: 'correct horse battery staple' };

export interface BrokerUnderTest {
  /** `RabbitMQ 4.0`… */
  readonly name: string;
  readonly port: number;
  /** amqps://localhost:PORT (the server certificate names localhost). */
  readonly url: string;
  /** How the gateway logs in by default: EXTERNAL with the certificate's CN where the broker has it. */
  readonly login: Pick<NonNullable<PipelineOptions['upstream']>, 'sasl' | 'username' | 'password'>;
  /** The link credit the broker grants one sender, as rhea shows it. */
  readonly grantedCredit: number;
  readonly running: boolean;
  /**
   * `rabbitmqctl close_all_connections`; RabbitMQ only. 4.0 closes the AMQP connection (a close
   * frame, then the socket); 3.10's plugin only ends the session of each link (amqp:internal-error)
   * and keeps the connection: `closeEnds` says which.
   */
  closeConnections?(): Promise<void>;
  readonly closeEnds?: 'connection' | 'session';
  /** The address of a queue, in this broker's own form; the queue exists afterwards. */
  queue(name: string): Promise<string>;
  /** Deletes a queue and its messages, where the broker lets a test do that (RabbitMQ). */
  deleteQueue?(name: string): Promise<void>;
  /** Reads `count` messages back from the queue (accepting each). */
  consume(name: string, count: number, idleMs?: number): Promise<Message[]>;
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  destroy(): Promise<void>;
}

export interface BrokerKind {
  name: string;
  start(pki: TestPki): Promise<BrokerUnderTest>;
}

function rabbit(peer: RabbitMqPeer, pki: TestPki, v2: boolean): BrokerUnderTest {
  return {
    name: peer.product,
    port: peer.amqpsPort,
    url: `amqps://localhost:${peer.amqpsPort}`,
    login: { sasl: 'external' },
    // 3.10 grants 65536 and rhea's session buffer holds 2048; 4.0 grants 170 (FACTS.md).
    grantedCredit: v2 ? 170 : 65536,
    get running() { return peer.running; },
    closeConnections: async () => { await peer.ctl(['close_all_connections', 'closed by the test']); },
    closeEnds: v2 ? 'connection' : 'session',
    deleteQueue: (name) => peer.deleteQueue(name),
    async queue(name) {
      // 4.x: /queues/Q needs the queue to exist; 3.10: /queue/Q declares it (durable terminus).
      if (!v2) return `/queue/${name}`;
      await peer.declareQueue(name);
      return `/queues/${encodeURIComponent(name)}`;
    },
    consume: (name, count, idleMs) => consume({ host: '127.0.0.1', port: peer.amqpsPort, pki, count,
      address: v2 ? `/queues/${encodeURIComponent(name)}` : `/queue/${name}`, ...(idleMs ? { idleMs } : {}) }),
    stop: () => peer.stop(),
    start: () => peer.start(),
    restart: () => peer.restart(),
    destroy: () => peer.destroy(),
  };
}

export const RABBITMQ_3: BrokerKind = {
  name: 'RabbitMQ 3.10',
  start: async (pki) => rabbit(await startRabbitMq({ pki, passwordUsers: [PLAIN_USER] }), pki, false),
};

export const RABBITMQ_4: BrokerKind = {
  name: 'RabbitMQ 4.0',
  start: async (pki) => rabbit(await startRabbitMq4({ pki, passwordUsers: [PLAIN_USER] }), pki, true),
};

export const ACTIVEMQ: BrokerKind = {
  name: 'ActiveMQ 5.17',
  async start(pki) {
    const peer = await startActiveMq({ pki, users: [PLAIN_USER] });
    const plain = { username: PLAIN_USER.name, password: PLAIN_USER.password };
    return {
      name: 'ActiveMQ 5.17',
      port: peer.amqpsPort,
      url: `amqps://localhost:${peer.amqpsPort}`,
      login: { sasl: 'plain', ...plain },
      grantedCredit: 1000,
      get running() { return peer.running; },
      // A queue comes into being with its first producer or consumer.
      queue: async (name) => `queue://${name}`,
      consume: (name, count, idleMs) => consume({ host: '127.0.0.1', port: peer.amqpsPort, pki, count, plain,
        address: `queue://${name}`, ...(idleMs ? { idleMs } : {}) }),
      stop: () => peer.stop(),
      start: () => peer.start(),
      restart: () => peer.restart(),
      destroy: () => peer.destroy(),
    };
  },
};

export const ALL_BROKERS = [RABBITMQ_3, RABBITMQ_4, ACTIVEMQ];
