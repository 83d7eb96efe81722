/**
 * The test's own AMQP 1.0 client to the RabbitMQ peer (TLS + SASL EXTERNAL): it publishes
 * downlink commands, declares queues, and reads a queue's ready and unacknowledged counts.
 */
import { readFileSync } from 'node:fs';
import rhea, { type Connection, type ConnectionOptions, type EventContext } from 'rhea';
import type { TestPki } from '../peers/certs.js';
import type { RabbitMqPeer } from '../peers/rabbitmq.js';

function connect(pki: TestPki, port: number): Promise<Connection> {
  const container = rhea.create_container({ id: `test-publisher-${process.pid}-${Date.now()}` });
  const connection = container.connect({
    transport: 'tls', host: '127.0.0.1', port, servername: 'localhost',
    ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key),
    enable_sasl_external: true, reconnect: false,
  } as unknown as ConnectionOptions);
  return new Promise((resolve, reject) => {
    connection.once('connection_open', () => resolve(connection));
    connection.once('connection_error', (ctx: EventContext) => reject(new Error(`publisher: ${JSON.stringify(ctx.connection.error)}`)));
    connection.once('disconnected', (ctx: EventContext) => reject(new Error(`publisher disconnected: ${String(ctx.error ?? '')}`)));
  });
}

function close(connection: Connection): void {
  connection.removeAllListeners('disconnected');
  connection.on('disconnected', () => {});
  connection.close();
}

/** Sends `messages` to `address` (a durable queue) and resolves once the broker accepted each. */
export async function publish(pki: TestPki, port: number, address: string, messages: Array<Record<string, unknown>>): Promise<void> {
  const connection = await connect(pki, port);
  try {
    await new Promise<void>((resolve, reject) => {
      const sender = connection.open_sender({ target: { address, durable: 2 } });
      let next = 0;
      let accepted = 0;
      const send = (): void => {
        while (next < messages.length && sender.sendable()) sender.send({ durable: true, ...messages[next++] } as never);
      };
      sender.on('sendable', send);
      sender.on('accepted', () => {
        accepted += 1;
        if (accepted === messages.length) resolve();
      });
      sender.on('rejected', (ctx: EventContext) => reject(new Error(`publish rejected: ${JSON.stringify(ctx.delivery?.remote_state)}`)));
      sender.on('released', () => reject(new Error('publish released')));
    });
  } finally {
    close(connection);
  }
}

/** Declares the durable queue behind `/queue/NAME` by attaching a receiver to it. */
export async function declareQueue(pki: TestPki, port: number, name: string): Promise<void> {
  const connection = await connect(pki, port);
  try {
    await new Promise<void>((resolve) => {
      const receiver = connection.open_receiver({ source: { address: `/queue/${name}`, durable: 2 }, credit_window: 0 });
      receiver.once('receiver_open', () => resolve());
    });
  } finally {
    close(connection);
  }
}

/** Ready and unacknowledged messages of a queue (one rabbitmqctl run). */
export async function queueCounts(peer: RabbitMqPeer, name: string): Promise<{ ready: number; unacked: number } | undefined> {
  const out = await peer.ctl(['list_queues', '-q', '--no-table-headers', 'name', 'messages_ready', 'messages_unacknowledged']);
  for (const line of out.split('\n')) {
    const [queue, ready, unacked] = line.trim().split(/\s+/);
    if (queue === name) return { ready: Number(ready), unacked: Number(unacked) };
  }
  return undefined;
}
