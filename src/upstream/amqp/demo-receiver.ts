/**
 * A small AMQP 1.0 receiver for `uplink demo`: listens on loopback without TLS, accepts every
 * message, and counts them by message_id. It can go away and come back on the same port, which is
 * how the demo shows an upstream outage. Not for production: it keeps nothing.
 */
import type { Server } from 'node:net';
import rhea, { type Connection, type Container, type EventContext } from 'rhea';
import { abandon } from './abandon.js';

export class DemoReceiver {
  readonly #container: Container;
  readonly #ids = new Set<string>();
  #received = 0;
  #server: Server | undefined;
  readonly #connections = new Set<Connection>();
  #port = 0;

  constructor() {
    this.#container = rhea.create_container({ id: 'uplink-demo-receiver' });
    this.#container.on('message', (ctx: EventContext) => {
      this.#received += 1;
      this.#ids.add(String(ctx.message?.message_id));
    });
    this.#container.on('connection_open', (ctx: EventContext) => this.#connections.add(ctx.connection));
    this.#container.on('disconnected', (ctx: EventContext) => this.#connections.delete(ctx.connection));
    this.#container.on('error', () => {});
  }

  get port(): number {
    return this.#port;
  }

  /** Messages received, and distinct message ids among them. */
  counts(): { received: number; unique: number } {
    return { received: this.#received, unique: this.#ids.size };
  }

  has(id: string): boolean {
    return this.#ids.has(id);
  }

  async start(port = this.#port): Promise<void> {
    const server = this.#container.listen({ port, host: '127.0.0.1' }) as unknown as Server;
    await new Promise<void>((resolve, reject) => {
      server.once('listening', () => resolve());
      server.once('error', reject);
    });
    this.#port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const connection of this.#connections) abandon(connection);
    this.#connections.clear();
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
