/**
 * Hot-plug: a pty that is missing at start, unplugged (socat killed, link removed) and plugged in
 * again (a new socat with the same link path) while another port keeps working.
 */
import assert from 'node:assert/strict';
import { realpath, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ingestedTotal, ptyPair, startSerial, tempDir, waitFor, type Harness, type PtyPair } from './helpers.js';

describe('serial hot-plug', () => {
  let dir: string;
  const pairs: PtyPair[] = [];
  let h: Harness | undefined;

  before(async () => {
    dir = await tempDir();
  });

  after(async () => {
    await h?.stop();
    for (const p of pairs) await p.kill();
    await rm(dir, { recursive: true, force: true });
  });

  it('a missing port is opened once it appears; an unplugged one reopens; others are unaffected', async () => {
    const device = join(dir, 'plug');
    const steady = await ptyPair(join(dir, 'steady'));
    pairs.push(steady);
    h = await startSerial(join(dir, 'run'), [
      { name: 'plug', path: device, topic: 'sensor/{port}' },
      { name: 'steady', path: steady.device, topic: 'sensor/{port}' },
    ]);
    assert.equal(h.ingest.stats().connections, 1, 'start() succeeds with the plug port missing');
    assert.ok(h.lines.some((l) => l.port === 'plug' && l.msg === 'serial port unavailable; reopening with backoff'));

    const first = await ptyPair(device);
    pairs.push(first);
    await waitFor(() => h!.ingest.stats().ports.plug?.open === true, 'the plug port to open once it exists');
    await first.write('one\n');
    await waitFor(() => ingestedTotal(h!.ingest) === 1, 'the first reading');

    await first.kill();
    await waitFor(() => h!.ingest.stats().ports.plug?.open === false, 'the unplugged port to be noticed', 5000);
    await steady.write('steady while unplugged\n');
    await waitFor(() => ingestedTotal(h!.ingest) === 2, 'the steady port to keep working');

    const second = await ptyPair(device);
    pairs.push(second);
    await waitFor(() => h!.ingest.stats().ports.plug?.opens === 2, 'the port to reopen');
    await second.write('two\n');
    await waitFor(() => ingestedTotal(h!.ingest) === 3, 'a reading after the reopen');

    const got = (await h.spooled()).map((r) => `${r.topic} ${r.payload}`);
    assert.deepEqual(got, ['sensor/plug one', 'sensor/steady steady while unplugged', 'sensor/plug two']);
    assert.equal(h.ingest.stats().connections, 2);
    assert.equal(h.ingest.stats().ports.steady?.opens, 1, 'the steady port was never reopened');
  });

  it('a device path that silently leads elsewhere (no close event) is noticed and reopened', async () => {
    const link = join(dir, 'moving');
    const a = await ptyPair(join(dir, 'moving-a'));
    const b = await ptyPair(join(dir, 'moving-b'));
    pairs.push(a, b);
    await symlink(await realpath(a.device), link);
    const g = await startSerial(join(dir, 'run2'), [{ name: 'moving', path: link, topic: 'sensor/{port}' }]);
    try {
      await waitFor(() => g.ingest.stats().connections === 1, 'the port to open');
      await a.write('from a\n');
      await waitFor(() => ingestedTotal(g.ingest) === 1, 'a reading from a');
      // Re-point the link atomically: socat a stays alive, the open port gets no close event.
      await symlink(await realpath(b.device), `${link}.new`);
      await rename(`${link}.new`, link);
      await waitFor(() => g.ingest.stats().ports.moving?.opens === 2, 'the port to reopen on the new device');
      await a.write('from a, no longer read\n');
      await b.write('from b\n');
      await waitFor(() => ingestedTotal(g.ingest) === 2, 'a reading from b');
      // After stop() nothing more can arrive: had the old device still been read, its line
      // (written before b's) would be in the spool now.
      await g.ingest.stop();
      assert.deepEqual((await g.spooled()).map((r) => r.payload), ['from a', 'from b']);
      assert.ok(g.lines.some((l) => l.port === 'moving' && String(l.reason).startsWith('the device path now leads to')));
    } finally {
      await g.stop();
    }
  });

  it('an unplug keeps the frames already read (also what the paused stream read ahead) and counts the frame it cut off', async () => {
    const p = await ptyPair(join(dir, 'cut'));
    pairs.push(p);
    // A group commit of 1.5 s holds the first append, so the port is paused and the rest of the
    // lines wait read ahead in its stream when the device goes away.
    const g = await startSerial(join(dir, 'run3'), [{ name: 'cut', path: p.device, topic: 'sensor/{port}' }],
      { spoolOptions: { groupCommitMs: 1500 } });
    try {
      await waitFor(() => g.ingest.stats().connections === 1, 'the port to open');
      const lines = Array.from({ length: 200 }, (_, i) => `cut ${i}`);
      const text = `${lines.map((l) => `${l}\n`).join('')}cut off`;
      await p.write(text.slice(0, 50));
      await waitFor(() => g.ingest.stats().ports.cut!.bytesRead === 50, 'the first chunk to be read');
      await p.write(text.slice(50));
      await waitFor(() => g.ingest.stats().ports.cut!.bytesRead === text.length, 'every byte to be read');
      await p.kill();
      await waitFor(() => g.ingest.stats().rejected.partial === 1, 'the cut-off frame to be counted');
      await waitFor(() => ingestedTotal(g.ingest) === 200, 'every complete line to be stored');
      assert.deepEqual((await g.spooled()).map((r) => r.payload), lines);
      assert.ok(g.lines.some((l) => l.port === 'cut' && l.reason === 'partial' && l.bytes === 'cut off'.length));
    } finally {
      await g.stop();
    }
  });
});
