/**
 * Write budget and memory of the gateway process (a benchmark, not a test: nothing here asserts).
 *
 *   npm run build && node --import tsx bench/write-budget.ts [--seconds 60] [--rates 10,100,1000] [--soak 360000] [--soak-rate 1000]
 *
 * 1. Bytes written to the disk per reading: `uplink run` (dist/cli.js) as a child process, MQTT
 *    QoS 1 publishes of 100-byte readings at a steady 10, 100 and 1,000 readings/s, forwarded to a
 *    Qpid Proton receiver (so every reading is inserted, sent, acknowledged and deleted, as in
 *    steady operation). The gateway's write_bytes from /proc/PID/io (bytes the process caused to
 *    be written to the block layer: the WAL, checkpoints into the database file; logs go to a
 *    pipe) over the measured window, divided by the readings published in it. Once with
 *    `spool.durability: full` (each commit fsynced, the default) and once with
 *    `spool.groupCommitMs: 50` besides.
 * 2. RSS over a one-hour-equivalent run: --soak readings (default 360,000: one hour at 100/s)
 *    published at --soak-rate (default 1,000/s: six minutes), VmRSS sampled every 5 s.
 *
 * Measured on this machine (x64, ext4 on a virtual disk). Bytes written per reading depend on the
 * database page size and SQLite, not on the CPU, so they carry over to a Pi; RSS on arm64 is
 * about the same order (V8 on both is 64-bit), but was not measured on a Pi.
 */
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { startGateway, type GatewayProcess } from '../test/peers/gateway.js';
import { startProtonReceiver, type ProtonPeer } from '../test/peers/proton.js';

const arg = (name: string, fallback: string): string => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1]! : fallback;
};
const SECONDS = Number(arg('seconds', '60'));
const RATES = arg('rates', '10,100,1000').split(',').map(Number);
const SOAK = Number(arg('soak', '360000'));
const SOAK_RATE = Number(arg('soak-rate', '1000'));
const PAYLOAD = Buffer.alloc(100, 0x61);

function proc(pid: number): { writeBytes: number; rssKb: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { writeBytes: Number(/write_bytes: (\d+)/.exec(io)![1]), rssKb: Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) };
}

async function gateway(peer: ProtonPeer, spool: Record<string, unknown>): Promise<GatewayProcess> {
  const gw = await startGateway({
    config: { spool, upstream: { url: peer.url, sasl: 'anonymous' }, routes: [{ topic: '#', address: '/queue/telemetry' }] },
  });
  // The upstream link is up once a first reading went through.
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { reconnectPeriod: 0 });
  const before = peer.transfers().length;
  await client.publishAsync('sensor/warmup', PAYLOAD, { qos: 1 });
  await client.endAsync();
  await peer.waitForTransfers(before + 1, 30_000);
  return gw;
}

/** Publishes `count` readings at `rate` per second (a schedule, not a closed loop); resolves once all are acknowledged. */
async function publishAt(port: number, rate: number, count: number, onTick?: () => void): Promise<void> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
  const start = performance.now();
  let sent = 0;
  const pending = new Set<Promise<unknown>>();
  while (sent < count) {
    const due = Math.min(count, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
    while (sent < due) {
      sent += 1;
      const p = client.publishAsync(`sensor/line1/temperature`, PAYLOAD, { qos: 1 });
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    onTick?.();
    const next = start + (sent / rate) * 1000;
    await new Promise((r) => setTimeout(r, Math.max(1, next - performance.now())));
  }
  await Promise.all(pending);
  await client.endAsync();
}

async function budget(peer: ProtonPeer, label: string, spool: Record<string, unknown>, rate: number): Promise<{ perReading: number; rssMb: number }> {
  const gw = await gateway(peer, spool);
  const pid = gw.child.pid!;
  try {
    await publishAt(gw.mqttPort, rate, Math.max(rate * 5, 20)); // warm-up: WAL grown, first checkpoint past
    const delivered = peer.transfers().length;
    const start = proc(pid);
    const count = rate * SECONDS;
    await publishAt(gw.mqttPort, rate, count);
    await peer.waitForTransfers(delivered + count, 120_000);
    // The acknowledgements are deleted in the spool shortly after they arrive: let them land.
    await new Promise((r) => setTimeout(r, 2000));
    const end = proc(pid);
    const perReading = (end.writeBytes - start.writeBytes) / count;
    console.log(`${label}, ${rate}/s: ${Math.round(perReading)} bytes written per reading (${count} readings, ${((end.writeBytes - start.writeBytes) / 1e6).toFixed(1)} MB), RSS ${(end.rssKb / 1024).toFixed(0)} MB`);
    return { perReading, rssMb: end.rssKb / 1024 };
  } finally {
    await gw.stop();
  }
}

async function soak(peer: ProtonPeer): Promise<void> {
  const gw = await gateway(peer, { durability: 'full' });
  const pid = gw.child.pid!;
  const samples: Array<{ t: number; rssMb: number }> = [];
  const t0 = Date.now();
  let last = 0;
  const sample = (): void => {
    if (Date.now() - last < 5000) return;
    last = Date.now();
    samples.push({ t: (last - t0) / 1000, rssMb: proc(pid).rssKb / 1024 });
  };
  try {
    const delivered = peer.transfers().length;
    const start = proc(pid);
    await publishAt(gw.mqttPort, SOAK_RATE, SOAK, sample);
    await peer.waitForTransfers(delivered + SOAK, 300_000);
    const end = proc(pid);
    samples.push({ t: (Date.now() - t0) / 1000, rssMb: end.rssKb / 1024 });
    const rss = samples.map((s) => s.rssMb);
    const quarter = Math.max(1, Math.floor(rss.length / 4));
    const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log(`soak: ${SOAK} readings at ${SOAK_RATE}/s (${(SOAK / 100 / 3600).toFixed(2)} h at 100/s) in ${((Date.now() - t0) / 1000).toFixed(0)} s; ` +
      `RSS first ${rss[0]!.toFixed(0)} MB, max ${Math.max(...rss).toFixed(0)} MB, last ${rss.at(-1)!.toFixed(0)} MB; ` +
      `mean of the first quarter ${avg(rss.slice(0, quarter)).toFixed(0)} MB, of the last ${avg(rss.slice(-quarter)).toFixed(0)} MB; ` +
      `${Math.round((end.writeBytes - start.writeBytes) / SOAK)} bytes written per reading`);
    console.log(`soak samples (s, MB): ${samples.map((s) => `${s.t.toFixed(0)}:${s.rssMb.toFixed(0)}`).join(' ')}`);
  } finally {
    await gw.stop();
  }
}

const peer = await startProtonReceiver({ tls: false, credit: { mode: 'window', n: 1000 } });
try {
  const rows: string[] = [];
  for (const rate of RATES) {
    const full = await budget(peer, 'durability full', { durability: 'full' }, rate);
    const grouped = await budget(peer, 'durability full, groupCommitMs 50', { durability: 'full', groupCommitMs: 50 }, rate);
    rows.push(`| ${rate} | ${Math.round(full.perReading)} | ${Math.round(grouped.perReading)} |`);
  }
  console.log('\n| readings/s | bytes/reading, full | bytes/reading, full + groupCommitMs 50 |\n|---|---|---|');
  for (const row of rows) console.log(row);
  if (SOAK > 0) await soak(peer);
} finally {
  await peer.stop();
}
