/** The composition root of the data path (src/pipeline.ts): what it builds from a config, its start order, and how a failed start or stop unwinds. Real spool and upstream (to a closed port). */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { buildPipeline, type Pipeline } from '../../src/pipeline.js';
import { freePort } from '../peers/ports.js';

async function dir(t: TestContext): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), 'uplink-pipeline-'));
  t.after(() => rm(path, { recursive: true, force: true }));
  return path;
}

/** A config with its spool in `dataDir`, and an upstream on a port nothing listens on when asked for. */
async function config(dataDir: string, upstream: boolean): Promise<ReturnType<typeof parseConfig>> {
  const lines = [`gatewayId: gw`, `dataDir: ${JSON.stringify(dataDir)}`, 'routes: [{ topic: "#", address: /queue/q }]'];
  if (upstream) lines.push(`upstream: { url: "amqp://127.0.0.1:${await freePort()}", sasl: anonymous }`);
  return parseConfig(lines.join('\n'), { source: 'test', baseDir: dataDir });
}

/**
 * Records the stops of the pipeline's parts, in order, by replacing each part's stop(). Whatever
 * the test leaves running is stopped after it (so that a failing test ends instead of hanging).
 */
function recordStops(t: TestContext, pipeline: Pipeline, fail: string[] = []): string[] {
  const stops: string[] = [];
  const originals = [pipeline.forwarder, pipeline.upstream, pipeline.spool].flatMap((part) => (part === undefined ? [] : [part.stop.bind(part)]));
  t.after(async () => {
    for (const stop of originals) await stop().catch(() => {});
  });
  const parts: Array<[string, { stop(): Promise<void> } | undefined]> = [['spool', pipeline.spool], ['upstream', pipeline.upstream], ['forward', pipeline.forwarder]];
  for (const [name, part] of parts) {
    if (part === undefined) continue;
    const stop = part.stop.bind(part);
    part.stop = async () => {
      stops.push(name);
      await stop();
      if (fail.includes(name)) throw new Error(`${name} failed to stop`);
    };
  }
  return stops;
}

describe('pipeline', () => {
  test('without an upstream: a data directory and a spool; with one: then the upstream and the forwarder, in that order', async (t) => {
    const base = await dir(t);
    const alone = buildPipeline(await config(join(base, 'a'), false), { log: silentLogger });
    assert.deepEqual(alone.components.map((c) => c.name), ['dataDir', 'spool']);
    assert.equal(alone.upstream, undefined);
    assert.equal(alone.forwarder, undefined);
    const full = buildPipeline(await config(join(base, 'b'), true), { log: silentLogger });
    assert.deepEqual(full.components.map((c) => c.name), ['dataDir', 'spool', 'upstream', 'forward']);
    assert.equal(typeof full.upstream?.credit, 'function', 'credit() is on the upstream the callers get');
    assert.equal(typeof full.upstream?.receiver, 'function', 'and receiver(), for the downlink');
  });

  test('start creates the data directory and opens the spool; stop closes everything in reverse order', async (t) => {
    const dataDir = join(await dir(t), 'nested', 'data');
    const pipeline = buildPipeline(await config(dataDir, true), { log: silentLogger });
    const stops = recordStops(t, pipeline);
    await pipeline.start();
    await pipeline.spool.append([{ id: 'r1', topic: 't', payload: Buffer.from('x'), receivedAt: Date.now(), address: '/queue/q', priority: 4 }]);
    assert.equal(pipeline.spool.stats().depth, 1, 'the spool in the created directory took a reading');
    await pipeline.stop();
    assert.deepEqual(stops, ['forward', 'upstream', 'spool']);
  });

  test('a data directory that cannot be made fails the start with IO, naming it, and nothing is left started', async (t) => {
    const base = await dir(t);
    await writeFile(join(base, 'file'), 'not a directory');
    const dataDir = join(base, 'file', 'data');
    const pipeline = buildPipeline(await config(dataDir, false), { log: silentLogger });
    const stops = recordStops(t, pipeline);
    await assert.rejects(pipeline.start(), (err: unknown) => {
      assert.ok(err instanceof GatewayError);
      assert.equal(err.code, 'IO');
      assert.match(err.message, new RegExp(`dataDir ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a writable directory \\(ENOTDIR\\)`));
      return true;
    });
    assert.deepEqual(stops, [], 'nothing had started');
  });

  test('a part that fails to start: those started before it are stopped, in reverse, and its error is thrown', async (t) => {
    const pipeline = buildPipeline(await config(await dir(t), true), { log: silentLogger });
    const stops = recordStops(t, pipeline);
    pipeline.forwarder!.start = async () => { throw new Error('forwarder failed to start'); };
    await assert.rejects(pipeline.start(), /forwarder failed to start/);
    assert.deepEqual(stops, ['upstream', 'spool']);
  });

  test('stop goes on past a part that fails to stop (the spool still closes), then throws the first error', async (t) => {
    const pipeline = buildPipeline(await config(await dir(t), true), { log: silentLogger });
    const stops = recordStops(t, pipeline, ['forward', 'upstream']);
    await pipeline.start();
    await assert.rejects(pipeline.stop(), /forward failed to stop/);
    assert.deepEqual(stops, ['forward', 'upstream', 'spool']);
    await pipeline.stop();
    assert.deepEqual(stops, ['forward', 'upstream', 'spool'], 'a second stop stops nothing again');
  });
});
