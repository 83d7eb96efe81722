/**
 * The operator's HTTP endpoints: GET /healthz (the process answers), GET /readyz (200 when every
 * readiness condition holds, else 503 with the reasons as JSON), GET /metrics (Prometheus text),
 * GET /status (JSON for people and `uplink status`). Bound to loopback by default.
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
  /** The document GET /status serves. */
  status?: () => unknown;
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

  /** Where it listens, once started. */
  address(): { host: string; port: number } | undefined {
    const bound = this.#server?.address();
    return bound === null || bound === undefined || typeof bound === 'string' ? undefined : { host: bound.address, port: bound.port };
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
      const reasons = Object.entries(snapshot.conditions).filter(([, c]) => !c.ready).map(([name, c]) => `${name}: ${c.reason ?? 'not ready'}`);
      send(res, snapshot.ready ? 200 : 503, snapshot.ready ? snapshot : { ...snapshot, reasons });
    } else if (path === '/status' && this.#options.status !== undefined) {
      let body: unknown;
      try {
        body = this.#options.status();
      } catch (err) {
        this.#options.log.error({ err }, 'status failed');
        send(res, 500, { error: 'status failed' });
        return;
      }
      send(res, 200, body);
    } else {
      send(res, 404, { error: 'not found', endpoints: ['/healthz', '/readyz', '/metrics', '/status'] });
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
