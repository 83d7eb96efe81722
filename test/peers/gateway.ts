/**
 * Starts the real gateway (`node dist/cli.js run`) as a child process with a generated config on
 * free loopback ports, and reads its JSON log lines. `npm test` builds dist/ first.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { freePorts } from './ports.js';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** Runs `uplink ARGS…` (the built CLI) to completion: its exit code and output. */
export async function runCli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

export type LogLine = Record<string, unknown> & { level?: string; msg?: string };

export interface GatewayProcess {
  child: ChildProcess;
  dir: string;
  configFile: string;
  config: Record<string, unknown>;
  mqttPort: number;
  httpPort: number;
  /** Every JSON log line so far. */
  logs: LogLine[];
  /** Lines of stdout that were not JSON: there should be none. */
  nonJson: string[];
  stderr: () => string;
  /** The gateway's own pid (from its log lines), which differs from child.pid under a wrapper. */
  pid(): number | undefined;
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Sends `signal` and resolves with how the process ended. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartOptions {
  /** Merged over the generated defaults (free ports, a temporary dataDir). */
  config?: Record<string, unknown>;
  /** Resolve once this log line appears (default: 'gateway started'). */
  readyWhen?: (line: LogLine) => boolean;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Runs the gateway under another program (e.g. strace): `command ...args node dist/cli.js run ...`. */
  wrapper?: { command: string; args: string[] };
}

/** Left to the end of the test file: a test may start a second gateway on the first one's dataDir. */
const leftBehind = new Map<string, ChildProcess>();
process.once('exit', () => {
  for (const [dir, child] of leftBehind) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // A mount a test left in it: not this hook's to undo.
    }
  }
});

export async function startGateway(options: StartOptions = {}): Promise<GatewayProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' first`);
  const dir = await mkdtemp(join(tmpdir(), 'uplink-gw-'));
  const [mqttPort, httpPort] = await freePorts(2) as [number, number];
  const config: Record<string, unknown> = {
    gatewayId: 'test-gw',
    dataDir: join(dir, 'data'),
    mqtt: { host: '127.0.0.1', port: mqttPort },
    http: { host: '127.0.0.1', port: httpPort },
    ...options.config,
  };
  const configFile = join(dir, 'uplink.yaml');
  await writeFile(configFile, stringify(config));

  const argv = [CLI, 'run', '--config', configFile];
  const wrapper = options.wrapper;
  const child = spawn(wrapper?.command ?? process.execPath, wrapper === undefined ? argv : [...wrapper.args, process.execPath, ...argv], {
    cwd: dir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  leftBehind.set(dir, child);
  const logs: LogLine[] = [];
  const nonJson: string[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  let buffered = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        nonJson.push(line);
      }
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      for (const wake of waiters) wake();
      resolve({ code, signal });
    });
  });

  const waitForLog = (match: (line: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.find(match);
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done();
          reject(new Error(`gateway exited (${child.exitCode ?? child.signalCode}) before the expected log line\n` +
            `stderr: ${stderr}\nlog: ${logs.map((l) => JSON.stringify(l)).join('\n')}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for a log line\nstderr: ${stderr}\nlog: ${logs.map((l) => JSON.stringify(l)).join('\n')}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  const pid = (): number | undefined => {
    const logged = logs.find((line) => typeof line.pid === 'number')?.pid as number | undefined;
    return wrapper === undefined ? child.pid : logged;
  };
  // Under a wrapper the signal goes to the gateway itself: a tracer that gets it may detach and
  // leave the gateway running. The wrapper then ends as the gateway did.
  const signalGateway = (signal: NodeJS.Signals): void => {
    const target = pid();
    if (target === undefined || target === child.pid) {
      child.kill(signal);
      return;
    }
    try {
      process.kill(target, signal);
    } catch {
      // Gone already.
    }
    if (signal === 'SIGKILL') child.kill(signal);
  };
  const gateway: GatewayProcess = {
    child, dir, configFile, config, mqttPort, httpPort, logs, nonJson, exited, waitForLog, pid,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      if (child.exitCode === null && child.signalCode === null) signalGateway(signal);
      const timer = setTimeout(() => signalGateway('SIGKILL'), timeoutMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
  try {
    await waitForLog(options.readyWhen ?? ((line) => line.msg === 'gateway started'), options.timeoutMs);
  } catch (err) {
    await gateway.stop('SIGKILL');
    throw err;
  }
  return gateway;
}
