/**
 * The real spool, upstream and forwarder, wired as the gateway wires them, in-process, so tests
 * can fill the spool and watch it drain to a real broker.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/core/clock.js';
import type { RoutedReading } from '../../src/core/envelope.js';
import { newReadingId } from '../../src/core/ids.js';
import { Forwarder } from '../../src/forward/forwarder.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { AmqpUpstream, type AmqpUpstreamOptions } from '../../src/upstream/amqp/amqp-upstream.js';
import type { CertPair, TestPki } from '../peers/certs.js';
import { memoryLogger } from '../peers/memory-log.js';
import { spoolOptions } from '../spool/options.js';

export interface Pipeline {
  spool: SqliteSpool;
  upstream: AmqpUpstream;
  forwarder: Forwarder;
  lines: Array<Record<string, unknown>>;
  dataDir: string;
  stop(): Promise<void>;
}

export interface PipelineOptions {
  url: string;
  /** Needed for amqps:// (SASL EXTERNAL with pki.client); without it the upstream is plain amqp:// with SASL ANONYMOUS. */
  pki?: TestPki;
  client?: CertPair;
  ca?: string;
  mode?: 'at-least-once' | 'at-most-once';
  properties?: Record<string, string | number | boolean>;
  dataDir?: string;
  upstream?: Partial<AmqpUpstreamOptions>;
  maxAttempts?: number;
}

export async function startPipeline(options: PipelineOptions): Promise<Pipeline> {
  const { log, lines } = memoryLogger();
  const dataDir = options.dataDir ?? join(mkdtempSync(join(tmpdir(), 'uplink-pipe-')), 'data');
  const spool = new SqliteSpool(spoolOptions(dataDir, { log: log.child({ component: 'spool' }), ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}) }));
  const pki = options.pki;
  const client = options.client ?? pki?.client;
  const upstream = new AmqpUpstream({
    urls: [options.url], gatewayId: 'test-gw', log: log.child({ component: 'upstream' }),
    ...(pki === undefined || client === undefined ? { sasl: 'anonymous' } : {
      sasl: 'external', tls: { ca: options.ca ?? pki.ca.cert, cert: client.cert, key: client.key, servername: 'localhost' },
    }),
    backoff: { baseMs: 100, capMs: 1000 }, linkRetryMs: 500,
    ...options.upstream,
  });
  const forwarder = new Forwarder({
    spool, upstream, log: log.child({ component: 'forward' }),
    route: () => ({ delivery: options.mode ?? 'at-least-once', ...(options.properties ? { properties: options.properties } : {}) }),
  });
  await spool.start();
  await upstream.start();
  await forwarder.start();
  return {
    spool, upstream, forwarder, lines, dataDir,
    async stop() {
      await forwarder.stop();
      await upstream.stop();
      await spool.stop();
    },
  };
}

/** Readings as the router makes them: stamped with the step-free clock the spool expects (core/clock.ts). */
export function readings(count: number, address: string, prefix: string, extra: Partial<RoutedReading> = {}): RoutedReading[] {
  return Array.from({ length: count }, (_, i) => ({
    id: newReadingId(), topic: `sensor/${prefix}/${i}`, payload: Buffer.from(`${prefix}:${i}`), receivedAt: systemClock.now(),
    address, priority: 4, ...extra,
  }));
}

export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
