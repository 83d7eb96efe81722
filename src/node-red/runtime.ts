/**
 * What one `uplink-upstream` config node owns: the same router, SQLite spool, AMQP upstream and
 * forwarder that the gateway runs (gateway.ts), wired the same way, without the MQTT and serial
 * ingest. The nodes that use the config node share it; Node-RED messages enter it through
 * `append`, which resolves only once the readings are committed to disk.
 *
 * Errors: `start` fails with the spool's GatewayError (SPOOL_CORRUPT, IO); the upstream never
 * fails `start` (it reconnects by itself and reports through `snapshot().lastError`).
 */
import { mkdir } from 'node:fs/promises';
import type { Config } from '../config/schema.js';
import type { Envelope } from '../core/envelope.js';
import { GatewayError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { Forwarder, type ForwardStats } from '../forward/forwarder.js';
import { Router } from '../route/router.js';
import type { SpoolStats } from '../spool/interface.js';
import { SqliteSpool } from '../spool/sqlite/sqlite-spool.js';
import { AmqpUpstream } from '../upstream/amqp/amqp-upstream.js';
import { upstreamOptions } from '../upstream/amqp/settings.js';
import type { UpstreamReceiver, UpstreamReceiverOptions } from '../upstream/downlink.js';
import type { UpstreamState } from '../upstream/interface.js';

export interface UplinkSnapshot {
  gatewayId: string;
  upstream: UpstreamState & { credit: number };
  spool: SpoolStats;
  forward: ForwardStats;
}

export interface UplinkRuntimeOptions {
  /** A validated config (config/load.ts parseConfig) with an upstream. */
  config: Config;
  log: Logger;
  /** How often listeners of `onChange` are told about a changed spool depth. Default 1000 ms. */
  refreshMs?: number;
  /** Reconnect backoff (tests shorten it). */
  backoff?: { baseMs: number; capMs: number };
  /** The AMQP container id of the connection; the gateway id when unset. */
  containerId?: string;
}

export class UplinkRuntime {
  readonly config: Config;
  readonly router: Router;
  readonly spool: SqliteSpool;
  readonly upstream: AmqpUpstream;
  readonly forwarder: Forwarder;
  readonly #log: Logger;
  readonly #refreshMs: number;
  readonly #listeners = new Set<() => void>();
  #starting: Promise<void> | undefined;
  #running = false;
  #timer: NodeJS.Timeout | undefined;
  #lastKey = '';

  constructor(options: UplinkRuntimeOptions) {
    const { config } = options;
    const upstream = config.upstream;
    if (upstream === undefined) throw new GatewayError('CONFIG_INVALID', 'upstream: is required');
    this.config = config;
    this.#log = options.log;
    this.#refreshMs = options.refreshMs ?? 1000;
    this.router = new Router({ routes: config.routes, ...(config.spool.ttl === undefined ? {} : { defaultTtl: config.spool.ttl }) });
    this.spool = new SqliteSpool({ dataDir: config.dataDir, ...config.spool, log: this.#log.child({ component: 'spool' }) });
    this.upstream = new AmqpUpstream(upstreamOptions(upstream, {
      gatewayId: config.gatewayId, log: this.#log.child({ component: 'upstream' }),
      ...(options.containerId === undefined ? {} : { containerId: options.containerId }),
      ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
    }));
    this.forwarder = new Forwarder({
      spool: this.spool, upstream: this.upstream, route: (address, topic) => this.router.routeFor(address, topic),
      log: this.#log.child({ component: 'forward' }),
    });
    this.upstream.onState(() => this.#changed(true));
  }

  /** Starts once; every caller gets the same promise. */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    try {
      await mkdir(this.config.dataDir, { recursive: true });
    } catch (err) {
      throw new GatewayError('IO', `spool directory ${this.config.dataDir} cannot be created (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
    await this.spool.start();
    try {
      await this.upstream.start();
      await this.forwarder.start();
    } catch (err) {
      await this.spool.stop();
      throw err;
    }
    this.#running = true;
    this.#log.info({ dataDir: this.config.dataDir, routes: this.config.routes.length }, 'uplink started');
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#listeners.clear();
    const starting = this.#starting;
    if (starting === undefined) return;
    // A start still under way is finished first, so that its spool is closed too.
    const started = await starting.then(() => true, () => false);
    if (!started) return;
    this.#running = false;
    await this.forwarder.stop();
    await this.upstream.stop();
    await this.spool.stop();
  }

  get running(): boolean {
    return this.#running;
  }

  /** Routes and stores Node-RED readings; resolves once they are on disk. */
  async append(envelopes: readonly Envelope[], signal?: AbortSignal): Promise<void> {
    await this.start();
    const readings = envelopes.map((envelope) => {
      const reading = this.router.route(envelope);
      if (reading === undefined) throw new GatewayError('BAD_INPUT', `no route matches topic ${JSON.stringify(envelope.topic)}`);
      return reading;
    });
    await this.spool.append(readings, signal === undefined ? undefined : { signal });
    this.#changed(false);
  }

  receiver(options: UpstreamReceiverOptions): UpstreamReceiver {
    return this.upstream.receiver(options);
  }

  snapshot(): UplinkSnapshot {
    return {
      gatewayId: this.config.gatewayId,
      upstream: { ...this.upstream.state(), credit: this.upstream.credit() },
      spool: this.spool.stats(),
      forward: this.forwarder.stats(),
    };
  }

  /** Called when the connection changes, and (at most every refreshMs) when the spool depth does. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    this.#timer ??= setInterval(() => this.#changed(false), this.#refreshMs).unref();
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  #changed(always: boolean): void {
    if (!this.#running && !always) return;
    const state = this.upstream.state();
    const key = `${state.connected}|${state.lastError?.at ?? ''}|${this.#running ? this.spool.stats().depth : ''}`;
    if (!always && key === this.#lastKey) return;
    this.#lastKey = key;
    for (const listener of this.#listeners) listener();
  }
}
