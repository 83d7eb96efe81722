/**
 * The sockets devices connect to: plain TCP (always), TLS and WebSocket (when configured).
 *
 * - Every accepted socket, on any listener, counts against one `maxConnections`; past it the new
 *   socket is closed at once, before TLS or MQTT is spoken.
 * - TCP_NODELAY is set on every socket: a PUBACK is a 4-byte write that must not wait for Nagle.
 * - TLS: with `ca`, a client certificate signed by it is required (handshake fails otherwise) and
 *   its CN is passed on as `certCn`; the handshake must finish within 10 s.
 * - WebSocket (`ws`, loaded only when configured): subprotocol `mqtt` (or `mqttv3.1`), messages
 *   larger than the largest allowed packet are refused by ws before they are buffered.
 * - `open()` fails with a GatewayError naming the listener, host:port and the reason; listeners
 *   already opened are closed again.
 */
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { GatewayError } from '../../core/errors.js';
import type { MqttIngestConfig } from './config.js';
import type { ConnectionInfo, Transport } from './guarded-connection.js';

export type ListenerKind = 'tcp' | 'tls' | 'websocket';

export interface BoundListener {
  kind: ListenerKind;
  host: string;
  port: number;
}

export interface ListenersOptions {
  config: MqttIngestConfig;
  /** Largest WebSocket message accepted (the largest MQTT packet allowed). */
  maxWebSocketMessage: number;
  /** A socket is ready for MQTT: hand it to the broker. */
  onConnection(stream: Duplex, info: ConnectionInfo): void;
  /** A socket was closed before MQTT: over maxConnections, or a failed TLS handshake. */
  onRefused(reason: 'max_connections' | 'tls_handshake', info: { remoteAddress: string; transport: Transport }, detail?: string): void;
}

const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

interface Opened {
  kind: ListenerKind;
  address: BoundListener;
  close(): Promise<void>;
}

export class Listeners {
  readonly #options: ListenersOptions;
  readonly #sockets = new Set<Socket>();
  #opened: Opened[] = [];
  #nextId = 1;

  constructor(options: ListenersOptions) {
    this.#options = options;
  }

  /** Sockets open now, on every listener (MQTT handshake done or not). */
  get connections(): number {
    return this.#sockets.size;
  }

  get addresses(): BoundListener[] {
    return this.#opened.map((o) => o.address);
  }

  async open(): Promise<BoundListener[]> {
    const { config } = this.#options;
    try {
      this.#opened.push(await this.#openTcp(config.host, config.port));
      if (config.tls !== undefined) {
        this.#opened.push(await this.#openTls(config.tls.host ?? config.host, config.tls.port, config.tls));
      }
      if (config.websocket !== undefined) {
        this.#opened.push(await this.#openWebSocket(config.websocket.host ?? config.host, config.websocket.port));
      }
    } catch (err) {
      await this.close();
      throw err;
    }
    return this.addresses;
  }

  async close(): Promise<void> {
    const opened = this.#opened;
    this.#opened = [];
    const closing = opened.map((o) => o.close());
    for (const socket of this.#sockets) socket.destroy();
    await Promise.all(closing);
  }

  /** Counts the socket, or closes it when the limit is reached. False: refused. */
  #admit(socket: Socket, transport: Transport): boolean {
    if (this.#sockets.size >= this.#options.config.maxConnections) {
      const remoteAddress = socket.remoteAddress ?? 'unknown';
      socket.destroy();
      this.#options.onRefused('max_connections', { remoteAddress, transport });
      return false;
    }
    socket.setNoDelay(true);
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    return true;
  }

  #info(socket: Socket, transport: Transport): ConnectionInfo {
    return { id: this.#nextId++, transport, remoteAddress: socket.remoteAddress ?? 'unknown', remotePort: socket.remotePort };
  }

  async #openTcp(host: string, port: number): Promise<Opened> {
    const server = createNetServer((socket) => {
      if (!this.#admit(socket, 'tcp')) return;
      this.#options.onConnection(socket, this.#info(socket, 'tcp'));
    });
    return listen('tcp', server, host, port, () => closeServer(server));
  }

  async #openTls(host: string, port: number, tls: NonNullable<MqttIngestConfig['tls']>): Promise<Opened> {
    // One after the other: with several files unreadable, the error names the first in config
    // order every time (read at once, whichever failed first won).
    const cert = await readPem('mqtt.tls.cert', tls.cert);
    const key = await readPem('mqtt.tls.key', tls.key);
    const ca = tls.ca === undefined ? undefined : await readPem('mqtt.tls.ca', tls.ca);
    let server;
    try {
      server = createTlsServer({
        cert, key, ca, requestCert: ca !== undefined, rejectUnauthorized: ca !== undefined,
        handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
      }, (socket: TLSSocket) => {
        const info = this.#info(socket, 'tls');
        const cn = ca !== undefined && socket.authorized ? certCommonName(socket) : undefined;
        if (cn !== undefined) info.certCn = cn;
        this.#options.onConnection(socket, info);
      });
    } catch (err) {
      throw new GatewayError('CONFIG_INVALID', `mqtt tls listener: the certificate or key cannot be used (${(err as Error).message})`, { cause: err });
    }
    // 'connection' fires for the raw socket before the handshake: limit and tune it there.
    server.on('connection', (socket: Socket) => { this.#admit(socket, 'tls'); });
    server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      this.#options.onRefused('tls_handshake', { remoteAddress: socket.remoteAddress ?? 'unknown', transport: 'tls' }, err.message);
    });
    return listen('tls', server, host, port, () => closeServer(server));
  }

  async #openWebSocket(host: string, port: number): Promise<Opened> {
    let ws: typeof import('ws');
    try {
      ws = await import('ws');
    } catch (err) {
      throw new GatewayError('CONFIG_INVALID', "mqtt.websocket needs the 'ws' package, which is not installed", { cause: err });
    }
    const http: HttpServer = createHttpServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' });
      res.end('MQTT over WebSocket only\n');
    });
    http.on('connection', (socket: Socket) => { this.#admit(socket, 'ws'); });
    const wss = new ws.WebSocketServer({
      server: http,
      maxPayload: this.#options.maxWebSocketMessage,
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    });
    wss.on('connection', (socket, req) => {
      const stream = ws.createWebSocketStream(socket);
      this.#options.onConnection(stream, this.#info(req.socket, 'ws'));
    });
    wss.on('error', () => { /* listen errors are reported through the http server */ });
    return listen('websocket', http, host, port, async () => {
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await closeServer(http);
    });
  }
}

function certCommonName(socket: TLSSocket): string | undefined {
  const cn = socket.getPeerCertificate().subject?.CN as unknown;
  if (typeof cn === 'string' && cn.length > 0) return cn;
  return undefined; // none, or several CNs: no single identity
}

async function readPem(key: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new GatewayError('CONFIG_UNREADABLE', `${key}: ${path} cannot be read (${code})`, { cause: err });
  }
}

const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use (another MQTT broker, or a second uplink?)',
  EACCES: 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'no interface has this address',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve (yet)',
};

function listen(kind: ListenerKind, server: Server, host: string, port: number, close: () => Promise<void>): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = LISTEN_ERRORS[err.code ?? ''] ?? err.message;
      reject(new GatewayError('IO', `mqtt ${kind} listener on ${host}:${port} could not be opened: ${why}${err.code ? ` (${err.code})` : ''}`,
        { retryable: err.code === 'EADDRINUSE', cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      server.on('error', () => { /* after listening, errors concern single sockets */ });
      const bound = server.address();
      const boundPort = bound !== null && typeof bound === 'object' ? bound.port : port;
      resolve({ kind, address: { kind, host, port: boundPort }, close });
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
