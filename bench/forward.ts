/**
 * Forwarder benchmark (not a test): the cost of the pump itself, without a broker. A backlog in the
 * real spool (durability normal) drains through the real Forwarder to the scripted upstream of
 * test/forward, whose receiver keeps `--window` credit out and accepts every transfer on the next
 * turn of the event loop (one disposition frame per turn, as a broker's would be).
 *
 *   node --import tsx bench/forward.ts [--count N] [--window N] [--rounds N]
 *
 * Reports readings/s and CPU µs per reading (spool lease and ack included), per round and median.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RoutedReading } from '../src/core/envelope.js';
import { silentLogger } from '../src/core/logger.js';
import { Forwarder } from '../src/forward/forwarder.js';
import { SqliteSpool } from '../src/spool/sqlite/sqlite-spool.js';
import { spoolOptions } from '../test/spool/options.js';
import { ScriptedUpstream, type Transfer } from '../test/forward/scripted-upstream.js';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const COUNT = arg('count', 100_000);
const WINDOW = arg('window', 1000);
const ROUNDS = arg('rounds', 5);
const PAYLOAD = Buffer.alloc(100, 0x62);

async function round(n: number): Promise<{ rate: number; cpuUs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'uplink-bench-forward-'));
  const spool = new SqliteSpool(spoolOptions(dir, { durability: 'normal', reserveBytes: 0 }));
  await spool.start();
  for (let i = 0; i < n; i += 1000) {
    const batch: RoutedReading[] = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) {
      batch.push({ id: `r-${n}-${j}`, topic: 'bench', payload: PAYLOAD, receivedAt: Date.now(), address: '/queue/bench', priority: 4 });
    }
    await spool.append(batch);
  }
  const pending: Transfer[] = [];
  let scheduled = false;
  const upstream: ScriptedUpstream = new ScriptedUpstream({
    onSend: (t) => {
      pending.push(t);
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        const batch = pending.splice(0);
        for (const t of batch) upstream.deliver(t, { kind: 'accepted' });
        upstream.grant('/queue/bench', batch.length);
      });
    },
  });
  const forwarder = new Forwarder({ spool, upstream, log: silentLogger, route: () => ({ delivery: 'at-least-once' }) });
  await forwarder.start();
  upstream.connect();
  const cpu = process.cpuUsage();
  const start = performance.now();
  upstream.grant('/queue/bench', WINDOW);
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (spool.stats().depth === 0) resolve();
      else setImmediate(check);
    };
    check();
  });
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  await forwarder.stop();
  await spool.stop();
  rmSync(dir, { recursive: true, force: true });
  return { rate: n / seconds, cpuUs: (used.user + used.system) / n };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

await round(Math.min(COUNT, 10_000));
const runs: Array<{ rate: number; cpuUs: number }> = [];
for (let i = 0; i < ROUNDS; i++) {
  const r = await round(COUNT);
  runs.push(r);
  console.log(`round ${i + 1}: ${Math.round(r.rate).toLocaleString('en')} readings/s, ${r.cpuUs.toFixed(1)} us CPU each`);
}
console.log(`median: ${Math.round(median(runs.map((r) => r.rate))).toLocaleString('en')} readings/s, ${median(runs.map((r) => r.cpuUs)).toFixed(1)} us CPU each `
  + `(${COUNT.toLocaleString('en')} readings, window ${WINDOW}, ${ROUNDS} rounds)`);
