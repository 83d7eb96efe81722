import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { runCli as uplink, startGateway } from '../peers/gateway.js';
import { spoolOptions } from '../spool/options.js';

describe('uplink dlq', () => {
  let dir: string;
  let config: string;
  const dataDir = (): string => join(dir, 'data');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'uplink-dlq-cli-'));
    config = join(dir, 'uplink.yaml');
    await writeFile(config, 'dataDir: data\n');
    const spool = new SqliteSpool(spoolOptions(dataDir()));
    await spool.start();
    await spool.append(['{"t":21.5}', 'not json', 'fine'].map((text, i) => ({
      id: `id-${i}`, topic: `sensor/${i}/temperature`, payload: Buffer.from(text), receivedAt: Date.now(), address: '/queue/telemetry', priority: 4,
    })));
    const [a, b] = await spool.lease('/queue/telemetry', 2);
    await spool.reject([a!.seq], { condition: 'amqp:precondition-failed', description: 'schema mismatch' });
    await spool.reject([b!.seq], { condition: 'amqp:not-allowed' });
    await spool.stop();
  });

  test('list shows each dead letter with its reason, as a table or as JSON lines', async () => {
    const table = await uplink('dlq', 'list', '--config', config);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^SEQ\s+DEAD AT\s+ADDRESS\s+TOPIC\s+CONDITION\s+ATTEMPTS\s+DESCRIPTION$/m);
    assert.match(table.stdout, /sensor\/0\/temperature\s+amqp:precondition-failed\s+0\s+schema mismatch/);
    assert.match(table.stdout, /2 shown, 2 in the store/);
    const json = await uplink('dlq', 'list', '--config', config, '--json');
    const rows = json.stdout.trim().split('\n').map((line) => JSON.parse(line) as { id: string; condition: string });
    assert.deepEqual(rows.map((r) => [r.id, r.condition]), [['id-0', 'amqp:precondition-failed'], ['id-1', 'amqp:not-allowed']]);
  });

  test('show prints one dead letter with its payload', async () => {
    const list = await uplink('dlq', 'list', '--config', config, '--json');
    const seq = (JSON.parse(list.stdout.split('\n')[0]!) as { seq: number }).seq;
    const show = await uplink('dlq', 'show', '--config', config, String(seq));
    assert.equal(show.code, 0);
    assert.match(show.stdout, /^id: id-0$/m);
    assert.match(show.stdout, /^payload \(utf-8\): \{"t":21\.5\}$/m);
    const missing = await uplink('dlq', 'show', '--config', config, '99999');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no dead letter 99999/);
  });

  test('replay and purge work while the gateway runs on the same spool', async () => {
    const gw = await startGateway({ config: { dataDir: dataDir() } });
    try {
      const list = await uplink('dlq', 'list', '--config', config, '--json');
      const [first, second] = list.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
      const replay = await uplink('dlq', 'replay', '--config', config, String(first));
      assert.equal(replay.code, 0, replay.stderr);
      assert.match(replay.stdout, /replayed 1 dead letter into the spool/);
      const purge = await uplink('dlq', 'purge', '--config', config, '--all');
      assert.equal(purge.code, 0, purge.stderr);
      assert.match(purge.stdout, /purged 1 dead letter/);
      assert.ok(second !== undefined);
      const empty = await uplink('dlq', 'list', '--config', config);
      assert.match(empty.stdout, /no dead letters \(0 in the store\)/);
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
    // The replayed reading is back in the spool, with its id, after the gateway stopped.
    const spool = new SqliteSpool(spoolOptions(dataDir()));
    await spool.start();
    const back = await spool.lease('/queue/telemetry', 10);
    await spool.stop();
    assert.deepEqual(back.map((r) => r.id), ['id-2', 'id-0']);
  });

  test('usage errors are exit 2', async () => {
    assert.equal((await uplink('dlq', 'replay', '--config', config)).code, 2);
    assert.equal((await uplink('dlq', 'explode')).code, 2);
    assert.equal((await uplink('dlq', 'show', 'abc')).code, 2);
  });

  test('a dataDir without a spool is a clear error', async () => {
    const empty = join(dir, 'empty.yaml');
    await writeFile(empty, 'dataDir: nowhere\n');
    const result = await uplink('dlq', 'list', '--config', empty);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no spool at .*nowhere\/spool\.db/);
  });
});
