/**
 * The operator endpoints of the real process (`node dist/cli.js run`) and `uplink status`:
 * /metrics is Prometheus text whose counters move with MQTT traffic forwarded to a real AMQP 1.0
 * receiver (Qpid Proton), /status has version, uptime, listeners, upstream, spool and per-route
 * counters, /healthz and /readyz answer, and `uplink status` prints them or fails clearly.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { runCli, startGateway } from '../peers/gateway.js';
import { freePort } from '../peers/ports.js';
import { startProtonReceiver } from '../peers/proton.js';
import { parseMetrics, PYTHON, REPO, requireTool, run, until } from './helpers.js';

const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

interface Route { topic: string; address: string; ingested: number; forwarded: number; spooled: number; addresses: Record<string, unknown> }
interface Status {
  gatewayId: string; version: string; uptimeSeconds: number; ready: boolean;
  listeners: Array<{ protocol: string; host: string; port: number }>;
  upstream: null | { connected: boolean; url: string; credit: number; reconnects: number };
  spool: { depth: number; bytes: number; oldestAgeSeconds: number; inFlight: number };
  totals: { ingested: number; forwarded: number; rejected: Record<string, number> };
  rates: { windowSeconds: number; ingestedPerSecond: number; forwardedPerSecond: number };
  routes: Route[];
}

/** An HTTP server on a free loopback port that answers every request with `body`. */
async function impostor(t: { after(fn: () => unknown): void }, body: string, contentType = 'application/json'): Promise<number> {
  const server: Server = createServer((_req, res) => { res.writeHead(200, { 'content-type': contentType }); res.end(body); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  return (server.address() as { port: number }).port;
}

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() as T };
}

describe('HTTP endpoints and uplink status', () => {
  test('/metrics and /status follow MQTT traffic through to the upstream; uplink status prints them', async (t) => {
    if (requireTool(t, PYTHON, 'runs the Qpid Proton receiver (python3-qpid-proton)') === undefined) return;
    const receiver = await startProtonReceiver({ tls: false, credit: { mode: 'window', n: 50 } });
    const gw = await startGateway({ config: {
      upstream: { url: receiver.url, sasl: 'anonymous' },
      routes: [{ topic: 'sensor/+/temperature', address: '/queue/temp' }, { topic: '#', address: '/queue/other' }],
    } });
    let client: mqtt.MqttClient | undefined;
    try {
      const base = `http://127.0.0.1:${gw.httpPort}`;
      const scrape = async (): Promise<Map<string, number>> => {
        const res = await fetch(`${base}/metrics`);
        assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
        return parseMetrics(await res.text());
      };
      await until(async () => (await scrape()).get('uplink_upstream_connected') === 1, 'connected upstream');
      const before = await scrape();
      assert.equal(before.get(`uplink_build_info{version="${VERSION}",gateway_id="test-gw"}`), 1);
      for (const name of ['uplink_spool_depth', 'uplink_spool_bytes', 'uplink_spool_oldest_age_seconds', 'uplink_dead_lettered_total',
        'uplink_upstream_credit', 'uplink_upstream_reconnects_total', 'uplink_spool_disk_full', 'nodejs_eventloop_lag_seconds']) {
        assert.ok(before.has(name), `${name} is exported`);
      }
      assert.ok((before.get('process_resident_memory_bytes') ?? 0) > 0, 'process metrics');
      assert.equal(before.get('uplink_forwarded_total{address="/queue/temp"}'), undefined, 'nothing forwarded yet');

      client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { reconnectPeriod: 0 });
      for (let i = 0; i < 5; i++) await client.publishAsync('sensor/line1/temperature', `{"t":${i}}`, { qos: 1 });
      for (let i = 0; i < 3; i++) await client.publishAsync('plant/line1/state', `s${i}`, { qos: 1 });
      const during = await scrape();
      assert.equal(during.get('uplink_ingest_connections{adapter="mqtt"}'), 1);
      await receiver.waitForTransfers(8);
      // The outcome is counted when it arrives, the reading deleted when that commit is done.
      await until(async () => {
        const m = await scrape();
        return m.get('uplink_upstream_outcomes_total{outcome="accepted"}') === 8 && m.get('uplink_spool_depth') === 0;
      }, 'accepted 8, spool empty');
      const after = await scrape();
      assert.equal(after.get('uplink_ingested_total{address="/queue/temp"}'), 5);
      assert.equal(after.get('uplink_ingested_total{address="/queue/other"}'), 3);
      assert.equal(after.get('uplink_forwarded_total{address="/queue/temp"}'), 5);
      assert.equal(after.get('uplink_forwarded_total{address="/queue/other"}'), 3);
      assert.equal(after.get('uplink_spool_depth'), 0);
      assert.ok((after.get('uplink_spool_commits_total') ?? 0) > (before.get('uplink_spool_commits_total') ?? 0));

      const { status, body } = await getJson<Status>(`${base}/status`);
      assert.equal(status, 200);
      assert.equal(body.version, VERSION);
      assert.equal(body.gatewayId, 'test-gw');
      assert.ok(body.uptimeSeconds >= 0);
      assert.equal(body.ready, true);
      assert.deepEqual(body.listeners, [
        { protocol: 'mqtt', host: '127.0.0.1', port: gw.mqttPort },
        { protocol: 'http', host: '127.0.0.1', port: gw.httpPort },
      ]);
      assert.equal(body.upstream?.connected, true);
      assert.equal(body.upstream?.url, receiver.url);
      assert.equal(body.spool.depth, 0);
      assert.deepEqual(body.totals.ingested, 8);
      assert.deepEqual(body.totals.forwarded, 8);
      assert.ok(body.rates.ingestedPerSecond > 0, `a rate since start: ${JSON.stringify(body.rates)}`);
      assert.deepEqual(body.routes.map((r) => [r.topic, r.address, r.ingested, r.forwarded, r.spooled]),
        [['sensor/+/temperature', '/queue/temp', 5, 5, 0], ['#', '/queue/other', 3, 3, 0]]);

      const human = await runCli('status', '--config', gw.configFile);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, new RegExp(`^uplink ${VERSION.replace(/\./g, '\\.')} \\(test-gw\\): up .+, ready\\n`));
      assert.match(human.stdout, new RegExp(`upstream +connected to ${receiver.url.replace(/[.]/g, '\\.')}, credit \\d+, 0 reconnects`));
      assert.match(human.stdout, /spool +0 readings \(0 B\), empty, 0 in flight, 0 dead letters/);
      assert.match(human.stdout, /rates +in [\d.]+\/s, out [\d.]+\/s \(over the last \d+ s\)/);
      assert.match(human.stdout, /totals +8 in, 8 out since start/);
      assert.match(human.stdout, new RegExp(`listeners +mqtt 127\\.0\\.0\\.1:${gw.mqttPort}, http 127\\.0\\.0\\.1:${gw.httpPort}`));
      assert.match(human.stdout, /sensor\/\+\/temperature -> \/queue\/temp: 5 in, 5 out, 0 spooled/);
      assert.match(human.stdout, /# -> \/queue\/other: 3 in, 3 out, 0 spooled/);

      const json = await runCli('status', '--config', gw.configFile, '--json');
      assert.equal(json.code, 0, json.stderr);
      const parsed = JSON.parse(json.stdout) as Status;
      assert.equal(parsed.version, VERSION);
      assert.deepEqual(parsed.routes.map((r) => r.forwarded), [5, 3]);
    } finally {
      await client?.endAsync(true);
      await receiver.stop();
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test('without an upstream: /readyz is 503 with the reason, the backlog shows in /status and uplink status', async () => {
    const gw = await startGateway({ config: { routes: [{ topic: 'sensor/#', address: '/queue/backlog' }] } });
    const base = `http://127.0.0.1:${gw.httpPort}`;
    try {
      const health = await getJson<{ status: string }>(`${base}/healthz`);
      assert.deepEqual(health, { status: 200, body: { status: 'ok' } });
      const ready = await getJson<{ ready: boolean; reasons: string[] }>(`${base}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(ready.body.ready, false);
      assert.deepEqual(ready.body.reasons, ['upstream: no upstream configured: readings wait in the spool']);

      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { reconnectPeriod: 0 });
      try {
        for (let i = 0; i < 4; i++) await client.publishAsync('sensor/a', 'x'.repeat(100), { qos: 1 });
      } finally {
        await client.endAsync(true);
      }
      const { body } = await getJson<Status>(`${base}/status`);
      assert.equal(body.upstream, null);
      assert.equal(body.ready, false);
      assert.equal(body.spool.depth, 4);
      assert.equal(body.spool.bytes, 400);
      assert.ok(body.spool.oldestAgeSeconds >= 0);
      assert.deepEqual(body.routes.map((r) => [r.ingested, r.forwarded, r.spooled]), [[4, 0, 4]]);

      const human = await runCli('status', '--config', gw.configFile);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /NOT READY \(upstream: no upstream configured: readings wait in the spool\)/);
      assert.match(human.stdout, /upstream +none configured/);
      assert.match(human.stdout, /spool +4 readings \(400 B\), oldest [\d.]+s old/);
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
    // The same config, nobody listening any more.
    const down = await runCli('status', '--config', gw.configFile);
    assert.equal(down.code, 1);
    assert.equal(down.stdout, '');
    assert.match(down.stderr, new RegExp(`no uplink gateway answers at http://127\\.0\\.0\\.1:${gw.httpPort}/status \\(ECONNREFUSED\\)`));
  });

  test('uplink status reads only the http section of the config, and refuses bad usage', async (t) => {
    const port = await freePort();
    // A config whose TLS files do not exist: status must not care (it needs no more than http).
    const dir = await mkdtemp(join(tmpdir(), 'uplink-status-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'uplink.yaml');
    await writeFile(file, stringify({ upstream: { url: 'amqps://x:5671', tls: { ca: '/nonexistent/ca.pem' } }, http: { port } }));
    const down = await runCli('status', '--config', file, '--json');
    assert.equal(down.code, 1);
    assert.match(down.stderr, new RegExp(`http://127\\.0\\.0\\.1:${port}/status`));
    const usage = await runCli('status', '--bogus');
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /status: Unknown option '--bogus'/);
    const help = await runCli('status', '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /uplink status \[--config FILE\] \[--json\]/);
    const main = await runCli('--help');
    assert.match(main.stdout, /uplink status \[--config FILE\] \[--json\]/);
  });

  test('uplink status refuses an answer that is not uplink\'s /status (another service on the port) with exit 1, not a TypeError', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-status-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const ask = async (port: number, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
      const file = join(dir, `uplink-${port}.yaml`);
      await writeFile(file, stringify({ http: { port } }));
      return runCli('status', '--config', file, ...args);
    };
    const cases: Array<[string, string, RegExp]> = [
      ['{"hello":"world"}', 'application/json', /\(no gatewayId and version\)/],
      ['[1,2,3]', 'application/json', /\(not a JSON object\)/],
      ['<html>Grafana</html>', 'text/html', /\(not JSON: /],
      // Looks like uplink at first sight, but lacks what the summary prints.
      ['{"gatewayId":"x","version":"9.9.9","spool":{"depth":"many"}}', 'application/json', /\(unexpected uptimeSeconds, ready, conditions, upstream, spool, rates, totals, listeners, serial, routes\)/],
    ];
    for (const [body, type, why] of cases) {
      const port = await impostor(t, body, type);
      const result = await ask(port);
      assert.equal(result.code, 1, `${body}: ${result.stdout}${result.stderr}`);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, new RegExp(`what answers at http://127\\.0\\.0\\.1:${port}/status is not an uplink gateway's /status`));
      assert.match(result.stderr, why);
      assert.match(result.stderr, new RegExp(`Is another service on port ${port}\\?`));
      assert.doesNotMatch(result.stderr, /TypeError|at .*\.js:\d+/, 'no stack');
    }
    // --json prints the document as it is, once it is uplink's.
    const partial = await impostor(t, '{"gatewayId":"x","version":"9.9.9"}');
    const json = await ask(partial, '--json');
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), { gatewayId: 'x', version: '9.9.9' });
    const foreign = await ask(await impostor(t, '{"hello":"world"}'), '--json');
    assert.equal(foreign.code, 1);
  });

  test('uplink status says so when the default config is there but may not be read (EACCES), instead of quietly asking on the defaults', async (t) => {
    const asRoot = process.getuid?.() === 0;
    if (asRoot && requireTool(t, 'runuser', 'runs uplink status as the user nobody') === undefined) return;
    // As /etc/uplink is: a directory the user may not enter (root:uplink 0750 for anyone outside the group).
    const dir = await mkdtemp(join(tmpdir(), 'uplink-status-eacces-'));
    t.after(async () => { await chmod(dir, 0o700); await rm(dir, { recursive: true, force: true }); });
    const file = join(dir, 'uplink.yaml');
    await writeFile(file, stringify({ http: { port: 9464 } }));
    await chmod(file, 0o640);
    await chmod(dir, asRoot ? 0o750 : 0o000);
    // statusCommand with this file as its default (the CLI's is /etc/uplink/uplink.yaml).
    const script = `const { statusCommand } = await import(${JSON.stringify(pathToFileURL(join(REPO, 'dist/cli/status.js')).href)});
try { await statusCommand([], (text) => process.stdout.write(text), process.argv[1]); } catch (err) { process.stderr.write(err.message); process.exit(1); }`;
    const args = ['--input-type=module', '-e', script, file];
    const result = asRoot ? await run('runuser', ['-u', 'nobody', '--', process.execPath, ...args]) : await run(process.execPath, args);
    assert.equal(result.code, 1, `${result.stdout}${result.stderr}`);
    assert.match(result.stderr, new RegExp(`\\(${file.replace(/[.]/g, '\\.')} is not readable: the defaults were used; try sudo, or --config FILE\\)`));
    // A default file that is not there at all: the defaults, without a word about it.
    const missing = await run(process.execPath, ['--input-type=module', '-e', script, join(tmpdir(), 'uplink-no-such-dir', 'uplink.yaml')]);
    assert.doesNotMatch(missing.stderr, /is not readable/);
  });
});
