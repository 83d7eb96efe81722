/**
 * A small AMQP 1.0 peer in the test process (rhea listening on a free loopback port, plain TCP,
 * SASL ANONYMOUS), for what RabbitMQ 3.10 cannot show: the container id a client opens with, the
 * condition of a rejected delivery, and a broker that refuses a receiver by detaching the link
 * while keeping its session (RabbitMQ 3.10 ends the session instead).
 *
 * It records, on its side of the wire: the container id of every connection, the sessions open
 * at each refusal, and the outcome of every message it sent.
 */
import type { Server, Socket } from 'node:net';
import rhea, { type Container, type Delivery, type EventContext, type Message, type Sender } from 'rhea';

export interface PeerOutcome {
  messageId: unknown;
  kind: 'accepted' | 'rejected' | 'released' | 'modified';
  condition?: string;
  description?: string;
}

export interface AmqpPeerOptions {
  /** Addresses whose receivers are refused: an attach without a source, then a detach with this error. */
  refuse?: Record<string, { condition: string; description: string }>;
  /** Messages sent to a receiver of this address once it is attached (within its credit). */
  messages?: Record<string, Message[]>;
}

export interface AmqpPeer {
  readonly port: number;
  /** The container id of each connection opened, in order. */
  readonly containerIds: string[];
  /** At each refusal of a receiver: the sessions its connection had open (begun, not ended). */
  readonly openSessionsAtRefusal: number[];
  readonly outcomes: PeerOutcome[];
  stop(): Promise<void>;
}

export async function startAmqpPeer(options: AmqpPeerOptions = {}): Promise<AmqpPeer> {
  const container: Container = rhea.create_container({ id: `test-peer-${process.pid}` });
  (container as unknown as { sasl_server_mechanisms: { enable_anonymous(): void } }).sasl_server_mechanisms.enable_anonymous();
  const containerIds: string[] = [];
  const openSessionsAtRefusal: number[] = [];
  const outcomes: PeerOutcome[] = [];
  const sessions = new Map<unknown, number>();
  const sent = new WeakMap<Delivery, unknown>();
  const queued = new Map<string, Message[]>(Object.entries(options.messages ?? {}).map(([k, v]) => [k, [...v]]));

  container.on('connection_open', (ctx: EventContext) => {
    containerIds.push(String((ctx.connection as unknown as { remote: { open: { container_id: string } } }).remote.open.container_id));
    sessions.set(ctx.connection, 0);
  });
  container.on('session_open', (ctx: EventContext) => sessions.set(ctx.connection, (sessions.get(ctx.connection) ?? 0) + 1));
  container.on('session_close', (ctx: EventContext) => sessions.set(ctx.connection, (sessions.get(ctx.connection) ?? 0) - 1));
  container.on('sender_open', (ctx: EventContext) => {
    const sender = ctx.sender as Sender;
    const address = (sender as unknown as { source?: { address?: string } }).source?.address ?? '';
    const refusal = options.refuse?.[address];
    if (refusal !== undefined) {
      openSessionsAtRefusal.push(sessions.get(ctx.connection) ?? 0);
      // As AMQP 1.0 says (2.6.3): an attach with no source (rhea writes it on the next tick), then
      // the detach with the error.
      (sender as unknown as { local: { attach: { source: unknown } } }).local.attach.source = null;
      sender.close(refusal);
      return;
    }
    const send = (): void => {
      const list = queued.get(address);
      while (list !== undefined && list.length > 0 && sender.sendable()) {
        const message = list.shift()!;
        sent.set(sender.send(message), message.message_id);
      }
    };
    // Not in this tick: rhea writes queued transfers before the attach that answers the client's,
    // which the client takes for transfers on an unknown handle.
    sender.on('sendable', () => setImmediate(send));
    setImmediate(send);
  });
  const record = (kind: PeerOutcome['kind']) => (ctx: EventContext): void => {
    const state = ctx.delivery?.remote_state as { error?: { condition?: string; description?: string } } | undefined;
    const messageId = ctx.delivery === undefined ? undefined : sent.get(ctx.delivery);
    outcomes.push({
      messageId, kind,
      ...(state?.error?.condition === undefined ? {} : { condition: state.error.condition }),
      ...(state?.error?.description === undefined ? {} : { description: state.error.description }),
    });
  };
  container.on('accepted', record('accepted'));
  container.on('rejected', record('rejected'));
  container.on('released', record('released'));
  container.on('modified', record('modified'));
  container.on('error', () => {});
  container.on('disconnected', () => {});
  container.on('connection_error', () => {});

  const server = container.listen({ port: 0, host: '127.0.0.1' }) as unknown as Server;
  await new Promise<void>((resolve, reject) => {
    server.once('listening', () => resolve());
    server.once('error', reject);
  });
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port, containerIds, openSessionsAtRefusal, outcomes,
    stop: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    }),
  };
}
