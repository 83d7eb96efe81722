/**
 * `GET /status`: one JSON document a person (or `uplink status`) reads to see how the gateway
 * does: version, uptime, listeners, upstream, spool, rates and counters per route. Like the
 * metrics, every figure is read at request time from the component that owns it.
 *
 * Counters are kept per target address by ingest and forward. A route's figures are those of the
 * addresses it produces; an address two routes can produce counts under the first of them (the
 * route the forwarder also takes its delivery mode from).
 */
import type { Condition } from './readiness.js';

export interface Listener {
  protocol: string;
  host: string;
  port: number;
}

export interface StatusSource {
  gatewayId: string;
  version: string;
  /** Since start, from a monotonic clock (a clock set by NTP after boot must not move it). */
  uptimeMs(): number;
  readiness(): { ready: boolean; conditions: Record<string, Condition> };
  listeners(): Listener[];
  serial(): Array<{ name: string; path: string; open: boolean }>;
  modbus?(): Array<{ name: string; open: boolean; devices: Array<{ name: string; unitId: number; online: boolean }> }>;
  /** Undefined without a downlink. */
  downlink?(): {
    address: string; attached: boolean; received: number; inProgress: number;
    outcomes: Record<string, number>; replies: { sent: number; failed: number };
  } | undefined;
  upstream(): {
    connected: boolean; url: string; credit: number; reconnects: number;
    lastError?: { code: string; message: string; at: number };
  } | undefined;
  spool(): {
    depth: number; bytes: number; oldestAgeMs: number; inFlight: number; deadLetters: number; deadLettered: number;
    dropped: Record<string, number>; blocked: boolean; diskFull: boolean; byAddress: Record<string, number>;
  };
  ingested(): Record<string, number>;
  forwarded(): Record<string, number>;
  rejected(): Record<string, number>;
  rates(): { windowSeconds: number; perSecond: Record<string, number> };
  routes: ReadonlyArray<{ topic: string; address: string; delivery: string }>;
  /** Index in `routes` of the route that produces `address`. */
  routeOf(address: string): number | undefined;
}

export interface AddressFigures {
  ingested: number;
  forwarded: number;
  /** In the spool now (waiting or in flight). */
  spooled: number;
}

export function buildStatus(source: StatusSource): Record<string, unknown> {
  const uptimeMs = source.uptimeMs();
  const spool = source.spool();
  const ingested = source.ingested();
  const forwarded = source.forwarded();
  const byAddress = new Map<string, AddressFigures>();
  for (const address of new Set([...Object.keys(ingested), ...Object.keys(forwarded), ...Object.keys(spool.byAddress)])) {
    byAddress.set(address, { ingested: ingested[address] ?? 0, forwarded: forwarded[address] ?? 0, spooled: spool.byAddress[address] ?? 0 });
  }
  const routes = source.routes.map((route) => ({ ...route, ingested: 0, forwarded: 0, spooled: 0, addresses: {} as Record<string, AddressFigures> }));
  const unrouted: Record<string, AddressFigures> = {};
  for (const [address, figures] of byAddress) {
    const route = routes[source.routeOf(address) ?? -1];
    if (route === undefined) {
      // Readings spooled under an earlier config whose routes no longer produce the address.
      unrouted[address] = figures;
      continue;
    }
    route.addresses[address] = figures;
    route.ingested += figures.ingested;
    route.forwarded += figures.forwarded;
    route.spooled += figures.spooled;
  }
  const upstream = source.upstream();
  const rates = source.rates();
  const readiness = source.readiness();
  return {
    gatewayId: source.gatewayId,
    version: source.version,
    pid: process.pid,
    // On the wall clock as it is now: the same instant as the uptime, whatever NTP did since.
    startedAt: new Date(Date.now() - uptimeMs).toISOString(),
    uptimeSeconds: Math.round(uptimeMs / 100) / 10,
    ready: readiness.ready,
    conditions: readiness.conditions,
    listeners: source.listeners(),
    serial: source.serial(),
    modbus: { buses: source.modbus?.() ?? [] },
    downlink: source.downlink?.() ?? null,
    upstream: upstream === undefined ? null : {
      connected: upstream.connected, url: upstream.url, credit: upstream.credit, reconnects: upstream.reconnects,
      lastError: upstream.lastError === undefined ? null
        : { code: upstream.lastError.code, message: upstream.lastError.message, at: new Date(upstream.lastError.at).toISOString() },
    },
    spool: {
      depth: spool.depth, bytes: spool.bytes, inFlight: spool.inFlight, oldestAgeSeconds: Math.round(spool.oldestAgeMs / 100) / 10,
      deadLetters: spool.deadLetters, deadLettered: spool.deadLettered, dropped: spool.dropped,
      blocked: spool.blocked, diskFull: spool.diskFull,
    },
    totals: { ingested: sum(ingested), forwarded: sum(forwarded), rejected: source.rejected() },
    rates: { windowSeconds: rates.windowSeconds, ingestedPerSecond: rates.perSecond.ingested ?? 0, forwardedPerSecond: rates.perSecond.forwarded ?? 0 },
    routes,
    unroutedAddresses: unrouted,
  };
}

export function sum(counts: Record<string, number>): number {
  let total = 0;
  for (const n of Object.values(counts)) total += n;
  return total;
}
