/**
 * The composition root of `uplink run`: the pipeline (pipeline.ts: router, spool, upstream,
 * forwarder) with the ingest adapters, the downlink and the ops endpoints around it; starts them
 * in order and stops them in reverse.
 */
import { performance } from 'node:perf_hooks';
import type { Config } from './config/schema.js';
import { systemClock, type Clock } from './core/clock.js';
import type { GatewayError } from './core/errors.js';
import type { Logger } from './core/logger.js';
import { OpsServer } from './ops/http-server.js';
import { createLogger, type AppLogger } from './ops/log.js';
import { createMetrics } from './ops/metrics.js';
import { Rates } from './ops/rates.js';
import { Readiness, refusedAddresses } from './ops/readiness.js';
import { fingerprintStartFiles, reloadConfig, type Fingerprints, type ReloadResult } from './ops/reload.js';
import { SdNotify } from './ops/sd-notify.js';
import { buildStatus, sum, type Listener } from './ops/status.js';
import { Downlink } from './downlink/downlink.js';
import { ModbusIngest } from './ingest/modbus/index.js';
import { MqttIngest } from './ingest/mqtt/index.js';
import { SerialIngest } from './ingest/serial/index.js';
import { buildPipeline, named, type Component, type Pipeline, type PipelineUpstream } from './pipeline.js';
import type { Spool } from './spool/interface.js';
import type { UpstreamState } from './upstream/interface.js';
import { VERSION } from './version.js';

export { VERSION } from './version.js';

export interface GatewayOptions {
  /** The process environment: NOTIFY_SOCKET and WATCHDOG_USEC when systemd runs the gateway. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Log in the human format (stdout is a terminal) instead of JSON lines. */
  tty?: boolean;
  /**
   * The spool's storage failed (an I/O error, a failed fsync): nothing more is acknowledged, and
   * the process should end so that systemd restarts it (`uplink run` exits with 74). The spool
   * has logged why.
   */
  onFatal?: (error: GatewayError) => void;
  /** What readings are stamped with (core/clock.ts); the process's clock when unset. */
  clock?: Clock;
}

/** What a reload (SIGHUP) did; the rules are in ops/reload.ts. */
export type { ReloadResult } from './ops/reload.js';

const LISTENER_PROTOCOL: Record<string, string> = { tcp: 'mqtt', tls: 'mqtts', websocket: 'mqtt-ws' };

export class Gateway {
  readonly readiness = new Readiness();
  /** The config running now: the one started with, plus the keys reloaded since. */
  #config: Config;
  readonly #rootLog: Logger | AppLogger;
  /** The gateway's logger; every line carries the gatewayId. */
  readonly log: Logger;
  readonly spool: Spool;
  readonly router: Pipeline['router'];
  readonly upstream: PipelineUpstream | undefined;
  readonly forwarder: Pipeline['forwarder'];
  readonly mqtt: MqttIngest;
  readonly serial: SerialIngest;
  readonly modbus: ModbusIngest;
  /** Commands down to devices; undefined without `downlink` in the config. */
  readonly downlink: Downlink | undefined;
  readonly #components: Component[];
  readonly #http: OpsServer;
  readonly #rates: Rates;
  #started: Component[] = [];
  /** The start in progress, which stop() waits for. */
  #starting: Promise<void> | undefined;
  #stopRequested = false;
  /** Monotonic (performance.now()): a Pi without a clock jumps years when NTP first syncs. */
  #startedAt = performance.now();
  /** Of the files read only at start (ops/reload.ts), taken just before the MQTT listeners read them. */
  #fingerprints: Fingerprints = new Map();

  constructor(config: Config, log?: Logger, options: GatewayOptions = {}) {
    this.#config = config;
    this.#rootLog = log ?? createLogger({ level: config.log.level, format: options.tty === true ? 'pretty' : 'json' });
    this.log = this.#rootLog.child({ gatewayId: config.gatewayId });
    const clock = options.clock ?? systemClock;
    const pipeline = buildPipeline(config, { log: this.log, clock, ...(options.onFatal === undefined ? {} : { onFatal: options.onFatal }) });
    this.router = pipeline.router;
    this.spool = pipeline.spool;
    this.upstream = pipeline.upstream;
    this.forwarder = pipeline.forwarder;
    this.upstream?.onState((state) => this.#upstreamReadiness(state));
    // Readings are stamped with the step-free clock the spool expects (core/clock.ts).
    const now = (): number => clock.now();
    this.mqtt = new MqttIngest({ config: config.mqtt, spool: this.spool, router: this.router, log: this.log.child({ component: 'mqtt' }), now });
    this.serial = new SerialIngest({ ports: config.serial, spool: this.spool, router: this.router, log: this.log.child({ component: 'serial' }), now });
    this.modbus = new ModbusIngest({ buses: config.modbus.buses, spool: this.spool, router: this.router, log: this.log.child({ component: 'modbus' }), now });
    const downlink = config.downlink;
    this.downlink = downlink === undefined || this.upstream === undefined ? undefined : new Downlink({
      source: this.upstream, replies: downlink.replies ? this.upstream : undefined,
      address: downlink.address, credit: downlink.credit, mqttTimeoutMs: downlink.mqttTimeout,
      targets: { mqtt: this.mqtt, ...(config.modbus.buses.length > 0 ? { modbus: this.modbus } : {}) },
      log: this.log.child({ component: 'downlink' }),
    });
    this.#rates = new Rates({ read: () => ({ ingested: sum(this.#ingested()), forwarded: sum(this.forwarder?.stats().forwarded ?? {}) }) });
    this.#http = new OpsServer({
      ...config.http, readiness: this.readiness, metrics: this.#metrics(), status: () => this.status(), log: this.log.child({ component: 'http' }),
    });
    this.#components = [
      ...pipeline.components,
      { name: 'fingerprints', start: async () => { this.#fingerprints = await fingerprintStartFiles(config); }, stop: async () => {} },
      // Devices are let in last, once there is somewhere to put their readings; and out first.
      named('mqtt', this.mqtt),
      named('serial', this.serial),
      named('modbus', this.modbus),
      // Commands go to the devices: taken once the adapters that carry them run, and stopped first.
      ...(this.downlink === undefined ? [] : [named('downlink', this.downlink)]),
      named('rates', this.#rates),
      named('http', this.#http),
      // Last: systemd hears READY=1 only once everything runs, and STOPPING=1 first thing.
      named('systemd', new SdNotify({ env: options.env ?? {}, pid: process.pid, log: this.log.child({ component: 'systemd' }) })),
    ];
  }

  /**
   * Starts the components in order. When one cannot start, those started before it are stopped
   * and the error is thrown. A stop() meanwhile lets the component being started finish, starts
   * no other, and this resolves without 'gateway started' (stop() then stops what did start).
   */
  async start(): Promise<void> {
    const starting = this.#start();
    this.#starting = starting;
    try {
      await starting;
    } finally {
      if (this.#starting === starting) this.#starting = undefined;
    }
  }

  async #start(): Promise<void> {
    const config = this.#config;
    if (config.upstream === undefined) {
      this.readiness.set('upstream', { ready: false, reason: 'no upstream configured: readings wait in the spool' });
      this.log.warn({ dataDir: config.dataDir }, 'no upstream configured: readings wait in the spool until one is configured');
    } else {
      this.readiness.set('upstream', { ready: false, reason: 'connecting to the upstream' });
    }
    this.#startedAt = performance.now();
    for (const component of this.#components) {
      if (this.#stopRequested) {
        this.log.info({ before: component.name }, 'start interrupted by stop');
        return;
      }
      try {
        await component.start();
      } catch (err) {
        await this.#stopStarted();
        throw err;
      }
      this.#started.push(component);
    }
    this.log.info(this.#summary(), 'gateway started');
  }

  /**
   * What runs, for the log: listeners, auth mode and counts, never a whole config object (it
   * holds password hashes, and whatever secret a later key adds).
   */
  #summary(): Record<string, unknown> {
    const config = this.#config;
    const mqtt = config.mqtt;
    return {
      dataDir: config.dataDir,
      listeners: this.#listeners().map((l) => `${l.protocol} ${l.host}:${l.port}`),
      mqtt: {
        auth: mqtt.auth, users: mqtt.users.length, usersFile: mqtt.usersFile ?? null,
        acl: mqtt.acl === undefined ? null : mqtt.acl.length, maxConnections: mqtt.maxConnections,
      },
      serial: config.serial.map((port) => port.name),
      modbus: config.modbus.buses.map((bus) => bus.name),
      downlink: config.downlink?.address ?? null,
      upstream: config.upstream === undefined ? null : { url: config.upstream.url, sasl: config.upstream.sasl },
      routes: config.routes.length,
    };
  }

  /**
   * SIGHUP: takes over what can change safely while running (the log level, from `next`, the
   * config file read again), re-reads the upstream certificates, and names what needs a restart:
   * other changed keys, and new contents of files read only at start. The rules: ops/reload.ts.
   */
  async reload(next?: Config): Promise<ReloadResult> {
    const root = this.#rootLog;
    const { result, running } = await reloadConfig({
      running: this.#config,
      next,
      fingerprints: this.#fingerprints,
      setLogLevel: 'setLevel' in root ? (level) => root.setLevel(level) : undefined,
      upstream: this.upstream,
    });
    this.#config = running;
    return result;
  }

  /** The document of GET /status. */
  status(): Record<string, unknown> {
    const config = this.#config;
    return buildStatus({
      gatewayId: config.gatewayId,
      version: VERSION,
      uptimeMs: () => performance.now() - this.#startedAt,
      readiness: () => this.readiness.snapshot(),
      listeners: () => this.#listeners(),
      serial: () => {
        const ports = this.serial.stats().ports;
        return config.serial.map((port) => ({ name: port.name, path: port.path, open: ports[port.name]?.open ?? false }));
      },
      modbus: () => Object.entries(this.modbus.stats().buses).map(([name, bus]) => ({
        name, open: bus.open, devices: Object.entries(bus.devices).map(([device, d]) => ({ name: device, unitId: d.unitId, online: d.online })),
      })),
      downlink: () => {
        const downlink = this.downlink;
        if (downlink === undefined || config.downlink === undefined) return undefined;
        const stats = downlink.stats();
        return { address: config.downlink.address, attached: stats.attached, received: stats.received, inProgress: stats.inProgress, outcomes: stats.outcomes, replies: stats.replies };
      },
      upstream: () => {
        if (this.upstream === undefined) return undefined;
        return { ...this.upstream.state(), credit: this.upstream.credit() };
      },
      spool: () => this.spool.stats(),
      ingested: () => this.#ingested(),
      forwarded: () => this.forwarder?.stats().forwarded ?? {},
      rejected: () => this.#rejected(),
      rates: () => this.#rates.rates(),
      routes: config.routes.map((route) => ({ topic: route.topic, address: route.address, delivery: route.delivery })),
      routeOf: (address) => {
        const route = this.router.routeForAddress(address);
        return route === undefined ? undefined : config.routes.indexOf(route as Config['routes'][number]);
      },
    });
  }

  /** Every socket the gateway listens on: the MQTT listeners, then the HTTP endpoints. */
  #listeners(): Listener[] {
    const listeners: Listener[] = this.mqtt.listening.map((l) => ({ protocol: LISTENER_PROTOCOL[l.kind] ?? l.kind, host: l.host, port: l.port }));
    const http = this.#http.address();
    if (http !== undefined) listeners.push({ protocol: 'http', ...http });
    return listeners;
  }

  #ingested(): Record<string, number> {
    return sumCounts(this.mqtt.stats().ingested, this.serial.stats().ingested, this.modbus.stats().ingested);
  }

  #rejected(): Record<string, number> {
    return sumCounts(this.mqtt.stats().rejected, this.serial.stats().rejected, this.modbus.stats().rejected);
  }

  #metrics(): ReturnType<typeof createMetrics> {
    const downlink = this.downlink;
    return createMetrics({
      spool: () => this.spool.stats(),
      ingested: () => this.#ingested(),
      rejected: () => this.#rejected(),
      forwarded: () => this.forwarder?.stats().forwarded ?? {},
      outcomes: () => this.forwarder?.stats().outcomes ?? {},
      released: () => this.forwarder?.stats().released ?? {},
      held: () => this.forwarder?.stats().held ?? 0,
      upstream: () => {
        if (this.upstream === undefined) return undefined;
        const state = this.upstream.state();
        return { connected: state.connected, credit: this.upstream.credit(), reconnects: state.reconnects, refusedAddresses: state.refused?.length ?? 0 };
      },
      connections: () => ({ mqtt: this.mqtt.stats().connections, serial: this.serial.stats().connections, modbus: this.modbus.stats().connections }),
      modbusDevices: () => Object.entries(this.modbus.stats().buses)
        .flatMap(([bus, stats]) => Object.entries(stats.devices).map(([device, d]) => ({ bus, device, online: d.online }))),
      downlink: () => this.downlink?.stats().outcomes,
      ...(downlink === undefined ? {} : { downlinkState: () => downlink.stats() }),
      info: { version: VERSION, gatewayId: this.#config.gatewayId },
    });
  }

  #upstreamReadiness(state: UpstreamState): void {
    this.readiness.set('upstream', state.connected ? { ready: true }
      : { ready: false, reason: state.lastError === undefined ? 'connecting to the upstream' : `upstream not connected: ${state.lastError.message}` });
    if (state.refused === undefined) this.readiness.delete('upstream-addresses');
    else this.readiness.set('upstream-addresses', refusedAddresses(state.refused));
  }

  /**
   * Stops what started, in reverse; a start in progress is let finish first (it starts no more).
   * A gateway runs once: after stop(), start() starts nothing.
   */
  async stop(): Promise<void> {
    this.#stopRequested = true;
    // Its failure is start()'s to report; here it only has to be over.
    await this.#starting?.catch(() => {});
    await this.#stopStarted();
  }

  async #stopStarted(): Promise<void> {
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
