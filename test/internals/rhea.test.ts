/**
 * The private parts of rhea that src/upstream/amqp reads or patches, each checked against the
 * real library: a rhea receiver listening in this process on a free loopback port, and a rhea
 * client connected to it.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import rhea, { type Connection, type Container, type EventContext, type Receiver, type Sender } from 'rhea';
import { abandon } from '../../src/upstream/amqp/abandon.js';
import { internal, librarySource, until, versions, within } from './internal.js';

/** What src/upstream/amqp/sender-link.ts reads of Session.outgoing. */
interface OutgoingWindow {
  next_delivery_id: number;
  next_pending_delivery: number;
  available(): number;
  transfer_window(): number;
}

const outgoingOf = (sender: Sender): OutgoingWindow => (sender.session as unknown as { outgoing: OutgoingWindow }).outgoing;
const creditOf = (sender: Sender): number => (sender as unknown as { credit: number }).credit;

let server: Container;
let listener: Server;
let port: number;
/** The receiving links of the server, by address, as they attach. */
const receivers = new Map<string, Receiver>();
const receiverOpened = new Map<string, (r: Receiver) => void>();
const events: Array<{ event: string; address: string }> = [];
/** The last delivery each server receiver got, unsettled. */
const deliveries = new Map<string, { accept(): void }>();

before(async () => {
  // Receivers grant nothing by themselves and settle nothing: each test decides.
  server = rhea.create_container({ id: 'internals-server', receiver_options: { credit_window: 0, autoaccept: false } } as never);
  server.on('receiver_open', (ctx: EventContext) => {
    const receiver = ctx.receiver!;
    const address = receiver.target.address ?? '';
    receivers.set(address, receiver);
    receiverOpened.get(address)?.(receiver);
  });
  server.on('disconnected', () => {});
  server.on('receiver_drained', (ctx: EventContext) => events.push({ event: 'receiver_drained', address: ctx.receiver!.target.address ?? '' }));
  server.on('message', (ctx: EventContext) => {
    const address = ctx.receiver!.target.address ?? '';
    deliveries.set(address, ctx.delivery!);
    events.push({ event: 'message', address });
  });
  listener = server.listen({ port: 0, host: '127.0.0.1' }) as unknown as Server;
  await new Promise<void>((resolve) => listener.once('listening', () => resolve()));
  port = (listener.address() as { port: number }).port;
});

after(() => {
  listener?.close();
});

/** Another rhea server, on its own free port, with `options` for its container; stopped after the test. */
async function otherServer(t: { after(fn: () => void): void }, options: Record<string, unknown>, setup: (container: Container) => void = () => {}): Promise<number> {
  const container = rhea.create_container({ id: 'internals-other', ...options } as never);
  container.on('disconnected', () => {});
  setup(container);
  const other = container.listen({ port: 0, host: '127.0.0.1' }) as unknown as Server;
  await new Promise<void>((resolve) => other.once('listening', () => resolve()));
  t.after(() => other.close());
  return (other.address() as { port: number }).port;
}

/** A client connection and a sender to `address`, open, with the server's receiver for it. */
async function senderTo(address: string): Promise<{ connection: Connection; sender: Sender; receiver: Receiver }> {
  const client = rhea.create_container({ id: `internals-client-${address}` });
  const opened = new Promise<Receiver>((resolve) => receiverOpened.set(address, resolve));
  const connection = client.connect({ host: '127.0.0.1', port, reconnect: false } as never);
  const sender = connection.open_sender({ target: { address } });
  await within(new Promise<void>((resolve) => sender.once('sender_open', () => resolve())), 'the sender to attach');
  const receiver = await within(opened, 'the server receiver to attach');
  return { connection, sender, receiver };
}

describe('rhea internals', () => {
  test('rhea is pinned: package.json names the exact version installed', () => {
    const { installed, wanted } = versions('rhea');
    assert.equal(wanted, installed, 'src/upstream/amqp reads rhea internals: pin rhea exactly and rerun test/internals on an upgrade');
  });

  test('Sender.credit: the link credit the receiver granted, lowered only as transfers are written', async () => {
    const { connection, sender, receiver } = await senderTo('credit');
    try {
      await internal('rhea', 'Sender.credit', 'src/upstream/amqp/sender-link.ts credit()', async () => {
        const flowed = new Promise<void>((resolve) => sender.once('sendable', () => resolve()));
        receiver.add_credit(5);
        await within(flowed, 'the flow granting 5');
        assert.equal(typeof creditOf(sender), 'number', 'not a number field');
        assert.equal(creditOf(sender), 5, 'not the credit granted');
        sender.send({ body: 'one' });
        assert.equal(creditOf(sender), 5, 'lowered at send(), before the transfer was written');
        await until(() => events.some((e) => e.event === 'message' && e.address === 'credit'), 'the transfer');
        assert.equal(creditOf(sender), 4, 'not lowered once the transfer was written');
      });
    } finally {
      connection.close();
    }
  });

  test('Session.outgoing: pending deliveries, the buffer of unsettled ones (2048), the session window', async () => {
    const { connection, sender, receiver } = await senderTo('outgoing');
    try {
      await internal('rhea', 'Session.outgoing (next_delivery_id, next_pending_delivery, available(), transfer_window())', 'src/upstream/amqp/sender-link.ts credit(), #unwritten()', async () => {
        const outgoing = outgoingOf(sender);
        assert.ok(outgoing !== undefined, 'sender.session.outgoing is missing');
        assert.equal(typeof outgoing.next_delivery_id, 'number', 'next_delivery_id is not a number');
        assert.equal(typeof outgoing.next_pending_delivery, 'number', 'next_pending_delivery is not a number');
        assert.equal(typeof outgoing.available, 'function', 'available() is missing');
        assert.equal(typeof outgoing.transfer_window, 'function', 'transfer_window() is missing');
        assert.equal(outgoing.available(), 2048, 'the buffer of unsettled deliveries is not 2048');
        const flowed = new Promise<void>((resolve) => sender.once('sendable', () => resolve()));
        receiver.add_credit(3);
        await within(flowed, 'the flow');
        const window = outgoing.transfer_window();
        assert.ok(Number.isFinite(window) && window > 0, `transfer_window() is ${window} after the receiver's begin and flow`);
        const delivery = sender.send({ body: 'one' });
        assert.equal(outgoing.next_delivery_id - outgoing.next_pending_delivery, 1, 'a delivery handed to send() is not pending');
        assert.equal(outgoing.available(), 2047, 'an unsettled delivery does not take a place in the buffer');
        await until(() => outgoing.next_delivery_id === outgoing.next_pending_delivery, 'the pending delivery to be written');
        assert.equal(outgoing.transfer_window(), window - 1, 'a written transfer does not use the session window');
        const settled = new Promise<void>((resolve) => sender.once('accepted', () => resolve()));
        await until(() => deliveries.has('outgoing'), 'the transfer');
        assert.ok(delivery !== undefined);
        deliveries.get('outgoing')!.accept();
        await within(settled, 'the outcome');
        await until(() => outgoing.available() === 2048, 'the place in the buffer to be freed by the outcome');
      });
    } finally {
      connection.close();
    }
  });

  test('Sender._draining and Connection._register: a drain is seen, and set_drained plus _register answers it', async () => {
    const { connection, sender, receiver } = await senderTo('drain');
    try {
      await internal('rhea', 'Sender._draining, Connection._register()', 'src/upstream/amqp/sender-link.ts idle()', async () => {
        const draining = new Promise<void>((resolve) => sender.once('sender_draining', () => resolve()));
        receiver.add_credit(3);
        receiver.drain_credit();
        await within(draining, 'the drain request');
        const internals = sender as unknown as { _draining?: boolean; connection: { _register?: () => void } };
        assert.equal(internals._draining, true, '_draining is not true after a flow with drain');
        assert.equal(typeof internals.connection._register, 'function', 'Connection._register is missing');
        // Outside any rhea event handler, as the forwarder calls idle().
        await new Promise((resolve) => setTimeout(resolve, 0));
        sender.set_drained(true);
        internals.connection._register!();
        await until(() => events.some((e) => e.event === 'receiver_drained' && e.address === 'drain'), 'the drained flow at the receiver');
        assert.equal(creditOf(sender), 0, 'the credit was not given back');
      });
    } finally {
      connection.close();
    }
  });

  test('Session.on_flow: called for every flow frame, with its performative', async () => {
    const { connection, sender, receiver } = await senderTo('on-flow');
    try {
      await internal('rhea', 'Session.on_flow(frame)', 'src/upstream/amqp/sender-link.ts #watchSessionFlow()', async () => {
        const session = sender.session as unknown as { on_flow(frame: { performative?: { handle?: unknown } }): void };
        assert.equal(typeof session.on_flow, 'function', 'Session.on_flow is missing');
        const frames: Array<{ handle?: unknown }> = [];
        const onFlow = session.on_flow.bind(session);
        session.on_flow = (frame) => {
          frames.push(frame.performative ?? {});
          onFlow(frame);
        };
        const flowed = new Promise<void>((resolve) => sender.once('sendable', () => resolve()));
        receiver.add_credit(2);
        await within(flowed, 'the flow');
        assert.equal(frames.length, 1, 'the patched on_flow was not called for the flow frame');
        assert.equal(typeof frames[0]!.handle, 'number', 'the performative of a link\'s flow does not carry its handle');
        assert.equal(creditOf(sender), 2, 'the wrapped handler did not take the flow in');
      });
    } finally {
      connection.close();
    }
  });

  test('Connection.socket and Connection.eof: abandon() drops the socket and rhea says disconnected', async () => {
    const { connection } = await senderTo('abandon');
    await internal('rhea', 'Connection.socket, Connection.eof(error)', 'src/upstream/amqp/abandon.ts', async () => {
      const internals = connection as unknown as { socket?: Socket; eof?: unknown };
      assert.ok(internals.socket !== undefined && typeof internals.socket.destroy === 'function', 'Connection.socket is not the socket');
      assert.equal(internals.socket.destroyed, false, 'socket.destroyed is not false while open');
      assert.equal(typeof internals.eof, 'function', 'Connection.eof is missing');
      const disconnected = new Promise<EventContext>((resolve) => connection.once('disconnected', resolve));
      abandon(connection);
      const ctx = await within(disconnected, "'disconnected' after abandon()");
      assert.equal(internals.socket.destroyed, true);
      assert.equal((ctx.error as { code?: string } | undefined)?.code, 'ETIMEDOUT', 'the error given to eof() is not the one reported');
    });
  });

  test('Connection.idle: called when the peer sent nothing for twice idle_time_out', async () => {
    // A peer that accepts the connection and never says a word (a half-open link).
    const sockets: Socket[] = [];
    const silent = createServer((socket) => { sockets.push(socket); });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    const client = rhea.create_container({ id: 'internals-idle' });
    const connection = client.connect({ host: '127.0.0.1', port: (silent.address() as { port: number }).port, reconnect: false, idle_time_out: 200 } as never);
    connection.on('disconnected', () => {});
    try {
      await internal('rhea', 'Connection.idle()', 'src/upstream/amqp/connection-watch.ts watchConnection() (a silent connection)', async () => {
        const internals = connection as unknown as { idle: () => void };
        assert.equal(typeof internals.idle, 'function', 'Connection.idle is missing');
        let called!: () => void;
        const idled = new Promise<void>((resolve) => { called = resolve; });
        const idle = internals.idle.bind(connection);
        // Patched right after connect(), as connection-watch.ts does: rhea must look it up when its timer fires.
        internals.idle = () => {
          called();
          idle();
        };
        await within(idled, 'the patched idle() on a silent connection');
      });
    } finally {
      abandon(connection);
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });

  test('remote attach aliases: Sender.target and Receiver.source (a described null when the peer answered without one), Sender.max_message_size', async (t) => {
    const otherPort = await otherServer(t, { receiver_options: { credit_window: 0, max_message_size: 1000 } }, (container) => {
      // Answers with a terminus only where the address says so, as a broker that refuses a link does not.
      container.on('receiver_open', (ctx: EventContext) => {
        const address = ctx.receiver!.target.address ?? '';
        if (address.startsWith('echo')) (ctx.receiver as unknown as { set_target(fields: object): void }).set_target({ address });
      });
      container.on('sender_open', (ctx: EventContext) => {
        const address = (ctx.sender!.source as { address?: string }).address ?? '';
        if (address.startsWith('echo')) (ctx.sender as unknown as { set_source(fields: object): void }).set_source({ address });
      });
    });
    const client = rhea.create_container({ id: 'internals-aliases' });
    const connection = client.connect({ host: '127.0.0.1', port: otherPort, reconnect: false } as never);
    connection.on('disconnected', () => {});
    try {
      await internal('rhea', 'Sender.target, Receiver.source, Sender.max_message_size (aliases of remote.attach)', 'src/upstream/amqp/sender-link.ts isNullTerminus(), maxMessageSize(); receiver-link.ts isNullTerminus()', async () => {
        const opened = async (link: Sender | Receiver, event: string): Promise<Record<string, unknown>> => {
          await within(new Promise<void>((resolve) => link.once(event as never, () => resolve())), event);
          return link as unknown as Record<string, unknown>;
        };
        const isNull = (terminus: unknown): boolean => terminus === undefined || terminus === null
          || ((terminus as { type?: unknown }).type !== undefined && (terminus as { value?: unknown }).value === null);
        const echoed = await opened(connection.open_sender({ target: { address: 'echo-1' } }), 'sender_open');
        assert.equal((echoed.target as { address?: string } | undefined)?.address, 'echo-1', 'Sender.target is not the target of the peer\'s attach');
        assert.equal(echoed.max_message_size, 1000, 'Sender.max_message_size is not the one of the peer\'s attach');
        const refused = await opened(connection.open_sender({ target: { address: 'none-1' } }), 'sender_open');
        assert.ok(isNull(refused.target), `an attach answered without a target gives ${String(refused.target)}`);
        const source = await opened(connection.open_receiver({ source: { address: 'echo-2' } }), 'receiver_open');
        assert.equal((source.source as { address?: string } | undefined)?.address, 'echo-2', 'Receiver.source is not the source of the peer\'s attach');
        const noSource = await opened(connection.open_receiver({ source: { address: 'none-2' } }), 'receiver_open');
        assert.ok(isNull(noSource.source), `an attach answered without a source gives ${String(noSource.source)}`);
      });
    } finally {
      connection.close();
    }
  });

  test('a close frame from the peer: connection_close with remote.close set, while the connection is not closed on our side', async (t) => {
    const otherPort = await otherServer(t, {}, (container) => {
      container.on('connection_open', (ctx: EventContext) => ctx.connection.close({ condition: 'amqp:connection:forced', description: 'going away' }));
    });
    const client = rhea.create_container({ id: 'internals-closed' });
    const connection = client.connect({ host: '127.0.0.1', port: otherPort, reconnect: false } as never);
    connection.on('disconnected', () => {});
    connection.on('connection_error', () => {});
    await internal('rhea', 'Connection.remote.close and is_closed() at connection_close', 'src/upstream/amqp/connection-watch.ts watchConnection() (closedByBroker)', async () => {
      const seen = await within(new Promise<{ remoteClose: unknown; closed: boolean }>((resolve) => connection.once('connection_close', () => resolve({
        remoteClose: (connection as unknown as { remote?: { close?: unknown } }).remote?.close, closed: connection.is_closed(),
      }))), 'connection_close');
      assert.ok(seen.remoteClose !== undefined, 'remote.close is not set by the peer\'s close frame');
      assert.equal(seen.closed, false, 'is_closed() is already true when connection_close is raised');
    });
    abandon(connection);
  });

  test('a refused SASL login: connection_close without remote.close, then disconnected', async (t) => {
    const otherPort = await otherServer(t, {}, (container) => {
      (container as unknown as { sasl_server_mechanisms: { enable_plain(check: () => boolean): void } }).sasl_server_mechanisms.enable_plain(() => false);
    });
    const client = rhea.create_container({ id: 'internals-sasl' });
    const connection = client.connect({ host: '127.0.0.1', port: otherPort, reconnect: false, username: 'u', password: 'wrong' } as never);
    connection.on('connection_error', () => {});
    await internal('rhea', 'connection_close for a refused SASL login, remote.close unset', 'src/upstream/amqp/connection-watch.ts watchConnection() (only a close frame is the broker\'s close)', async () => {
      const disconnected = new Promise<void>((resolve) => connection.once('disconnected', () => resolve()));
      const remoteClose = await within(new Promise<unknown>((resolve) => connection.once('connection_close', () => resolve((connection as unknown as { remote?: { close?: unknown } }).remote?.close))), 'connection_close');
      assert.equal(remoteClose, undefined, 'remote.close is set although the peer sent no close frame');
      await within(disconnected, "'disconnected' after the refused login");
    });
  });

  test('Connection.heartbeat_in and heartbeat_out: the idle timers, cleared by abandon() even from inside an input handler', async () => {
    const client = rhea.create_container({ id: 'internals-heartbeat' });
    const connection = client.connect({ host: '127.0.0.1', port, reconnect: false, idle_time_out: 60_000 } as never);
    connection.on('disconnected', () => {});
    await internal('rhea', 'Connection.heartbeat_in, Connection.heartbeat_out', 'src/upstream/amqp/abandon.ts', async () => {
      const internals = connection as unknown as { heartbeat_in?: unknown; heartbeat_out?: unknown };
      const timers = await within(new Promise<{ in: unknown }>((resolve) => connection.once('connection_open', () => {
        const armed = { in: internals.heartbeat_in };
        // abandon() inside rhea's input handler, as a broker's close answering a reload calls it.
        abandon(connection);
        resolve(armed);
      })), 'connection_open');
      assert.equal(typeof timers.in, 'object', 'heartbeat_in does not hold the idle timer while open');
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(internals.heartbeat_in, undefined, 'heartbeat_in is armed again after abandon()');
      assert.equal(internals.heartbeat_out, undefined, 'heartbeat_out is armed again after abandon()');
    });
  });

  test('enable_sasl_external: the connection option (missing from the typings) that makes rhea offer EXTERNAL', async () => {
    await internal('rhea', "the option 'enable_sasl_external'", 'src/upstream/amqp/connection-options.ts connectionOptions()', () => {
      const source = librarySource('rhea', 'lib/connection.js');
      assert.ok(source.includes("get_option('enable_sasl_external'"), "lib/connection.js no longer reads 'enable_sasl_external'");
    });
  });
});
