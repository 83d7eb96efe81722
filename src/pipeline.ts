/**
 * The pipeline every reading takes, built from a config in one place: router, spool, upstream and
 * the forwarder between them. The gateway (gateway.ts) puts the ingest adapters, the downlink and
 * the ops endpoints around it; a Node-RED config node (node-red/runtime.ts) feeds it Node-RED
 * messages. This is the only file that names the concrete spool (SQLite) and upstream (AMQP):
 * callers see the interfaces of spool/interface.ts and upstream/interface.ts.
 *
 * Start order: the data directory (created, and checked writable), the spool, the upstream, the
 * forwarder. Stop in reverse: the forwarder stops leasing before its upstream goes, and the spool,
 * which everything writes to, closes last.
 */
import { access, constants, mkdir } from 'node:fs/promises';
import type { Config } from './config/schema.js';
import type { Clock } from './core/clock.js';
import { GatewayError } from './core/errors.js';
import type { Logger } from './core/logger.js';
import { Forwarder } from './forward/forwarder.js';
import { Router } from './route/router.js';
import type { Spool } from './spool/interface.js';
import { SqliteSpool } from './spool/sqlite/sqlite-spool.js';
import { AmqpUpstream } from './upstream/amqp/amqp-upstream.js';
import { upstreamOptions } from './upstream/amqp/settings.js';
import type { DownlinkSource } from './upstream/downlink.js';
import type { Upstream } from './upstream/interface.js';

export type { ForwardStats } from './forward/forwarder.js';

/** Something with a start and a stop, named for the logs. */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The upstream as the callers use it: sends (Upstream) and receives (the downlink). */
export type PipelineUpstream = Upstream & DownlinkSource;

export interface PipelineOptions {
  log: Logger;
  /** What readings are stamped with and the spool corrects for (core/clock.ts); the process's clock when unset. */
  clock?: Clock;
  /** The spool's storage failed (spool/interface.ts, STORAGE_FAILED); unset: only its calls fail. */
  onFatal?: (error: GatewayError) => void;
  /** The AMQP container id of the connection; the gateway id when unset. */
  containerId?: string;
  /** Reconnect backoff (tests shorten it). */
  backoff?: { baseMs: number; capMs: number };
}

export interface Pipeline {
  readonly router: Router;
  readonly spool: Spool;
  /** Undefined without `upstream` in the config: readings wait in the spool. */
  readonly upstream: PipelineUpstream | undefined;
  /** Undefined without an upstream. */
  readonly forwarder: Forwarder | undefined;
  /** In start order (see the head); for a caller that starts more around them. */
  readonly components: readonly Component[];
  /** Starts the components in order; when one fails, stops those started, in reverse, and throws. */
  start(): Promise<void>;
  /** Stops what started, in reverse, each even when one before failed; then throws the first error. */
  stop(): Promise<void>;
}

export function buildPipeline(config: Config, options: PipelineOptions): Pipeline {
  const { log } = options;
  const router = new Router({ routes: config.routes, ...(config.spool.ttl === undefined ? {} : { defaultTtl: config.spool.ttl }) });
  const spool = new SqliteSpool({
    dataDir: config.dataDir, ...config.spool, log: log.child({ component: 'spool' }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.onFatal === undefined ? {} : { onFatal: options.onFatal }),
  });
  let upstream: AmqpUpstream | undefined;
  let forwarder: Forwarder | undefined;
  if (config.upstream !== undefined) {
    upstream = new AmqpUpstream(upstreamOptions(config.upstream, {
      gatewayId: config.gatewayId, log: log.child({ component: 'upstream' }),
      ...(options.containerId === undefined ? {} : { containerId: options.containerId }),
      ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
    }));
    forwarder = new Forwarder({
      spool, upstream, route: (address, topic) => router.routeFor(address, topic), log: log.child({ component: 'forward' }),
    });
  }
  const components: Component[] = [
    { name: 'dataDir', start: () => prepareDataDir(config.dataDir), stop: async () => {} },
    named('spool', spool),
    ...(upstream === undefined ? [] : [named('upstream', upstream)]),
    ...(forwarder === undefined ? [] : [named('forward', forwarder)]),
  ];
  let started: Component[] = [];
  const stop = async (): Promise<void> => {
    const stopping = started.reverse();
    started = [];
    let first: unknown;
    for (const component of stopping) {
      try {
        await component.stop();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  };
  return {
    router, spool, upstream, forwarder, components,
    async start() {
      for (const component of components) {
        try {
          await component.start();
        } catch (err) {
          // The start's error is the one to report; a failing stop of the rest cannot add to it.
          await stop().catch(() => {});
          throw err;
        }
        started.push(component);
      }
    },
    stop,
  };
}

/** A component under `name`; its methods called on it, so that a test may replace one. */
export function named(name: string, component: { start(): Promise<void>; stop(): Promise<void> }): Component {
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
