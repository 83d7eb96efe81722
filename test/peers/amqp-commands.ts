/**
 * The other end of the downlink, for tests: an application that sends commands to RabbitMQ (TLS +
 * SASL EXTERNAL) with reply_to and correlation_id, and reads the replies and the dead letters.
 * Each received message is accepted on its own tick (FACTS.md).
 */
import { readFileSync } from 'node:fs';
import rhea, { type Connection, type ConnectionOptions, type EventContext, type Message, type Sender } from 'rhea';
import type { TestPki } from './certs.js';

export interface Received {
  message: Message;
  /** The body as text (a data section's bytes as UTF-8). */
  text: string;
}

export interface CommandClient {
  /** Sends one command; resolves once the broker accepted it (it is in the queue). */
  /** `correlationId`: a string, a number (ulong), a Buffer (uuid when 16 bytes) or a value of rhea.types (e.g. wrap_binary). */
  send(body: unknown, options?: { correlationId?: unknown; replyTo?: string; messageId?: string; raw?: boolean }): Promise<void>;
  /** Messages that arrived on `address` (replies, dead letters), in order. */
  received(address: string): Received[];
  /** Starts reading `address` (declaring it as a durable queue). */
  listen(address: string): Promise<void>;
  waitFor(address: string, match: (r: Received) => boolean, timeoutMs?: number): Promise<Received>;
  close(): void;
}

export async function commandClient(options: { host: string; port: number; pki: TestPki; commands: string }): Promise<CommandClient> {
  const container = rhea.create_container({ id: `test-commander-${process.pid}-${Date.now()}` });
  const connection: Connection = container.connect({
    transport: 'tls', host: options.host, port: options.port, servername: 'localhost',
    ca: readFileSync(options.pki.ca.cert), cert: readFileSync(options.pki.client.cert), key: readFileSync(options.pki.client.key),
    enable_sasl_external: true, reconnect: false,
  } as unknown as ConnectionOptions);
  connection.on('connection_error', () => {});
  connection.on('disconnected', () => {});
  const sender: Sender = connection.open_sender({ target: { address: options.commands, durable: 2 } });
  await new Promise<void>((resolve, reject) => {
    sender.once('sendable', () => resolve());
    connection.once('connection_error', (ctx: EventContext) => reject(new Error(`command client: ${JSON.stringify(ctx.connection.error)}`)));
  });
  const inboxes = new Map<string, Received[]>();
  const wakers = new Set<() => void>();
  let counter = 0;
  return {
    send: (body, opts = {}) => new Promise((resolve, reject) => {
      const message: Message = {
        message_id: opts.messageId ?? `cmd-${process.pid}-${++counter}`, durable: true,
        body: opts.raw === true ? rhea.message.data_section(Buffer.from(String(body))) : rhea.message.data_section(Buffer.from(JSON.stringify(body))),
        ...(opts.correlationId === undefined ? {} : { correlation_id: opts.correlationId as Message['correlation_id'] }),
        ...(opts.replyTo === undefined ? {} : { reply_to: opts.replyTo }),
      };
      const delivery = sender.send(message);
      const settled = (ctx: EventContext): void => {
        if (ctx.delivery !== delivery) return;
        sender.removeListener('accepted', settled);
        sender.removeListener('rejected', settled);
        if (delivery.remote_state?.constructor?.name === 'Rejected') reject(new Error('the broker rejected the command'));
        else resolve();
      };
      sender.on('accepted', settled);
      sender.on('rejected', settled);
    }),
    received: (address) => [...(inboxes.get(address) ?? [])],
    listen: (address) => new Promise((resolve) => {
      const inbox: Received[] = [];
      inboxes.set(address, inbox);
      const receiver = connection.open_receiver({ source: { address, durable: 2 }, autoaccept: false, credit_window: 50 });
      receiver.once('receiver_open', () => resolve());
      receiver.on('message', (ctx: EventContext) => {
        const message = ctx.message!;
        const body = message.body as { typecode?: number; content?: Buffer } | Buffer | string;
        const bytes = Buffer.isBuffer(body) ? body : typeof body === 'string' ? Buffer.from(body) : body.content ?? Buffer.alloc(0);
        inbox.push({ message, text: bytes.toString('utf8') });
        const delivery = ctx.delivery!;
        setImmediate(() => delivery.accept());
        for (const wake of wakers) wake();
      });
    }),
    waitFor: (address, match, timeoutMs = 30_000) => new Promise((resolve, reject) => {
      const check = (): void => {
        const found = (inboxes.get(address) ?? []).find(match);
        if (found === undefined) return;
        done();
        resolve(found);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`nothing matching arrived on ${address} within ${timeoutMs} ms; got ${JSON.stringify((inboxes.get(address) ?? []).map((r) => r.text))}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        wakers.delete(check);
      };
      wakers.add(check);
      check();
    }),
    close: () => connection.close(),
  };
}
