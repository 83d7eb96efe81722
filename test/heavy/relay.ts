/**
 * A TCP relay on a free loopback port in front of an upstream peer, that the test opens and
 * closes: closed, it resets the connections it holds and every new one, so the gateway sees its
 * upstream go away (and logs the refused connections) while the peer itself keeps its state.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface Relay {
  port: number;
  open(): void;
  /** Resets every relayed connection and refuses new ones until open(). */
  close(): void;
  /** Connections accepted and relayed so far. */
  relayed(): number;
  stop(): Promise<void>;
}

export async function startRelay(targetPort: number, initiallyOpen: boolean): Promise<Relay> {
  let isOpen = initiallyOpen;
  let relayed = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (!isOpen) {
      client.resetAndDestroy();
      return;
    }
    relayed += 1;
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      sockets.delete(client);
      sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('relay: no port');
  return {
    port: address.port,
    open: () => { isOpen = true; },
    close: () => {
      isOpen = false;
      for (const socket of sockets) socket.resetAndDestroy();
      sockets.clear();
    },
    relayed: () => relayed,
    stop: async () => {
      isOpen = false;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
