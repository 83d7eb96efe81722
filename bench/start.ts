/**
 * How long `uplink run` takes to start and how much memory it holds then: spawns the built CLI on
 * a fresh config (free loopback ports, an empty spool, no upstream), times the log line 'gateway
 * started' from the spawn, reads VmRSS from /proc/PID/status at that moment, and stops it.
 *
 * With two CLIs (e.g. dist/cli.js of two checkouts), the runs alternate, so that the load of the
 * shared machine falls on both alike; the medians are printed side by side.
 *
 *   node --import tsx bench/start.ts [--runs 20] CLI [CLI…]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { freePorts } from '../test/peers/ports.js';

const { values, positionals } = parseArgs({ options: { runs: { type: 'string', default: '20' } }, allowPositionals: true });
const runs = Number(values.runs);
const clis = (positionals.length > 0 ? positionals : ['dist/cli.js']).map((p) => resolve(p));

interface Sample { ms: number; rssKiB: number }

async function once(cli: string): Promise<Sample> {
  const dir = await mkdtemp(join(tmpdir(), 'uplink-start-'));
  try {
    const [mqttPort, httpPort] = await freePorts(2) as [number, number];
    const configFile = join(dir, 'uplink.yaml');
    await writeFile(configFile, stringify({
      gatewayId: 'bench-start', dataDir: join(dir, 'data'),
      mqtt: { host: '127.0.0.1', port: mqttPort }, http: { host: '127.0.0.1', port: httpPort },
      routes: [{ topic: '#', address: '/queue/bench' }],
    }));
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, [cli, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    let buffered = '';
    const sample = await new Promise<Sample>((done, fail) => {
      child.once('exit', (code) => fail(new Error(`${cli} exited with ${code} before 'gateway started'`)));
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        if (!buffered.includes('"msg":"gateway started"')) return;
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        child.stdout.removeAllListeners('data');
        readFile(`/proc/${child.pid}/status`, 'utf8').then((status) => {
          done({ ms, rssKiB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) });
        }, fail);
      });
    });
    child.kill('SIGTERM');
    await exited;
    return sample;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const samples = clis.map(() => [] as Sample[]);
for (let i = 0; i < runs; i++) {
  for (const [k, cli] of clis.entries()) samples[k]!.push(await once(cli));
}
for (const [k, cli] of clis.entries()) {
  const s = samples[k]!;
  console.log(`${cli}: ${runs} starts to 'gateway started': median ${median(s.map((x) => x.ms)).toFixed(0)} ms ` +
    `(min ${Math.min(...s.map((x) => x.ms)).toFixed(0)}, max ${Math.max(...s.map((x) => x.ms)).toFixed(0)}); ` +
    `RSS then: median ${(median(s.map((x) => x.rssKiB)) / 1024).toFixed(1)} MiB`);
}
