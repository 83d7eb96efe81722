/**
 * Reads messages back from a broker over AMQP 1.0 (TLS + SASL EXTERNAL, or PLAIN), for tests to check what
 * arrived upstream. Each message is accepted on its own tick (FACTS.md: rhea merges settlement
 * ranges wrongly when several are settled in one tick).
 */
import { readFileSync } from 'node:fs';
import rhea, { type ConnectionOptions, type EventContext, type Message } from 'rhea';
import type { TestPki } from './certs.js';

export interface ConsumeOptions {
  host: string;
  port: number;
  pki: TestPki;
  address: string;
  /** Stop once this many arrived… */
  count: number;
  /** …or once a message for which this is true arrived (the last one a test waits for). */
  last?: (message: Message) => boolean;
  /**
   * …or when nothing more arrived for this long (default 3 s) after a message; before the first,
   * at least 15 s: what a test waits for may take a broker, a gateway and a Node-RED a while on a busy machine.
   */
  idleMs?: number;
  timeoutMs?: number;
  /** SASL PLAIN instead of EXTERNAL (ActiveMQ has no EXTERNAL); the client certificate is still presented. */
  plain?: { username: string; password: string };
}

export async function consume(options: ConsumeOptions): Promise<Message[]> {
  const container = rhea.create_container({ id: `test-consumer-${process.pid}-${Date.now()}` });
  const connection = container.connect({
    transport: 'tls', host: options.host, port: options.port, servername: 'localhost',
    ca: readFileSync(options.pki.ca.cert), cert: readFileSync(options.pki.client.cert), key: readFileSync(options.pki.client.key),
    reconnect: false,
    ...(options.plain ? { username: options.plain.username, password: options.plain.password } : { enable_sasl_external: true }),
  } as unknown as ConnectionOptions);
  const messages: Message[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let idle: NodeJS.Timeout | undefined;
      const timeout = setTimeout(() => resolve(), options.timeoutMs ?? 60_000);
      const finish = (): void => {
        clearTimeout(timeout);
        clearTimeout(idle);
        resolve();
      };
      const armIdle = (): void => {
        clearTimeout(idle);
        const idleMs = options.idleMs ?? 3000;
        idle = setTimeout(finish, messages.length === 0 ? Math.max(idleMs, 15_000) : idleMs);
      };
      connection.on('connection_error', (ctx: EventContext) => reject(new Error(`consumer: ${JSON.stringify(ctx.connection.error ?? ctx.error)}`)));
      connection.on('disconnected', (ctx: EventContext) => reject(new Error(`consumer disconnected: ${String(ctx.error ?? '')}`)));
      const receiver = connection.open_receiver({ source: { address: options.address, durable: 2 }, autoaccept: false, credit_window: 200 });
      receiver.on('receiver_open', armIdle);
      receiver.on('message', (ctx: EventContext) => {
        messages.push(ctx.message!);
        const delivery = ctx.delivery!;
        setImmediate(() => delivery.accept());
        armIdle();
        // A little later: what arrives after the last expected one shows as one too many.
        if (messages.length >= options.count || options.last?.(ctx.message!) === true) setTimeout(finish, 200);
      });
    });
  } finally {
    connection.removeAllListeners('disconnected');
    connection.on('disconnected', () => {});
    connection.close();
  }
  return messages;
}

/** The payload bytes of a message sent as one data section. */
export function payloadOf(message: Message): Buffer {
  const body = message.body as { typecode?: number; content?: Buffer } | Buffer;
  if (Buffer.isBuffer(body)) return body;
  if (body?.typecode === 0x75 && Buffer.isBuffer(body.content)) return body.content;
  throw new Error(`not a single data section: ${JSON.stringify(body)}`);
}
