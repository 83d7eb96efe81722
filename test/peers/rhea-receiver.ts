/**
 * A scripted AMQP 1.0 receiver in the test process (rhea listening on a free loopback port, plain
 * TCP, SASL ANONYMOUS), for what neither RabbitMQ nor Proton lets a test set exactly: the session
 * window. RabbitMQ 4 sets a session's incoming window to 0 during a memory or disk alarm while its
 * links keep their credit; this peer does the same on command.
 *
 * Every `begin` and `flow` frame it writes is rewritten, on its way out, to advertise the window
 * the test chose, counted from the transfers the session received so far (one frame a message;
 * the test messages are small). `setWindow(n)` changes it and sends a flow for the session alone
 * (no link handle), as a broker does when an alarm clears. Each transfer is recorded with whether
 * it came beyond the window advertised (a flow-control violation by the sender).
 *
 * It also keeps the open frame of each connection (e.g. the idle-time-out the client asked for).
 */
import type { Server, Socket } from 'node:net';
import rhea, { type Connection, type Container, type EventContext, type Receiver, type Session } from 'rhea';

export interface ScriptedReceiverOptions {
  /** Link credit granted to every receiving link at attach (and never topped up). */
  linkCredit: number;
  /** Link credit for the links to these target addresses instead. */
  creditFor?: Record<string, number>;
  /** Session incoming window advertised from the start. */
  sessionWindow: number;
  /** Leave every delivery unsettled until `settle()` (default: accept at once). */
  holdOutcomes?: boolean;
  /** Links to these target addresses are refused: answered, then detached with this error. */
  refuse?: Record<string, { condition: string; description: string }>;
  /** The max_message_size stated in the attach of every receiving link (none by default). */
  maxMessageSize?: number;
}

export interface ReceivedTransfer {
  messageId: string;
  address: string;
  /** It came although the session window advertised had no room for it. */
  overWindow: boolean;
}

export interface ScriptedReceiver {
  port: number;
  url: string;
  /** The open frame of each connection: container_id, idle_time_out, max_frame_size. */
  opens(): Array<Record<string, unknown>>;
  transfers(): ReceivedTransfer[];
  /** Receiving links attached so far (the client's sender links). */
  links(): number;
  /** Receiving links attached now, and the most ever attached at once. */
  attached(): { now: number; max: number };
  /** Accepts every delivery held so far (holdOutcomes). */
  settle(): void;
  /** Grants `credit` more to the attached links to `address`. */
  grant(address: string, credit: number): void;
  /** Sending links attached so far (the client's receiver links). */
  senders(): number;
  /** Advertises `window` from now on, in a flow for each session alone. */
  setWindow(window: number): void;
  /** Closes every connection from this side with a close frame (with `error`, if given), as a broker that stops does. */
  closeConnections(error?: { condition: string; description: string }): void;
  /** Connections open now. */
  connections(): number;
  /** Resolves once `check` holds (checked on every frame the peer handles); rejects after `timeoutMs`. */
  until(check: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

interface SessionBook {
  received: number;
  /** Transfers at or beyond this count are beyond the advertised window. */
  limit: number;
}

export async function startScriptedReceiver(options: ScriptedReceiverOptions): Promise<ScriptedReceiver> {
  // credit_window 0: rhea must not top the credit up by itself; the test grants it.
  const container: Container = rhea.create_container({ id: `scripted-receiver-${process.pid}`,
    receiver_options: { credit_window: 0, autoaccept: options.holdOutcomes !== true,
      ...(options.maxMessageSize === undefined ? {} : { max_message_size: options.maxMessageSize }) } } as never);
  (container as unknown as { sasl_server_mechanisms: { enable_anonymous(): void } }).sasl_server_mechanisms.enable_anonymous();
  let window = options.sessionWindow;
  const opens: Array<Record<string, unknown>> = [];
  const transfers: ReceivedTransfer[] = [];
  const books = new WeakMap<Session, SessionBook>();
  const connections = new Set<Connection>();
  const waiters = new Set<() => void>();
  let links = 0;
  let attachedMax = 0;
  const held: Array<{ accept(): void }> = [];
  /** Receiving links attached (and not refused), until their detach. */
  const receivers = new Set<Receiver>();
  const targetOf = (receiver: Receiver): string => String((receiver as unknown as { target?: { address?: string } }).target?.address);
  let senders = 0;
  const wake = (): void => { for (const waiter of [...waiters]) waiter(); };
  const bookOf = (session: Session): SessionBook => {
    let book = books.get(session);
    if (book === undefined) {
      book = { received: 0, limit: 0 };
      books.set(session, book);
    }
    return book;
  };

  container.on('connection_open', (ctx: EventContext) => {
    const connection = ctx.connection;
    connections.add(connection);
    // rhea internals (test peer only): the decoded open frame, and the frame writer of the connection.
    const internals = connection as unknown as {
      remote: { open: Record<string, unknown> };
      local_channel_map: Record<number, Session>;
      _write_frame(channel: number, frame: Record<string, unknown>, payload?: unknown): void;
    };
    // The fields are getters of rhea's frame type: copied by name.
    const open = internals.remote.open;
    opens.push({ container_id: open.container_id, idle_time_out: open.idle_time_out, max_frame_size: open.max_frame_size });
    const write = internals._write_frame.bind(connection);
    internals._write_frame = (channel, frame, payload) => {
      if (frame !== undefined && 'incoming_window' in frame) {
        const session = internals.local_channel_map[channel];
        if (session !== undefined) {
          const book = bookOf(session);
          frame.incoming_window = window;
          book.limit = book.received + window;
        }
      }
      write(channel, frame, payload);
    };
  });
  container.on('receiver_open', (ctx: EventContext) => {
    links += 1;
    const receiver = ctx.receiver as Receiver;
    const refusal = options.refuse?.[targetOf(receiver)];
    if (refusal !== undefined) {
      receiver.close(refusal);
      wake();
      return;
    }
    receivers.add(receiver);
    attachedMax = Math.max(attachedMax, receivers.size);
    const credit = options.creditFor?.[targetOf(receiver)] ?? options.linkCredit;
    if (credit > 0) receiver.add_credit(credit);
    wake();
  });
  container.on('sender_open', (ctx: EventContext) => {
    // Answer with the client's own source, as a broker does (a link answered without one is refused).
    const link = ctx.sender as unknown as { set_source(fields: unknown): void; remote: { attach: { source: { address?: string } } } };
    link.set_source({ address: link.remote.attach.source.address });
    senders += 1;
    wake();
  });
  container.on('message', (ctx: EventContext) => {
    const book = bookOf(ctx.session as Session);
    transfers.push({
      messageId: String(ctx.message?.message_id),
      address: targetOf(ctx.receiver as Receiver),
      overWindow: book.received >= book.limit,
    });
    book.received += 1;
    if (options.holdOutcomes === true && ctx.delivery !== undefined) held.push(ctx.delivery);
    wake();
  });
  const detached = (ctx: EventContext): void => {
    receivers.delete(ctx.receiver as Receiver);
    wake();
  };
  container.on('receiver_close', detached);
  container.on('receiver_error', detached);
  // A connection closed by either side with a close frame: rhea raises no 'disconnected' for it.
  container.on('connection_close', (ctx: EventContext) => {
    connections.delete(ctx.connection);
    wake();
  });
  container.on('disconnected', (ctx: EventContext) => {
    connections.delete(ctx.connection);
    for (const receiver of receivers) if (receiver.connection === ctx.connection) receivers.delete(receiver);
    wake();
  });
  container.on('error', () => {});
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
    port,
    url: `amqp://127.0.0.1:${port}`,
    opens: () => [...opens],
    transfers: () => [...transfers],
    links: () => links,
    senders: () => senders,
    attached: () => ({ now: receivers.size, max: attachedMax }),
    settle() {
      for (const delivery of held.splice(0)) delivery.accept();
    },
    grant(address: string, credit: number) {
      for (const receiver of receivers) if (targetOf(receiver) === address) receiver.add_credit(credit);
    },
    setWindow(next: number) {
      window = next;
      for (const connection of connections) {
        const internals = connection as unknown as { local_channel_map: Record<number, Session & { _write_flow(): void }> };
        // rhea internal: Session._write_flow without a link writes a flow for the session alone.
        for (const session of Object.values(internals.local_channel_map)) session._write_flow();
      }
    },
    closeConnections(error) {
      for (const connection of connections) connection.close(error);
    },
    connections: () => connections.size,
    until: (check, what, timeoutMs = 10_000) => new Promise<void>((resolve, reject) => {
      const attempt = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        waiters.delete(attempt);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(attempt);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (transfers: ${transfers.length})`));
      }, timeoutMs);
      waiters.add(attempt);
      attempt();
    }),
    stop: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    }),
  };
}
