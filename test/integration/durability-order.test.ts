/**
 * Durability beyond kill -9. `kill -9` keeps the page cache, so it cannot show that a PUBACK waits
 * for the disk. This test traces the real gateway process with strace (every thread) under QoS 1
 * load from real MQTT clients and checks, for every PUBACK written on a device socket, that a sync
 * of the WAL began after the write of the reading's row and ended before the PUBACK was written
 * (test/peers/ack-order.ts). With `spool.durability: normal` nothing syncs at commit: the same
 * check must then find PUBACKs that went out first, which shows that it can fail.
 * UPLINK_KEEP_TRACE=1 keeps the trace files (in the temporary directory) for a look.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { checkAckOrder, type AckOrderReport } from '../peers/ack-order.js';
import { startGateway } from '../peers/gateway.js';
import { payloadPattern, qos1Load } from '../peers/mqtt-load.js';
import { needStrace, readTrace, straceWrapper } from '../peers/strace.js';

const TRACED = ['write', 'writev', 'pwrite64', 'fdatasync', 'fsync'];

async function tracedLoad(t: TestContext, durability: 'full' | 'normal', tag: string): Promise<AckOrderReport | undefined> {
  if (!needStrace(t)) return undefined;
  const trace = join(tmpdir(), `uplink-${tag}-${process.pid}.trace`);
  const gw = await startGateway({
    config: { spool: { durability } },
    wrapper: straceWrapper({ output: trace, trace: TRACED }),
    timeoutMs: 30_000,
  });
  try {
    const load = await qos1Load({ port: gw.mqttPort, clients: 4, perClient: 500, tag, inFlight: 64 });
    assert.equal(load.acked.size, 2000, 'every publish was acknowledged');
    assert.deepEqual(await gw.stop(), { code: 0, signal: null }, gw.stderr());
    const calls = await readTrace(trace);
    const report = checkAckOrder({
      calls, mqttPort: gw.mqttPort, walFile: join(String(gw.config.dataDir), 'spool.db-wal'),
      sent: load.sent, pattern: payloadPattern(tag),
    });
    assert.equal(report.acked.length, 2000, 'the trace holds a PUBACK for every publish');
    const byKind = new Map<string, number>();
    for (const s of report.syncs) {
      const key = `${s.name} on the ${s.tid === gw.pid() ? 'main thread' : 'thread pool'}`;
      byKind.set(key, (byKind.get(key) ?? 0) + 1);
    }
    t.diagnostic(`durability ${durability}: ${report.acked.length} PUBACKs, ${report.walWrites} WAL writes, ` +
      `WAL syncs: ${[...byKind].map(([k, n]) => `${n} ${k}`).join(', ') || 'none'}, ${report.violations.length} PUBACKs before their sync`);
    return report;
  } finally {
    await gw.stop('SIGKILL');
    if (process.env.UPLINK_KEEP_TRACE === undefined) await rm(trace, { force: true });
    await rm(gw.dir, { recursive: true, force: true });
  }
}

describe('durability beyond kill -9 (strace of the gateway process)', () => {
  test('durability full: no PUBACK leaves before a WAL sync that began after its row was written (all 2,000 checked)', async (t) => {
    const report = await tracedLoad(t, 'full', 'full');
    if (report === undefined) return;
    assert.deepEqual(report.violations.slice(0, 5), [], `${report.violations.length} PUBACKs before their sync`);
    for (const reading of report.acked) assert.match(reading.messageId ?? '', /^[0-9a-f-]{36}$/, `${reading.payload}: its row holds a message id`);
  });

  test('durability normal: the same check finds PUBACKs that left before any sync (the check can fail)', async (t) => {
    const report = await tracedLoad(t, 'normal', 'normal');
    if (report === undefined) return;
    assert.ok(report.violations.length > 0, 'with commits not synced, some PUBACK must precede the sync of its row');
  });
});
