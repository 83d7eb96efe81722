/**
 * Storage faults injected into the real gateway process by strace (`-e inject=`), under QoS 1 load
 * from real MQTT clients: an fdatasync of the WAL that fails with EIO, and an EIO on a write to
 * the WAL or to the database file. Each time the gateway must log one JSON `fatal` line (code
 * STORAGE_FAILED, not a full disk), exit 74 instead of retrying, and have acknowledged nothing that
 * is not safe: started again (without strace) on the same dataDir, its spool holds every reading
 * that got a PUBACK, under the message id it had before. The spool-level tests of the same faults
 * are in test/spool/storage-failure.test.ts. UPLINK_KEEP_TRACE=1 keeps the traces.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import mqtt from 'mqtt';
import { checkAckOrder, rowsInWal } from '../peers/ack-order.js';
import { startGateway, type GatewayProcess } from '../peers/gateway.js';
import { payloadPattern, qos1Load, type LoadOptions, type LoadResult } from '../peers/mqtt-load.js';
import { restartAndRead, type SpooledRow } from '../peers/spool-file.js';
import { needStrace, readTrace, straceWrapper, type StraceOptions, type Syscall } from '../peers/strace.js';

const EXIT_STORAGE = 74;
/** Generous: only a gateway that never exits waits this long. */
const EXIT_WAIT_MS = 20_000;

interface FaultRun {
  gw: GatewayProcess;
  dataDir: string;
  load: LoadResult;
  calls: Syscall[];
  exit: { code: number | null; signal: NodeJS.Signals | null };
}

/** A gateway under strace with `strace` options, loaded until it ends; the trace read back. */
async function runWithFault(t: TestContext, strace: Omit<StraceOptions, 'output'>, load: Omit<LoadOptions, 'port'>, dataDir?: string): Promise<FaultRun | undefined> {
  if (!needStrace(t)) return undefined;
  const output = join(tmpdir(), `uplink-${load.tag}-${process.pid}.trace`);
  const gw = await startGateway({
    config: dataDir === undefined ? {} : { dataDir },
    wrapper: straceWrapper({ output, ...strace }),
    timeoutMs: 30_000,
  });
  t.after(async () => {
    await gw.stop('SIGKILL');
    if (process.env.UPLINK_KEEP_TRACE === undefined) await rm(output, { force: true });
    await rm(gw.dir, { recursive: true, force: true });
  });
  const result = await qos1Load({ ...load, port: gw.mqttPort });
  const running = gw.child.exitCode === null && gw.child.signalCode === null;
  // The fault comes early in the load, so a gateway that stops for it cuts the load short.
  assert.ok(!running || result.acked.size < result.payloads.length,
    `all ${result.payloads.length} publishes were acknowledged and the gateway still runs: the injected fault did not stop it\n` +
    `${gw.logs.slice(-3).map((l) => JSON.stringify(l)).join('\n')}`);
  const exit = await Promise.race([gw.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), EXIT_WAIT_MS).unref())]);
  assert.ok(exit !== undefined, `the gateway did not exit after the fault (stderr: ${gw.stderr()})\n${gw.logs.slice(-5).map((l) => JSON.stringify(l)).join('\n')}`);
  return { gw, dataDir: String(gw.config.dataDir), load: result, calls: await readTrace(output), exit };
}

/** Exit 74 after exactly one fatal line, STORAGE_FAILED, and no line about a full disk. */
function assertStorageFailed(run: FaultRun, message: RegExp): void {
  const { gw, exit } = run;
  const fatal = gw.logs.filter((line) => line.level === 'fatal');
  assert.deepEqual(exit, { code: EXIT_STORAGE, signal: null }, `exit 74 (stderr: ${gw.stderr()})`);
  assert.equal(fatal.length, 1, `exactly one fatal line:\n${fatal.map((l) => JSON.stringify(l)).join('\n')}`);
  assert.equal(fatal[0]!.code, 'STORAGE_FAILED');
  assert.match(String(fatal[0]!.err), message);
  assert.deepEqual(gw.nonJson, [], 'every stdout line is JSON');
  assert.ok(!gw.logs.some((line) => /disk full/i.test(String(line.msg))), 'an I/O error is not a full disk');
}

/** Started again on the same dataDir: every acknowledged payload is there, with its id when known. */
async function assertNothingAcknowledgedLost(t: TestContext, dataDir: string, acknowledged: Map<string, string | undefined>): Promise<Map<string, SpooledRow>> {
  const rows = await restartAndRead(dataDir);
  const missing = [...acknowledged.keys()].filter((payload) => !rows.has(payload));
  assert.deepEqual(missing.slice(0, 5), [], `${missing.length} of ${acknowledged.size} acknowledged readings are missing after the restart`);
  for (const [payload, id] of acknowledged) {
    if (id !== undefined) assert.equal(rows.get(payload)!.id, id, `${payload} keeps its message id`);
  }
  t.diagnostic(`${acknowledged.size} acknowledged readings all there after the restart; ${rows.size - acknowledged.size} more that were committed but not acknowledged`);
  return rows;
}

/** A publish to the restarted gateway is acknowledged: the spool recovered and takes readings. */
async function assertTakesReadings(dataDir: string): Promise<void> {
  const gw = await startGateway({ config: { dataDir } });
  try {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { reconnectPeriod: 0 });
    await client.publishAsync('sensor/after/temperature', 'after the restart', { qos: 1 });
    await client.endAsync();
  } finally {
    assert.equal((await gw.stop()).code, 0);
    await rm(gw.dir, { recursive: true, force: true });
  }
}

describe('storage faults injected into the gateway process (strace)', () => {
  test('fdatasync of the WAL fails (EIO): one fatal line, exit 74, no PUBACK without a good sync before the failure, nothing acknowledged lost', async (t) => {
    const tag = 'fsync';
    // Counted per thread: the first pool thread to reach its third fdatasync fails it.
    const run = await runWithFault(t, { trace: ['write', 'writev', 'pwrite64', 'fdatasync', 'fsync'], inject: ['fdatasync:error=EIO:when=3'] },
      { tag, clients: 4, perClient: 1500, inFlight: 64 });
    if (run === undefined) return;
    assertStorageFailed(run, /fdatasync of .*spool\.db-wal failed \(EIO\)/);

    const report = checkAckOrder({
      calls: run.calls, mqttPort: run.gw.mqttPort, walFile: join(run.dataDir, 'spool.db-wal'), sent: run.load.sent, pattern: payloadPattern(tag),
    });
    assert.ok(report.failedSync?.injected === true && report.failedSync.name === 'fdatasync', 'the trace shows the injected failure');
    assert.deepEqual(report.violations.slice(0, 5), [], `${report.violations.length} PUBACKs without a good sync of their row before the failure`);
    const acknowledged = new Map(report.acked.map((r) => [r.payload, r.messageId]));
    assert.ok(acknowledged.size > 0 && acknowledged.size < run.load.payloads.length,
      `some readings acknowledged before the failure, not all (${acknowledged.size} of ${run.load.payloads.length})`);
    for (const payload of run.load.acked) assert.ok(acknowledged.has(payload), `${payload}: the client got a PUBACK the trace does not show`);
    const before = report.syncs.filter((s) => s.name === 'fdatasync' && s.ret === 0 && s.end < report.failedSync!.end).length;
    t.diagnostic(`${before} good fdatasyncs of the WAL ended before the injected one; ${acknowledged.size} PUBACKs, the last at ` +
      `${(Math.max(...report.acked.map((r) => r.puback.start)) / 1e6).toFixed(3)} ms, the failure at ${(report.failedSync.end / 1e6).toFixed(3)} ms`);

    await assertNothingAcknowledgedLost(t, run.dataDir, acknowledged);
    await assertTakesReadings(run.dataDir);
  });

  test('a write to the WAL fails (EIO): SQLITE_IOERR is STORAGE_FAILED, exit 74 rather than retrying, nothing acknowledged lost', async (t) => {
    const tag = 'walio';
    const dir = join(tmpdir(), `uplink-walio-${process.pid}`);
    t.after(() => rm(dir, { recursive: true, force: true }));
    const wal = join(dir, 'data', 'spool.db-wal');
    // -P: only the WAL's calls are traced, so only they are counted and injected into (the main
    // thread writes the WAL: its 300th pwrite64 there, some way into the load).
    const run = await runWithFault(t, { trace: ['pwrite64', 'fdatasync'], paths: [wal], inject: ['pwrite64:error=EIO:when=300'] },
      { tag, clients: 4, perClient: 1500, inFlight: 64 }, join(dir, 'data'));
    if (run === undefined) return;
    assertStorageFailed(run, /SQLITE_IOERR/);
    const injected = run.calls.filter((c) => c.injected);
    assert.equal(injected.length, 1, 'one write failed');
    assert.equal(injected[0]!.target, wal);
    await assertNothingAcknowledgedLost(t, run.dataDir, idsFromWal(run, tag));
    await assertTakesReadings(run.dataDir);
  });

  // The spool checkpoints the WAL itself (src/spool/sqlite/checkpoints.ts): SQLite's automatic
  // checkpoint runs inside a commit and its default WAL hook drops the result, so an I/O error on
  // spool.db went unnoticed there.
  test('a write to the database file fails (EIO, at a checkpoint): exit 74 after one fatal line, nothing acknowledged lost', async (t) => {
    const tag = 'dbio';
    const dir = join(tmpdir(), `uplink-dbio-${process.pid}`);
    t.after(() => rm(dir, { recursive: true, force: true }));
    const dataDir = join(dir, 'data');
    // The spool is made first, so that the traced run writes the file only when it checkpoints.
    await restartAndRead(dataDir);
    const db = join(dataDir, 'spool.db');
    const run = await runWithFault(t, { trace: ['pwrite64'], paths: [db], inject: ['pwrite64:error=EIO:when=1'] },
      { tag, clients: 4, perClient: 3000, inFlight: 64, padding: 600 }, dataDir);
    if (run === undefined) return;
    assertStorageFailed(run, /SQLITE_IOERR/);
    const injected = run.calls.filter((c) => c.injected);
    assert.equal(injected.length, 1, 'one write failed');
    assert.equal(injected[0]!.target, db);
    await assertNothingAcknowledgedLost(t, run.dataDir, new Map([...run.load.acked].map((p) => [p, undefined])));
    await assertTakesReadings(run.dataDir);
  });
});

describe('a storage fault while the spool opens', () => {
  test('a read of the database file fails (EIO) at start: one fatal line, exit 74 (not 1): the storage failed, not the config', async (t) => {
    if (!needStrace(t)) return;
    const dir = join(tmpdir(), `uplink-openio-${process.pid}`);
    t.after(() => rm(dir, { recursive: true, force: true }));
    const dataDir = join(dir, 'data');
    // A spool made first, so that opening it reads its pages.
    await restartAndRead(dataDir);
    const output = join(dir, 'open.trace');
    const gw = await startGateway({
      config: { dataDir },
      wrapper: straceWrapper({ output, trace: ['pread64'], paths: [join(dataDir, 'spool.db')], inject: ['pread64:error=EIO'] }),
      readyWhen: (line) => line.level === 'fatal',
      timeoutMs: 30_000,
    });
    t.after(async () => {
      await gw.stop('SIGKILL');
      await rm(gw.dir, { recursive: true, force: true });
    });
    const exit = await gw.exited;
    const fatal = gw.logs.filter((line) => line.level === 'fatal');
    assert.deepEqual(exit, { code: EXIT_STORAGE, signal: null }, `exit 74 (stderr: ${gw.stderr()})`);
    assert.equal(fatal.length, 1, `exactly one fatal line:\n${fatal.map((l) => JSON.stringify(l)).join('\n')}`);
    assert.equal(fatal[0]!.code, 'STORAGE_FAILED');
    assert.ok((await readTrace(output)).some((c) => c.injected), 'the trace shows the injected failure');
  });
});

/** The client-acknowledged payloads, each with the message id its row had in the traced WAL writes. */
function idsFromWal(run: FaultRun, tag: string): Map<string, string | undefined> {
  const pattern = payloadPattern(tag);
  const rows = rowsInWal(run.calls, join(run.dataDir, 'spool.db-wal'), pattern);
  return new Map([...run.load.acked].map((payload) => {
    const row = rows.get(new RegExp(pattern.source).exec(payload)![0]);
    assert.ok(row !== undefined, `${payload} was acknowledged but its row is in no traced WAL write`);
    return [payload, row.messageId];
  }));
}
