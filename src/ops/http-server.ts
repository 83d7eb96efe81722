/**
 * The operator's HTTP endpoints: GET /healthz (the process answers), GET /readyz (200 when every
 * readiness condition holds, else 503 with the reasons as JSON), GET /metrics (Prometheus text).
 * Bound to loopback by default.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { GatewayError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Registry } from 'prom-client';
import type { Readiness } from './readiness.js';

export interface OpsServerOptions {
  host: string;
  port: number;
  readiness: Readiness;
  metrics?: Registry;
  log: Logger;
}

export class OpsServer {
  readonly #options: OpsServerOptions;
  #server: Server | undefined;

  constructor(options: OpsServerOptions) {
    this.#options = options;
  }

  async start(): Promise<void> {
    const { host, port, log } = this.#options;
    const server = createServer((req, res) => this.#handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? 'the port is already in use' : err.code === 'EACCES' ? 'permission denied' : err.message;
        reject(new GatewayError('IO', `cannot listen for HTTP on ${host}:${port}: ${why} (set http.host/http.port)`, { cause: err }));
      });
      server.listen(port, host, () => resolve());
    });
    server.on('error', (err) => log.error({ err }, 'http server error'));
    this.#server = server;
    log.info({ host, port }, 'http endpoints listening');
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, { error: 'only GET' });
    } else if (path === '/healthz') {
      send(res, 200, { status: 'ok' });
    } else if (path === '/metrics' && this.#options.metrics !== undefined) {
      const registry = this.#options.metrics;
      registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(text);
      }, (err: unknown) => {
        this.#options.log.error({ err }, 'metrics failed');
        send(res, 500, { error: 'metrics failed' });
      });
    } else if (path === '/readyz') {
      const snapshot = this.#options.readiness.snapshot();
      send(res, snapshot.ready ? 200 : 503, snapshot);
    } else {
      send(res, 404, { error: 'not found', endpoints: ['/healthz', '/readyz', '/metrics'] });
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
