/**
 * Prometheus metrics. Nothing is counted twice: every value is read from the component that owns
 * it (spool, ingest, forwarder, upstream) at scrape time, through `MetricsSource`.
 *
 * Label sets are bounded: `{N}` address templates give one address per device, and one series per
 * device would grow the scrape (and the Prometheus server) with the fleet. Each labelled metric
 * shows at most `maxLabelValues` values of its label (the first seen), and sums the rest under
 * `_other`; a value once shown keeps its series (core/bounded-counts.ts).
 */
import { BoundedKeys, MAX_KEYS } from '../core/bounded-counts.js';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { monotonicMs } from '../core/clock.js';

export interface MetricsSource {
  spool(): {
    depth: number; bytes: number; oldestAgeMs: number; inFlight: number; deadLettered: number; deadLetters: number;
    dropped: Record<string, number>; commits: number; blocked: boolean; diskFull: boolean;
  };
  /** Readings stored, by address. */
  ingested(): Record<string, number>;
  /** Readings refused at ingest, by reason. */
  rejected(): Record<string, number>;
  /** Readings accepted upstream, by address. */
  forwarded(): Record<string, number>;
  /** Outcomes from the upstream, by kind. */
  outcomes(): Record<string, number>;
  /** Readings the upstream did not take (released or modified), by address; each holds its address back a while. */
  released?(): Record<string, number>;
  /** Addresses waiting after a release now. */
  held?(): number;
  /** `refusedAddresses`: addresses whose link the broker refuses now. */
  upstream(): { connected: boolean; credit: number; reconnects: number; refusedAddresses?: number } | undefined;
  /** Open device connections by adapter (mqtt clients, open serial ports, open Modbus buses). */
  connections(): Record<string, number>;
  /** Modbus devices and whether they answer. */
  modbusDevices?(): Array<{ bus: string; device: string; online: boolean }>;
  /** Downlink commands settled, by outcome (accepted, rejected, released); undefined without a downlink. */
  downlink?(): Record<string, number> | undefined;
  /** The downlink's link and replies; given only when there is a downlink (its series exist only then). */
  downlinkState?(): { attached: boolean; inProgress: number; replies: { sent: number; failed: number } };
  /** Constant labels of `uplink_build_info`. */
  info: { version: string; gatewayId: string };
}

export interface MetricsOptions {
  /** Distinct values of a label per metric before the rest are summed under `_other`. Default 100. */
  maxLabelValues?: number;
}

export function createMetrics(input: MetricsSource, options: MetricsOptions = {}): Registry {
  const maxLabelValues = options.maxLabelValues ?? MAX_KEYS;
  // One scrape reads many spool figures; read the spool once per scrape, not once per figure.
  let cached: { at: number; stats: ReturnType<MetricsSource['spool']> } | undefined;
  const source: MetricsSource = {
    ...input,
    spool: () => {
      if (cached === undefined || monotonicMs() - cached.at > 50) cached = { at: monotonicMs(), stats: input.spool() };
      return cached.stats;
    },
  };
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  };
  const counter = (name: string, help: string, read: () => number): void => {
    new Counter({ name, help, registers: [registry], collect() { this.reset(); this.inc(read()); } });
  };
  const labelled = (name: string, help: string, label: string, read: () => Record<string, number>): void => {
    const bound = new BoundedKeys(maxLabelValues);
    new Counter({
      name, help, labelNames: [label], registers: [registry],
      collect() {
        this.reset();
        for (const [value, n] of bound.apply(read())) this.inc({ [label]: value }, n);
      },
    });
  };
  gauge('uplink_spool_depth', 'Readings in the spool (waiting or in flight).', () => source.spool().depth);
  gauge('uplink_spool_bytes', 'Payload bytes in the spool.', () => source.spool().bytes);
  gauge('uplink_spool_oldest_age_seconds', 'Age of the oldest reading in the spool.', () => source.spool().oldestAgeMs / 1000);
  gauge('uplink_spool_in_flight', 'Readings sent and not yet settled by the upstream.', () => source.spool().inFlight);
  gauge('uplink_spool_dead_letters', 'Readings in the dead-letter store.', () => source.spool().deadLetters);
  gauge('uplink_spool_disk_full', '1 while commits fail for lack of disk space.', () => (source.spool().diskFull ? 1 : 0));
  gauge('uplink_spool_blocked', '1 while appends wait for room (spool full under block, or disk full).', () => (source.spool().blocked ? 1 : 0));
  counter('uplink_spool_commits_total', 'Spool transactions committed.', () => source.spool().commits);
  counter('uplink_dead_lettered_total', 'Readings moved to the dead-letter store.', () => source.spool().deadLettered);
  labelled('uplink_dropped_total', 'Readings dropped by the spool, by reason (expired, evicted).', 'reason', () => source.spool().dropped);
  labelled('uplink_ingested_total', 'Readings stored in the spool, by target address.', 'address', () => source.ingested());
  labelled('uplink_ingest_rejected_total', 'Readings refused at ingest, by reason.', 'reason', () => source.rejected());
  labelled('uplink_forwarded_total', 'Readings accepted by the upstream, by target address.', 'address', () => source.forwarded());
  labelled('uplink_upstream_outcomes_total', 'Outcomes from the upstream, by kind.', 'outcome', () => source.outcomes());
  gauge('uplink_upstream_connected', '1 while connected to the upstream.', () => (source.upstream()?.connected ? 1 : 0));
  gauge('uplink_upstream_credit', 'Link credit the upstream grants now, over all links.', () => source.upstream()?.credit ?? 0);
  counter('uplink_upstream_reconnects_total', 'Connections to the upstream made again after a loss.', () => source.upstream()?.reconnects ?? 0);
  labelled('uplink_upstream_released_total', 'Readings the upstream did not take (released or modified, e.g. unroutable), by target address.', 'address',
    () => source.released?.() ?? {});
  gauge('uplink_forward_held_addresses', 'Addresses waiting before they send again, after the upstream released a reading of theirs.', () => source.held?.() ?? 0);
  gauge('uplink_upstream_refused_addresses', 'Addresses whose link the upstream refuses now (e.g. a queue that does not exist); their readings wait.',
    () => source.upstream()?.refusedAddresses ?? 0);
  new Gauge({
    name: 'uplink_ingest_connections', help: 'Open device connections: MQTT clients, open serial ports.', labelNames: ['adapter'], registers: [registry],
    collect() {
      for (const [adapter, n] of Object.entries(source.connections())) this.set({ adapter }, n);
    },
  });
  new Gauge({
    name: 'uplink_modbus_device_online', help: '1 while a Modbus device answers, 0 while it is offline.', labelNames: ['bus', 'device'], registers: [registry],
    collect() {
      this.reset();
      for (const d of source.modbusDevices?.() ?? []) this.set({ bus: d.bus, device: d.device }, d.online ? 1 : 0);
    },
  });
  labelled('uplink_downlink_commands_total', 'Commands received from the upstream, by outcome (accepted, rejected, released).', 'outcome',
    () => source.downlink?.() ?? {});
  const downlinkState = source.downlinkState;
  if (downlinkState !== undefined) {
    gauge('uplink_downlink_attached', '1 while the link commands come on is attached.', () => (downlinkState().attached ? 1 : 0));
    gauge('uplink_downlink_in_progress', 'Commands being carried out (received, not settled yet).', () => downlinkState().inProgress);
    labelled('uplink_downlink_replies_total', 'Replies to commands, by result (sent: accepted by the broker; failed: not delivered).', 'result',
      () => ({ sent: downlinkState().replies.sent, failed: downlinkState().replies.failed }));
  }
  new Gauge({ name: 'uplink_build_info', help: 'Always 1; the labels say which uplink runs.', labelNames: ['version', 'gateway_id'], registers: [registry] })
    .set({ version: input.info.version, gateway_id: input.info.gatewayId }, 1);
  return registry;
}
