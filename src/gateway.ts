/**
 * The composition root: builds the components from the config, starts them in order and stops
 * them in reverse. No other module wires components together.
 */
import { mkdir, access, constants } from 'node:fs/promises';
import type { Config } from './config/schema.js';
import { GatewayError } from './core/errors.js';
import type { Logger } from './core/logger.js';
import { OpsServer } from './ops/http-server.js';
import { createLogger } from './ops/log.js';
import { createMetrics } from './ops/metrics.js';
import { Readiness } from './ops/readiness.js';
import { Forwarder, type RouteInfo } from './forward/forwarder.js';
import { MqttIngest } from './ingest/mqtt/index.js';
import { SerialIngest } from './ingest/serial/index.js';
import { Router } from './route/router.js';
import type { Spool } from './spool/interface.js';
import { SqliteSpool } from './spool/sqlite/sqlite-spool.js';
import { AmqpUpstream } from './upstream/amqp/amqp-upstream.js';
import type { UpstreamState } from './upstream/interface.js';

interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export class Gateway {
  readonly readiness = new Readiness();
  readonly #config: Config;
  /** The gateway's logger; every line carries the gatewayId. */
  readonly log: Logger;
  readonly spool: Spool;
  readonly router: Router;
  readonly upstream: AmqpUpstream | undefined;
  readonly forwarder: Forwarder | undefined;
  readonly mqtt: MqttIngest;
  readonly serial: SerialIngest;
  readonly #components: Component[];
  #started: Component[] = [];

  constructor(config: Config, log: Logger = createLogger({ level: config.log.level })) {
    this.#config = config;
    this.log = log.child({ gatewayId: config.gatewayId });
    this.router = new Router({ routes: config.routes, ...(config.spool.ttl === undefined ? {} : { defaultTtl: config.spool.ttl }) });
    this.spool = new SqliteSpool({ dataDir: config.dataDir, ...config.spool, log: this.log.child({ component: 'spool' }) });
    const upstream = config.upstream;
    if (upstream !== undefined) {
      this.upstream = new AmqpUpstream({
        urls: Array.isArray(upstream.url) ? upstream.url : [upstream.url],
        sasl: upstream.sasl,
        ...(upstream.tls === undefined ? {} : { tls: upstream.tls }),
        ...(upstream.username === undefined ? {} : { username: upstream.username }),
        ...(upstream.password === undefined ? {} : { password: upstream.password }),
        gatewayId: config.gatewayId,
        log: this.log.child({ component: 'upstream' }),
      });
      this.forwarder = new Forwarder({
        spool: this.spool, upstream: this.upstream, routeInfo: (address, topic) => this.#routeInfo(address, topic),
        log: this.log.child({ component: 'forward' }),
      });
      this.upstream.onState((state) => this.#upstreamReadiness(state));
    }
    this.mqtt = new MqttIngest({ config: config.mqtt, spool: this.spool, router: this.router, log: this.log.child({ component: 'mqtt' }) });
    this.serial = new SerialIngest({ ports: config.serial, spool: this.spool, router: this.router, log: this.log.child({ component: 'serial' }) });
    this.#components = [
      { name: 'dataDir', start: () => prepareDataDir(config.dataDir), stop: async () => {} },
      wrap('spool', this.spool),
      ...(this.upstream === undefined ? [] : [wrap('upstream', this.upstream)]),
      ...(this.forwarder === undefined ? [] : [wrap('forward', this.forwarder)]),
      // Devices are let in last, once there is somewhere to put their readings; and out first.
      wrap('mqtt', this.mqtt),
      wrap('serial', this.serial),
      wrap('http', new OpsServer({ ...config.http, readiness: this.readiness, metrics: this.#metrics(), log: this.log.child({ component: 'http' }) })),
    ];
  }

  async start(): Promise<void> {
    const config = this.#config;
    if (config.upstream === undefined) {
      this.readiness.set('upstream', { ready: false, reason: 'no upstream configured: readings wait in the spool' });
      this.log.warn({ dataDir: config.dataDir }, 'no upstream configured: readings wait in the spool until one is configured');
    } else {
      this.readiness.set('upstream', { ready: false, reason: 'connecting to the upstream' });
    }
    for (const component of this.#components) {
      try {
        await component.start();
      } catch (err) {
        await this.stop();
        throw err;
      }
      this.#started.push(component);
    }
    this.log.info({ dataDir: config.dataDir, mqtt: config.mqtt, http: config.http,
      upstream: config.upstream?.url ?? null, routes: config.routes.length }, 'gateway started');
  }

  /** SIGHUP: re-read what can be re-read safely (the certificates). */
  async reload(): Promise<void> {
    await this.upstream?.reload();
  }

  #metrics(): ReturnType<typeof createMetrics> {
    return createMetrics({
      spool: () => this.spool.stats(),
      ingested: () => sumCounts(this.mqtt.stats().ingested, this.serial.stats().ingested),
      rejected: () => sumCounts(this.mqtt.stats().rejected, this.serial.stats().rejected),
      forwarded: () => this.forwarder?.stats().forwarded ?? {},
      outcomes: () => this.forwarder?.stats().outcomes ?? {},
      upstream: () => {
        if (this.upstream === undefined) return undefined;
        const state = this.upstream.state();
        return { connected: state.connected, credit: this.upstream.credit(), reconnects: state.reconnects };
      },
    });
  }

  #routeInfo(address: string, topic?: string): RouteInfo {
    const route = (topic === undefined ? undefined : this.router.match(topic)) ?? this.router.routeForAddress(address);
    return { mode: route?.delivery ?? 'at-least-once', ...(route?.properties === undefined ? {} : { properties: route.properties }) };
  }

  #upstreamReadiness(state: UpstreamState): void {
    this.readiness.set('upstream', state.connected ? { ready: true }
      : { ready: false, reason: state.lastError === undefined ? 'connecting to the upstream' : `upstream not connected: ${state.lastError.message}` });
  }

  async stop(): Promise<void> {
    const started = this.#started.reverse();
    this.#started = [];
    for (const component of started) {
      try {
        await component.stop();
      } catch (err) {
        this.log.error({ err, component: component.name }, 'error while stopping');
      }
    }
  }
}

function sumCounts(...counts: Array<Record<string, number>>): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const c of counts) for (const [k, v] of Object.entries(c)) sum[k] = (sum[k] ?? 0) + v;
  return sum;
}

function wrap(name: string, component: { start(): Promise<void>; stop(): Promise<void> }): Component {
  return { name, start: () => component.start(), stop: () => component.stop() };
}

async function prepareDataDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new GatewayError('IO', `dataDir ${dir} is not a writable directory (${code})`, { cause: err });
  }
}
