/**
 * What one `uplink-upstream` config node owns: the pipeline the gateway runs (pipeline.ts: router,
 * spool, upstream, forwarder), without the MQTT and serial ingest. The nodes that use the config
 * node share it; Node-RED messages enter it through `append`, which resolves only once the
 * readings are committed to disk.
 *
 * Errors: `start` fails with the spool's GatewayError (SPOOL_CORRUPT, IO); the upstream never
 * fails `start` (it reconnects by itself and reports through `snapshot().lastError`).
 */
import type { Config } from '../config/schema.js';
import type { Envelope } from '../core/envelope.js';
import { GatewayError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { buildPipeline, type ForwardStats, type Pipeline, type PipelineUpstream } from '../pipeline.js';
import type { Spool, SpoolStats } from '../spool/interface.js';
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
  readonly #pipeline: Pipeline;
  readonly router: Pipeline['router'];
  readonly spool: Spool;
  readonly upstream: PipelineUpstream;
  readonly forwarder: NonNullable<Pipeline['forwarder']>;
  readonly #log: Logger;
  readonly #refreshMs: number;
  readonly #listeners = new Set<() => void>();
  #starting: Promise<void> | undefined;
  #running = false;
  #timer: NodeJS.Timeout | undefined;
  #lastKey = '';

  constructor(options: UplinkRuntimeOptions) {
    const { config } = options;
    this.config = config;
    this.#log = options.log;
    this.#refreshMs = options.refreshMs ?? 1000;
    const pipeline = buildPipeline(config, {
      log: this.#log,
      ...(options.containerId === undefined ? {} : { containerId: options.containerId }),
      ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
    });
    const { upstream, forwarder } = pipeline;
    if (upstream === undefined || forwarder === undefined) throw new GatewayError('CONFIG_INVALID', 'upstream: is required');
    this.#pipeline = pipeline;
    this.router = pipeline.router;
    this.spool = pipeline.spool;
    this.upstream = upstream;
    this.forwarder = forwarder;
    this.upstream.onState(() => this.#changed(true));
  }

  /** Starts once; every caller gets the same promise. */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    await this.#pipeline.start();
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
    await this.#pipeline.stop();
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
