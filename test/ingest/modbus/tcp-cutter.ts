/**
 * A Modbus TCP relay between the gateway and the pymodbus slave that cuts one response short:
 * the slave's response is framed by its MBAP header (length at bytes 4-5), and on command only its
 * first bytes go on; the rest of that response is dropped, the connection stays up. pymodbus
 * cannot send half a response itself.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpCutter {
  port: number;
  /** Forwards only the first `bytes` of the next response. */
  cutNext(bytes: number): void;
  /** Responses cut so far. */
  cut: number;
  /** Connections accepted so far. */
  connections(): number;
  stop(): Promise<void>;
}

export async function startTcpCutter(target: { host: string; port: number }): Promise<TcpCutter> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  let cutNext: number | undefined;
  const keep = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
  };
  const cutter: TcpCutter = {
    port: 0,
    cut: 0,
    cutNext: (bytes) => { cutNext = bytes; },
    connections: () => accepted,
    stop: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    accepted += 1;
    keep(client);
    const upstream = connect(target);
    keep(upstream);
    let pending = Buffer.alloc(0);
    upstream.once('connect', () => {
      client.on('data', (chunk: Buffer) => upstream.write(chunk));
      upstream.on('data', (chunk: Buffer) => {
        // Whole responses only: header (7 bytes: transaction, protocol, length, unit) + the rest of the length.
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 6 && pending.length >= 6 + pending.readUInt16BE(4)) {
          const size = 6 + pending.readUInt16BE(4);
          const response = pending.subarray(0, size);
          pending = pending.subarray(size);
          if (cutNext !== undefined) {
            client.write(response.subarray(0, cutNext));
            cutNext = undefined;
            cutter.cut += 1;
          } else {
            client.write(response);
          }
        }
      });
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.resume();
    });
    upstream.once('error', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the cutter has no port');
  cutter.port = address.port;
  return cutter;
}
