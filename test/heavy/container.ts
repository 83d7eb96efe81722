/**
 * A Debian 12 root booted with `systemd-nspawn --boot`: a real systemd as PID 1 of its own PID
 * namespace, for the tests of the appliance under systemd.
 *
 * How it runs here (checked on this machine: no systemd on the host, cgroup v1 with a cgroup2
 * hierarchy beside it, root in a VM):
 * - `--register=no --keep-unit`: there is no systemd-machined and no system bus on the host.
 * - `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`: without it the container gets the host's cgroup v1
 *   controllers read-only, and systemd inside cannot enforce DevicePolicy=/DeviceAllow= (a test
 *   unit opened any device). On the unified hierarchy it attaches BPF device programs, which hold.
 * - `--console=read-only`: the container's console output is read by nspawn (an unread console
 *   pty fills up and blocks systemd).
 * - the host's network (no --private-network): the test's peers listen on the host's loopback,
 *   on free ports, and the gateway reaches them there.
 * Commands run inside with `nsenter --all` into the namespaces of the container's PID 1, with a
 * clean environment (none of the host's npm_config_* and the like).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { run, until } from '../appliance/helpers.js';

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Container {
  root: string;
  /** The host PID of the container's PID 1 (systemd). */
  leader: number;
  /** Runs `argv` inside the container as root. */
  exec(argv: string[]): Promise<Result>;
  /** Runs a bash script inside the container; fails the test with its output unless it exits 0. */
  sh(script: string): Promise<string>;
  /** What the container wrote to its console so far. */
  console(): string;
  /** Powers the container off (SIGTERM to nspawn: systemd shuts down), SIGKILL after `ms`. */
  stop(ms?: number): Promise<void>;
}

const CLEAN_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root', 'LANG=C.UTF-8', 'SYSTEMD_PAGER=', 'SYSTEMD_COLORS=0'];

function childOf(parent: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name in parentheses may hold spaces: the fields after its closing one count.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === parent) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** Boots `root` (a directory the test owns: the container writes into it) and waits for systemd to finish starting up. */
export async function bootContainer(root: string, name: string): Promise<Container> {
  const nspawn: ChildProcess = spawn('systemd-nspawn', ['-D', root, `--machine=${name}`, '--register=no', '--keep-unit',
    '--boot', '--console=read-only'], {
    env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  nspawn.stdout!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
  nspawn.stderr!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
  let exited = false;
  const gone = new Promise<void>((resolve) => nspawn.once('exit', () => { exited = true; resolve(); }));
  let leader: number | undefined;
  await until(() => {
    if (exited) throw new Error(`systemd-nspawn exited while booting:\n${output}`);
    leader = childOf(nspawn.pid!);
    return leader !== undefined;
  }, 'the container\'s PID 1', 60_000);

  const exec = (argv: string[]): Promise<Result> =>
    run('nsenter', ['--target', String(leader), '--all', '--', '/usr/bin/env', '-i', ...CLEAN_ENV, ...argv]);
  const container: Container = {
    root,
    leader: leader!,
    exec,
    async sh(script) {
      const result = await exec(['/bin/bash', '-euo', 'pipefail', '-c', script]);
      if (result.code !== 0) throw new Error(`in the container, exit ${result.code}: ${script}\n${result.stdout}${result.stderr}`);
      return result.stdout;
    },
    console: () => output,
    async stop(ms = 90_000) {
      if (exited) return;
      nspawn.kill('SIGTERM');
      const timer = setTimeout(() => nspawn.kill('SIGKILL'), ms);
      await gone;
      clearTimeout(timer);
    },
  };
  await until(async () => (await exec(['test', '-S', '/run/systemd/private'])).code === 0, 'systemd\'s socket in the container', 60_000);
  // `running`, or `degraded` when some unit of the minimal system failed (not ours: none is installed yet).
  const state = await exec(['systemctl', 'is-system-running', '--wait']);
  if (!/^(running|degraded)$/m.test(state.stdout)) {
    await container.stop();
    throw new Error(`the container did not boot: ${state.stdout}${state.stderr}\n${output}`);
  }
  return container;
}
