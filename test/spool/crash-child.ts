/**
 * Child process for the crash test: appends readings as fast as it can from several concurrent
 * writers (one per address) and prints each id once its append has resolved. The parent kills it
 * with SIGKILL at a random moment. stdout is a pipe, which Node writes synchronously on Linux, so
 * a printed id was reported before the kill.
 */
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { spoolOptions } from './options.js';

const [dataDir, run] = process.argv.slice(2) as [string, string];
const spool = new SqliteSpool(spoolOptions(dataDir));
await spool.start();
process.stdout.write('ready\n');

const ADDRESSES = ['a', 'b', 'c'];
await Promise.all(ADDRESSES.map(async (address) => {
  for (let n = 0; ; n++) {
    const batch = Array.from({ length: 1 + (n % 7) }, (_, i) => ({
      id: `${run}:${address}:${n}:${i}`, topic: `sensor/${address}`, payload: Buffer.alloc(100, n % 256),
      receivedAt: Date.now(), address, priority: 4,
    }));
    await spool.append(batch);
    process.stdout.write(`${batch.map((r) => r.id).join('\n')}\n`);
  }
}));
