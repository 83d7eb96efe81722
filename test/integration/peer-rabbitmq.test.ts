// Proves the private RabbitMQ test peer is what the upstream tests need: AMQP 1.0 over TLS with
// SASL EXTERNAL for a known certificate, refusal of anything else, and durable data across a restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import rhea from 'rhea';
import type { Connection, ConnectionOptions, EventContext, Message } from 'rhea';
import { makeTestPki, type CertPair, type TestPki } from '../peers/certs.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';

const STEP_MS = 10_000;

let pki: TestPki | undefined;
let peer: RabbitMqPeer | undefined;

before(async () => {
  pki = await makeTestPki();
  peer = await startRabbitMq({ pki });
});

after(async () => {
  await peer?.destroy();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

function setup(): { pki: TestPki; peer: RabbitMqPeer } {
  assert.ok(pki && peer, 'before() did not finish');
  return { pki, peer };
}

/** How one connection attempt ended: opened, or refused with the first error seen. */
type Attempt =
  | { opened: true; connection: Connection }
  | { opened: false; event: string; condition: string | undefined; message: string };

async function tryConnect(client: CertPair): Promise<Attempt> {
  const { pki: p, peer: broker } = setup();
  const [ca, cert, key] = await Promise.all([readFile(p.ca.cert), readFile(client.cert), readFile(client.key)]);
  const container = rhea.create_container({ id: `peer-test-${randomUUID()}` });
  // enable_sasl_external is missing from rhea's typings; without it rhea does not offer EXTERNAL.
  const options = {
    transport: 'tls', host: broker.host, port: broker.amqpsPort, servername: 'localhost',
    ca, cert, key, enable_sasl_external: true, reconnect: false, idle_time_out: 5_000,
  } as ConnectionOptions;
  return withTimeout(new Promise<Attempt>((resolve) => {
    const connection = container.connect(options);
    const refuse = (event: string) => (context: EventContext): void => {
      const error = context.error as { condition?: string; description?: string; message?: string } | undefined;
      resolve({ opened: false, event, condition: error?.condition,
        message: error?.description ?? error?.message ?? String(error) });
    };
    connection.once('connection_open', () => resolve({ opened: true, connection }));
    connection.once('connection_error', refuse('connection_error'));
    // on, not once: rhea prints a warning for a 'disconnected' nobody listens to, and it can come twice.
    connection.on('disconnected', refuse('disconnected'));
    // rhea throws an unhandled 'error' otherwise; the refusal is reported by the events above.
    connection.on('error', () => undefined);
  }), STEP_MS, 'connection attempt');
}

async function openConnection(client: CertPair): Promise<Connection> {
  const attempt = await tryConnect(client);
  if (!attempt.opened) assert.fail(`connection refused: ${JSON.stringify(attempt)}`);
  return attempt.connection;
}

/** The refusal, or a failure (closing the connection the broker should not have opened). */
async function expectRefused(client: CertPair): Promise<Extract<Attempt, { opened: false }>> {
  const attempt = await tryConnect(client);
  if (attempt.opened) {
    await closeConnection(attempt.connection);
    assert.fail('the broker opened a connection it should have refused');
  }
  return attempt;
}

async function closeConnection(connection: Connection): Promise<void> {
  if (!connection.is_open()) return;
  await withTimeout(new Promise<void>((resolve) => {
    connection.once('connection_close', () => resolve());
    connection.once('disconnected', () => resolve());
    connection.close();
  }), STEP_MS, 'connection close');
}

/** Sends one message to a durable queue (declared by the target) and resolves with the outcome RabbitMQ settled it with. */
async function send(connection: Connection, address: string, message: Message): Promise<string> {
  const sender = connection.open_sender({ target: { address, durable: 2 } });
  const outcome = await withTimeout(new Promise<string>((resolve) => {
    sender.once('sendable', () => sender.send(message));
    for (const event of ['accepted', 'rejected', 'released', 'modified'] as const) {
      sender.once(event, () => resolve(event));
    }
    sender.once('sender_error', (context: EventContext) => resolve(`sender_error: ${String(context.sender?.error)}`));
  }), STEP_MS, `send to ${address}`);
  sender.close();
  return outcome;
}

async function receiveOne(connection: Connection, address: string): Promise<Message> {
  const receiver = connection.open_receiver({ source: { address, durable: 2 }, credit_window: 1 });
  const message = await withTimeout(new Promise<Message>((resolve, reject) => {
    receiver.once('message', (context: EventContext) => {
      if (context.message) resolve(context.message);
      else reject(new Error('message event without a message'));
    });
    receiver.once('receiver_error', (context: EventContext) =>
      reject(new Error(`receiver_error: ${String(context.receiver?.error)}`)));
  }), STEP_MS, `receive from ${address}`);
  receiver.close();
  return message;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no outcome within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Queue depth as the broker reports it; a message just accepted may take a moment to be counted. */
async function depthSettlesAt(name: string, expected: number): Promise<number | undefined> {
  const { peer: broker } = setup();
  let depth: number | undefined;
  for (let i = 0; i < 20; i++) {
    depth = await broker.queueDepth(name);
    if (depth === expected) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return depth;
}

test('a client with the good certificate sends a durable message over TLS + EXTERNAL and gets it back', async () => {
  const { pki: p } = setup();
  const connection = await openConnection(p.client);
  try {
    const id = randomUUID();
    const body = `reading ${id}`;
    assert.equal(await send(connection, '/queue/peer-test', { message_id: id, body, durable: true }), 'accepted');
    assert.equal(await depthSettlesAt('peer-test', 1), 1);

    const received = await receiveOne(connection, '/queue/peer-test');
    assert.equal(received.message_id, id);
    assert.equal(received.body, body);
    assert.equal(await depthSettlesAt('peer-test', 0), 0);
  } finally {
    await closeConnection(connection);
  }
});

test('a client certificate from a foreign CA is refused during the TLS handshake', async () => {
  const { pki: p } = setup();
  const attempt = await expectRefused(p.foreignClient);
  // A TLS alert, not an AMQP-level refusal: the connection never got as far as SASL.
  assert.equal(attempt.condition, undefined, JSON.stringify(attempt));
  assert.match(attempt.message, /alert unknown ca/);
});

test('a certificate whose CN is no broker user is refused by SASL', async () => {
  const { pki: p } = setup();
  const attempt = await expectRefused(p.unknownClient);
  assert.equal(attempt.event, 'connection_error');
  assert.equal(attempt.condition, 'amqp:unauthorized-access');
  assert.match(attempt.message, /Failed to authenticate/);
});

test('a durable message survives a stop and start of the broker', async () => {
  const { pki: p, peer: broker } = setup();
  const id = randomUUID();
  const body = `kept across restart ${id}`;
  const sending = await openConnection(p.client);
  try {
    assert.equal(await send(sending, '/queue/peer-restart', { message_id: id, body, durable: true }), 'accepted');
    // A transient message beside it must be gone afterwards, or the broker was never really restarted.
    assert.equal(await send(sending, '/queue/peer-restart', { message_id: `${id}-transient`, body, durable: false }),
      'accepted');
  } finally {
    await closeConnection(sending);
  }
  assert.equal(await depthSettlesAt('peer-restart', 2), 2);
  const port = broker.amqpsPort;

  await broker.stop();
  assert.equal(broker.running, false);
  await expectRefused(p.client);
  await broker.start();

  assert.equal(broker.amqpsPort, port);
  const queue = (await broker.listQueues()).find((q) => q.name === 'peer-restart');
  assert.deepEqual(queue, { name: 'peer-restart', messages: 1, durable: true });
  const receiving = await openConnection(p.client);
  try {
    const received = await receiveOne(receiving, '/queue/peer-restart');
    assert.equal(received.message_id, id);
    assert.equal(received.body, body);
  } finally {
    await closeConnection(receiving);
  }
});
