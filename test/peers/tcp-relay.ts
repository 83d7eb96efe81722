/**
 * A TCP relay on a free loopback port that forwards every connection to a target, and that can
 * be frozen: from then on it forwards nothing, in either direction, and closes nothing. Neither
 * end gets a FIN or an RST; what they send stays in the socket buffers, as on a cellular link that
 * died or a firewall that dropped its state. New connections are accepted and held the same way.
 * Only each end's own timeouts can notice.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpRelay {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  /** Stops forwarding for good, without closing anything. */
  freeze(): void;
  /** Destroys every socket and closes the listener. */
  stop(): Promise<void>;
}

export async function startTcpRelay(target: { host: string; port: number }): Promise<TcpRelay> {
  const sockets = new Set<Socket>();
  let frozen = false;
  let accepted = 0;
  const keep = (socket: Socket): void => {
    sockets.add(socket);
    // The other end may give up (its timeout): that is its business, not a reason to crash here.
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
  };
  const hold = (socket: Socket): void => {
    socket.pause();
    socket.removeAllListeners('data');
    socket.removeAllListeners('end');
  };
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    accepted += 1;
    keep(client);
    if (frozen) return;
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    keep(upstream);
    upstream.once('connect', () => {
      if (frozen) return;
      client.on('data', (chunk: Buffer) => { if (!frozen) upstream.write(chunk); });
      upstream.on('data', (chunk: Buffer) => { if (!frozen) client.write(chunk); });
      client.on('end', () => { if (!frozen) upstream.end(); });
      upstream.on('end', () => { if (!frozen) client.end(); });
      client.resume();
    });
    upstream.once('error', () => { if (!frozen) client.destroy(); });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the relay has no port');
  return {
    port: address.port,
    connections: () => accepted,
    freeze() {
      frozen = true;
      for (const socket of sockets) hold(socket);
    },
    stop: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}
