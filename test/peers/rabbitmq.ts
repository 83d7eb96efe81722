import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, copyFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestPki } from './certs.js';
import { freePorts } from './ports.js';

/**
 * A private RabbitMQ node for integration tests: AMQP 1.0 over TLS only, client certificates
 * required, SASL EXTERNAL with the certificate's CN as the user name. `startRabbitMq` runs
 * Debian 12's RabbitMQ 3.10 (AMQP 1.0 plugin) from this machine; test/peers/rabbitmq4.ts runs
 * RabbitMQ 4 (native AMQP 1.0) from a Debian 13 root through the same node code (a NodeRuntime).
 *
 * Everything the node owns (config, database, logs, Erlang cookie) lives in `dir`, and it listens on
 * free loopback ports only (AMQPS, Erlang distribution, and its own epmd), so it runs beside a system
 * broker and beside other test nodes. `stop()` then `start()` brings back the same node with its
 * data: durable queues and persistent messages survive, and `amqpsPort` stays the same.
 */
export interface RabbitMqPeer {
  readonly host: '127.0.0.1';
  /** AMQP 1.0 over TLS; the server certificate is valid for `localhost` and 127.0.0.1. */
  readonly amqpsPort: number;
  /** AMQP 1.0 over plain TCP (SASL PLAIN only), when `passwordUsers` were given; else 0. */
  readonly amqpPort: number;
  /** Erlang node name, unique per peer (`uplink-test-<hex>@localhost`). */
  readonly nodeName: string;
  /** Which RabbitMQ this is, e.g. `RabbitMQ 3.10` or `RabbitMQ 4.0`. */
  readonly product: string;
  /** The node's own directory: config, database (`mnesia/`), logs (`log/`). */
  readonly dir: string;
  /** The node's main log file, for a test that wants to read why it refused something. */
  readonly logFile: string;
  /** True between a successful `start()` and the next `stop()`. */
  readonly running: boolean;
  /** Starts the node again after `stop()`, with the same data and ports. Resolves once it is booted. */
  start(): Promise<void>;
  /** Stops the node and its epmd (graceful first, then by signal); safe to call when stopped. */
  stop(): Promise<void>;
  /** `stop()` then `start()`. */
  restart(): Promise<void>;
  /** Stops the node and deletes `dir`; the peer cannot be started again. */
  destroy(): Promise<void>;
  /** Runs `rabbitmqctl -n <node> ...args` against this node and resolves with its stdout. */
  ctl(args: string[]): Promise<string>;
  /** The queues of vhost `/`. */
  listQueues(): Promise<QueueInfo[]>;
  /** Messages in the queue (ready plus unacknowledged), or `undefined` when there is no such queue.
   * One rabbitmqctl run: about half a second. */
  queueDepth(name: string): Promise<number | undefined>;
  purgeQueue(name: string): Promise<void>;
  deleteQueue(name: string): Promise<void>;
  /** Declares a durable classic queue with these arguments (e.g. `x-max-length`), through
   * `rabbitmqctl import_definitions`: RabbitMQ 4's `/queues/Q` addresses need the queue to exist. */
  declareQueue(name: string, args?: Record<string, string | number | boolean>): Promise<void>;
  /** Imports definitions (queues, exchanges, bindings… in the export format) into vhost `/`. */
  importDefinitions(definitions: Record<string, unknown>): Promise<void>;
}

export interface QueueInfo {
  name: string;
  /** Ready plus unacknowledged. */
  messages: number;
  durable: boolean;
}

export interface RabbitMqOptions {
  pki: TestPki;
  /** Broker users, named like the client certificate CNs they stand for. Default: `[pki.clientCn]`. */
  users?: string[];
  /**
   * Users with a password, for SASL PLAIN. When given, the node also offers PLAIN (after EXTERNAL)
   * and listens on a plain TCP port (`amqpPort`) as well as on TLS.
   */
  passwordUsers?: Array<{ name: string; password: string }>;
  /** Where `rabbitmq-server` and `rabbitmqctl` live. Default: Debian's `/usr/lib/rabbitmq/bin`. */
  binDir?: string;
  /** Bound on one start-up. Default 60 s (a start takes 6-8 s on a 2-core machine). */
  startTimeoutMs?: number;
  /** More rabbitmq.conf lines, e.g. `max_message_size = 1048576`. */
  config?: string[];
}

/**
 * How a node's programs run, and what differs between RabbitMQ versions. The node's directory is
 * `dir` on this machine; the node itself may see it elsewhere (`path(dir)`), e.g. inside a chroot.
 */
export interface NodeRuntime {
  /** What logs and errors call it, e.g. `RabbitMQ 3.10`. */
  readonly product: string;
  /** Where `rabbitmq-server` and `rabbitmqctl` are, as the node sees it. */
  readonly binDir: string;
  /** `dir` as the node's programs see it. */
  path(dir: string): string;
  /** The command that runs `program` (a name on the node's PATH or a path the node sees). */
  command(dir: string, program: string, args: string[]): { file: string; args: string[] };
  /** Plugins to enable. */
  readonly plugins: string[];
  /** Config lines that only this version has (or needs). */
  readonly config: string[];
}

/** Debian 12's RabbitMQ 3.10, run directly on this machine. */
function hostRuntime(binDir: string): NodeRuntime {
  return {
    product: 'RabbitMQ 3.10',
    binDir,
    path: (dir) => dir,
    command: (_dir, program, args) => ({ file: program, args }),
    plugins: ['rabbitmq_amqp1_0', 'rabbitmq_auth_mechanism_ssl'],
    // Otherwise ANONYMOUS and no-SASL AMQP 1.0 clients are logged in as this user.
    config: ['amqp1_0.default_user = none'],
  };
}

const DEFAULT_BIN_DIR = '/usr/lib/rabbitmq/bin';
const CTL_TIMEOUT_MS = 30_000;
const GRACEFUL_STOP_MS = 20_000;
const SIGNAL_STOP_MS = 5_000;

/** Creates and starts a private node. Throws (never skips) when RabbitMQ is not installed. */
export async function startRabbitMq(options: RabbitMqOptions): Promise<RabbitMqPeer> {
  const binDir = options.binDir ?? DEFAULT_BIN_DIR;
  for (const tool of ['rabbitmq-server', 'rabbitmqctl']) {
    try {
      await access(join(binDir, tool));
    } catch {
      throw new Error(`RabbitMQ test peer: ${join(binDir, tool)} not found; install it with ` +
        '`apt-get install rabbitmq-server` (Debian) or pass binDir');
    }
  }
  return startRabbitMqNode(options, hostRuntime(binDir));
}

/** Creates and starts a private node that runs through `runtime`. */
export async function startRabbitMqNode(options: RabbitMqOptions, runtime: NodeRuntime): Promise<RabbitMqPeer> {
  const dir = await mkdtemp(join(tmpdir(), 'uplink-rabbitmq-'));
  const node = new RabbitMqNode(dir, runtime, options);
  try {
    await node.init();
    await node.startWithPortRetry();
  } catch (error) {
    await node.stop().catch(() => undefined);
    throw error;
  }
  return node;
}

interface Ports {
  amqps: number;
  amqp: number;
  node: number;
  dist: number;
  epmd: number;
}

interface Running {
  server: ChildProcess;
  serverExit: Promise<void>;
  epmd: ChildProcess;
  epmdExit: Promise<void>;
  watchdog: ChildProcess;
}

class RabbitMqNode implements RabbitMqPeer {
  readonly host = '127.0.0.1' as const;
  readonly nodeName: string;
  private ports: Ports = { amqps: 0, amqp: 0, node: 0, dist: 0, epmd: 0 };
  private current: Running | undefined;
  private destroyed = false;
  private readonly users: string[];
  private readonly startTimeoutMs: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly killOnExit = (): void => this.killNow();

  constructor(readonly dir: string, private readonly runtime: NodeRuntime, private readonly options: RabbitMqOptions) {
    this.nodeName = `uplink-test-${randomBytes(4).toString('hex')}@localhost`;
    this.users = options.users ?? [options.pki.clientCn];
    this.startTimeoutMs = options.startTimeoutMs ?? 60_000;
    this.env = this.baseEnv();
  }

  get amqpsPort(): number {
    return this.ports.amqps;
  }

  get product(): string {
    return this.runtime.product;
  }

  /** A path under `dir`, as the node's programs see it. */
  private seen(...parts: string[]): string {
    return join(this.runtime.path(this.dir), ...parts);
  }

  private command(program: string, args: string[]): { file: string; args: string[] } {
    return this.runtime.command(this.dir, program, args);
  }

  get amqpPort(): number {
    return this.ports.amqp;
  }

  private get plain(): Array<{ name: string; password: string }> {
    return this.options.passwordUsers ?? [];
  }

  get running(): boolean {
    return this.current !== undefined;
  }

  get logFile(): string {
    return join(this.dir, 'log', `${this.nodeName}.log`);
  }

  private get outFile(): string {
    return join(this.dir, 'server.out');
  }

  /** Writes everything that does not depend on the ports. */
  async init(): Promise<void> {
    await Promise.all(['home', 'mnesia', 'log', 'tls'].map((sub) => mkdir(join(this.dir, sub))));
    // Copies, so that a node that sees only its own directory (a chroot) can read them.
    const { pki } = this.options;
    await Promise.all([[pki.ca.cert, 'ca.pem'], [pki.server.cert, 'server.pem'], [pki.server.key, 'server.key']]
      .map(([from, to]) => copyFile(from!, join(this.dir, 'tls', to!))));
    // Written here rather than left to the first Erlang process, so that the server and every
    // rabbitmqctl agree on it whichever starts first.
    const cookie = join(this.dir, 'home', '.erlang.cookie');
    await writeFile(cookie, randomBytes(16).toString('hex').toUpperCase(), { mode: 0o400 });
    await writeFile(join(this.dir, 'rabbitmq-env.conf'), '');
    await writeFile(join(this.dir, 'enabled_plugins'), `[${this.runtime.plugins.join(',')}].\n`);
    // Definitions imported at boot replace the default user and vhost, so `guest` never exists.
    // The certificate users have no password at all: the only way in for them is a certificate.
    const users = [
      ...this.users.map((name) => ({ name, password_hash: '', hashing_algorithm: 'rabbit_password_hashing_sha256', tags: '' })),
      ...this.plain.map(({ name, password }) => ({ name, password_hash: rabbitPasswordHash(password), hashing_algorithm: 'rabbit_password_hashing_sha256', tags: '' })),
    ];
    await writeFile(join(this.dir, 'definitions.json'), JSON.stringify({
      vhosts: [{ name: '/' }],
      users,
      permissions: users.map(({ name }) => ({ user: name, vhost: '/', configure: '.*', write: '.*', read: '.*' })),
    }, null, 2));
  }

  /** The first start picks the ports; another process may grab one before the node binds it. */
  async startWithPortRetry(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const [amqps, amqp, node, dist, epmd] = await freePorts(5) as [number, number, number, number, number];
      this.ports = { amqps, amqp: this.plain.length > 0 ? amqp : 0, node, dist, epmd };
      await this.writeConfig();
      try {
        await this.start();
        return;
      } catch (error) {
        if (attempt >= 2 || !/eaddrinuse|exited before listening/i.test(String(error))) {
          throw error;
        }
      }
    }
  }

  private async writeConfig(): Promise<void> {
    const plain = this.plain.length > 0;
    const lines = [
      plain ? `listeners.tcp.default = 127.0.0.1:${this.ports.amqp}` : 'listeners.tcp = none',
      `listeners.ssl.default = 127.0.0.1:${this.ports.amqps}`,
      `ssl_options.cacertfile = ${this.seen('tls', 'ca.pem')}`,
      `ssl_options.certfile = ${this.seen('tls', 'server.pem')}`,
      `ssl_options.keyfile = ${this.seen('tls', 'server.key')}`,
      'ssl_options.verify = verify_peer',
      'ssl_options.fail_if_no_peer_cert = true',
      'auth_mechanisms.1 = EXTERNAL',
      ...(plain ? ['auth_mechanisms.2 = PLAIN'] : []),
      'ssl_cert_login_from = common_name',
      ...this.runtime.config,
      'loopback_users = none',
      `load_definitions = ${this.seen('definitions.json')}`,
      'distribution.listener.interface = 127.0.0.1',
      `distribution.listener.port_range.min = ${this.ports.dist}`,
      `distribution.listener.port_range.max = ${this.ports.dist}`,
      ...(this.options.config ?? []),
    ];
    await writeFile(join(this.dir, 'rabbitmq.conf'), `${lines.join('\n')}\n`);
  }

  private baseEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(process.env)) {
      // A developer's or CI's RabbitMQ/Erlang settings must not leak into the private node, and
      // NOTIFY_SOCKET would make rabbitmq-server think it runs under systemd.
      if (/^(RABBITMQ_|ERL_|NOTIFY_SOCKET$)/.test(key)) continue;
      env[key] = value;
    }
    return {
      ...env,
      PATH: `${this.runtime.binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: this.seen('home'),
      // The Elixir CLI warns on every call without a UTF-8 locale.
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      RABBITMQ_NODENAME: this.nodeName,
      RABBITMQ_CONFIG_FILE: this.seen('rabbitmq.conf'),
      RABBITMQ_CONF_ENV_FILE: this.seen('rabbitmq-env.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: this.seen('enabled_plugins'),
      RABBITMQ_MNESIA_BASE: this.seen('mnesia'),
      RABBITMQ_LOG_BASE: this.seen('log'),
      // Our epmd is started and killed by us; an Erlang VM must never start its own daemon, which
      // would outlive the test.
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-start_epmd false',
      RABBITMQ_CTL_ERL_ARGS: '-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}',
    };
  }

  private portEnv(): NodeJS.ProcessEnv {
    return {
      ...this.env,
      RABBITMQ_NODE_PORT: String(this.ports.node),
      RABBITMQ_DIST_PORT: String(this.ports.dist),
      ERL_EPMD_PORT: String(this.ports.epmd),
      ERL_EPMD_ADDRESS: '127.0.0.1',
    };
  }

  async start(): Promise<void> {
    if (this.destroyed) throw new Error(`${this.product} test peer ${this.nodeName} was destroyed`);
    if (this.current) return;
    const env = this.portEnv();
    const logOffset = await stat(this.logFile).then((info) => info.size, () => 0);
    const out = await open(this.outFile, 'a');
    let epmd: ChildProcess | undefined;
    let server: ChildProcess | undefined;
    try {
      await out.write(`\n=== start ${new Date().toISOString()} ===\n`);
      const epmdCommand = this.command('epmd', ['-port', String(this.ports.epmd), '-address', '127.0.0.1']);
      epmd = spawn(epmdCommand.file, epmdCommand.args, { env, detached: true, stdio: ['ignore', out.fd, out.fd] });
      const epmdExit = exitOf(epmd);
      epmd.unref();
      await waitForPort(this.ports.epmd, epmdExit, 10_000, 'epmd', EPMD_NAMES_REQ).catch((error: unknown) => {
        const spawnError = epmd === undefined ? undefined : spawnErrors.get(epmd);
        throw spawnError ? new Error(`epmd (Erlang, from erlang-base) could not be started: ${spawnError.message}`) : error;
      });

      const serverCommand = this.command(join(this.runtime.binDir, 'rabbitmq-server'), []);
      server = spawn(serverCommand.file, serverCommand.args,
        { cwd: this.dir, env, detached: true, stdio: ['ignore', out.fd, out.fd] });
      const serverExit = exitOf(server);
      server.unref();
      if (server.pid === undefined || epmd.pid === undefined) {
        throw spawnErrors.get(server) ?? new Error('rabbitmq-server got no pid');
      }
      this.current = { server, serverExit, epmd, epmdExit, watchdog: startWatchdog([server.pid, epmd.pid]) };
      process.once('exit', this.killOnExit);
    } catch (error) {
      for (const child of [server, epmd]) {
        if (child?.pid !== undefined) killGroup(child.pid, 'SIGKILL');
      }
      throw new Error(`${this.product} test peer: could not spawn: ${String(error)}`);
    } finally {
      await out.close();
    }
    try {
      await this.awaitBoot(this.current.serverExit);
      await this.checkListener(logOffset);
    } catch (error) {
      await this.stop().catch(() => undefined);
      throw error;
    }
  }

  private async awaitBoot(serverExit: Promise<void>): Promise<void> {
    const deadline = Date.now() + this.startTimeoutMs;
    let exited = false;
    void serverExit.then(() => { exited = true; });
    let lastError = '';
    for (;;) {
      if (exited) {
        throw new Error(`${this.product} test peer ${this.nodeName} exited during start-up\n${await this.tail()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`${this.product} test peer ${this.nodeName} not up after ${this.startTimeoutMs} ms ` +
          `(last check: ${lastError.trim()})\n${await this.tail()}`);
      }
      try {
        // The listener opens near the end of the boot. Polling it is cheap, where every rabbitmqctl
        // run costs half a second of CPU that the booting node wants on a 2-core machine.
        await waitForPort(this.ports.amqps, serverExit, left, 'AMQPS listener');
        await this.runCtl(['await_startup', '--timeout', String(Math.max(1, Math.floor((deadline - Date.now()) / 1000)))],
          Math.max(1, deadline - Date.now()) + 5_000);
        return;
      } catch (error) {
        lastError = String(error);
        await sleep(250);
      }
    }
  }

  /**
   * RabbitMQ 3.10 completes its boot even when the TLS listener could not bind (it logs the error
   * and goes on), and a port probe cannot tell its listener from another process's. Its log can.
   */
  private async checkListener(logOffset: number): Promise<void> {
    const started = `started TLS (SSL) listener on 127.0.0.1:${this.ports.amqps}`;
    let log = '';
    // The file handler writes a moment after the event.
    for (let i = 0; i < 20; i++) {
      log = (await readFile(this.logFile).catch(() => Buffer.alloc(0))).subarray(logOffset).toString('utf8');
      if (log.includes(started)) return;
      await sleep(100);
    }
    const failures = log.split('\n').filter((line) => /Failed to start Ranch listener|listen_error/.test(line));
    throw new Error(`${this.product} test peer ${this.nodeName} booted without its AMQPS listener on ` +
      `127.0.0.1:${this.ports.amqps}\n${failures.map((line) => line.slice(0, 300)).join('\n')}\n${await this.tail()}`);
  }

  async stop(): Promise<void> {
    const current = this.current;
    if (!current) return;
    const { server, serverExit, epmd, epmdExit, watchdog } = current;
    try {
      if (server.exitCode === null && server.signalCode === null) {
        // A node that cannot be asked (hung, or not registered yet) goes straight to the signals.
        const asked = await this.runCtl(['stop'], GRACEFUL_STOP_MS).then(() => true, () => false);
        if (!asked || !(await within(serverExit, GRACEFUL_STOP_MS))) {
          if (server.pid !== undefined) killGroup(server.pid, 'SIGTERM');
          if (!(await within(serverExit, SIGNAL_STOP_MS))) {
            if (server.pid !== undefined) killGroup(server.pid, 'SIGKILL');
            await within(serverExit, SIGNAL_STOP_MS);
          }
        }
      }
      // The shell wrapper has exited; make sure nothing else of its group (the VM) lingers.
      if (server.pid !== undefined) killGroup(server.pid, 'SIGKILL');
    } finally {
      if (epmd.pid !== undefined) killGroup(epmd.pid, 'SIGTERM');
      if (!(await within(epmdExit, SIGNAL_STOP_MS)) && epmd.pid !== undefined) killGroup(epmd.pid, 'SIGKILL');
      if (watchdog.pid !== undefined) killGroup(watchdog.pid, 'SIGKILL');
      this.current = undefined;
      process.removeListener('exit', this.killOnExit);
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async destroy(): Promise<void> {
    await this.stop();
    this.destroyed = true;
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Last resort when the test process exits without stopping the node: nothing may outlive it. */
  private killNow(): void {
    const current = this.current;
    if (!current) return;
    for (const child of [current.server, current.epmd, current.watchdog]) {
      if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
    }
  }

  async ctl(args: string[]): Promise<string> {
    return this.runCtl(args, CTL_TIMEOUT_MS);
  }

  private async runCtl(args: string[], timeoutMs: number): Promise<string> {
    if (!this.current) throw new Error(`${this.product} test peer ${this.nodeName} is not running`);
    return new Promise((resolve, reject) => {
      const { file, args: argv } = this.command(join(this.runtime.binDir, 'rabbitmqctl'), ['-n', this.nodeName, ...args]);
      execFile(file, argv,
        { env: this.portEnv(), timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) => {
          if (error) {
            reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${error.message}\n${stderr}${stdout}`.trim()));
          } else {
            resolve(stdout);
          }
        });
    });
  }

  async listQueues(): Promise<QueueInfo[]> {
    const stdout = await this.ctl(['list_queues', '-p', '/', '--quiet', '--formatter', 'json', 'name', 'messages', 'durable']);
    const rows = JSON.parse(stdout) as Array<{ name: string; messages: number | string; durable: boolean }>;
    // A queue that is down or still recovering reports '' for messages: NaN, so that no count matches it.
    return rows.map((row) => ({
      name: row.name, messages: typeof row.messages === 'number' ? row.messages : NaN, durable: row.durable,
    }));
  }

  async queueDepth(name: string): Promise<number | undefined> {
    return (await this.listQueues()).find((queue) => queue.name === name)?.messages;
  }

  async purgeQueue(name: string): Promise<void> {
    await this.ctl(['purge_queue', '-p', '/', name]);
  }

  async deleteQueue(name: string): Promise<void> {
    await this.ctl(['delete_queue', '-p', '/', name]);
  }

  async declareQueue(name: string, args: Record<string, string | number | boolean> = {}): Promise<void> {
    await this.importDefinitions({ queues: [{ name, vhost: '/', durable: true, auto_delete: false, arguments: args }] });
  }

  async importDefinitions(definitions: Record<string, unknown>): Promise<void> {
    const file = `definitions-${randomBytes(4).toString('hex')}.json`;
    await writeFile(join(this.dir, file), JSON.stringify(definitions));
    try {
      await this.ctl(['import_definitions', this.seen(file)]);
    } finally {
      await rm(join(this.dir, file), { force: true });
    }
  }

  /** What a failed start-up needs to be understood: the first errors of this start (the cause;
   * the end of the output is mostly the crash that followed) and the end of both outputs. */
  private async tail(lines = 30): Promise<string> {
    const parts: string[] = [];
    const read = async (file: string): Promise<string[] | undefined> =>
      readFile(file, 'utf8').then((text) => text.trimEnd().split('\n'), () => undefined);
    const out = await read(this.outFile);
    if (out) {
      const thisStart = out.slice(out.findLastIndex((line) => line.startsWith('=== start ')));
      const firstErrors = thisStart.filter((line) => /\[error\]|BOOT FAILED/.test(line)).slice(0, 8);
      if (firstErrors.length > 0) parts.push(`--- first errors in ${this.outFile} ---\n${firstErrors.join('\n')}`);
      parts.push(`--- ${this.outFile} (last ${lines} lines) ---\n${thisStart.slice(-lines).join('\n')}`);
    }
    const log = await read(this.logFile);
    parts.push(log ? `--- ${this.logFile} (last ${lines} lines) ---\n${log.slice(-lines).join('\n')}`
      : `--- ${this.logFile}: not written ---`);
    return parts.join('\n');
  }
}

/** Resolves when the child is gone; a spawn failure (ENOENT) emits 'error' and never 'exit'. */
function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (error) => {
      spawnErrors.set(child, error);
      resolve();
    });
  });
}

const spawnErrors = new WeakMap<ChildProcess, Error>();

/**
 * The 'exit' hook does not run when the test process dies by a signal (Ctrl-C, a runner's timeout),
 * and the node runs in its own process groups, out of reach of that signal. This shell polls the
 * test process and kills the groups once it is gone; `stop()` kills the shell first.
 */
export function startWatchdog(groups: number[]): ChildProcess {
  // A killed test process can stay a zombie for seconds (PID 1 here reaps slowly): count that as gone.
  const script = 'parent=$1; shift; ' +
    'while state=$(sed "s/.*) //" "/proc/$parent/stat" 2>/dev/null) && [ "${state#Z}" = "$state" ]; do sleep 1; done; ' +
    'for group in "$@"; do kill -s KILL -- "-$group" 2>/dev/null; done';
  const watchdog = spawn('sh', ['-c', script, 'uplink-rabbitmq-watchdog', String(process.pid), ...groups.map(String)],
    { detached: true, stdio: 'ignore' });
  watchdog.on('error', () => undefined);
  watchdog.unref();
  return watchdog;
}

/** Signals the process group the child leads (it was spawned detached). */
export function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** Whether `promise` settles within `ms`. The timer is ref'd: the children are not, and something
 * must keep the event loop alive while we wait for them. */
async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(resolve, ms, false); });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** epmd's NAMES_REQ: asking it something real keeps its log free of "partial packet" complaints. */
const EPMD_NAMES_REQ = Buffer.from([0, 1, 110]);

async function waitForPort(port: number, exited: Promise<void>, timeoutMs: number, what: string,
  probe?: Buffer): Promise<void> {
  let gone = false;
  void exited.then(() => { gone = true; });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await canConnect(port, probe)) return;
    if (gone) throw new Error(`${what} exited before listening on 127.0.0.1:${port}`);
    if (Date.now() >= deadline) throw new Error(`${what} not listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Whether something accepts connections on the port (and, given a probe, answers it). */
function canConnect(port: number, probe?: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => {
      if (!probe) {
        done(true);
        return;
      }
      socket.once('data', () => done(true));
      socket.once('end', () => done(false));
      socket.write(probe);
    });
  });
}

/** RabbitMQ's stored password form (rabbit_password_hashing_sha256): base64(salt ++ sha256(salt ++ password)). */
function rabbitPasswordHash(password: string): string {
  const salt = randomBytes(4);
  return Buffer.concat([salt, createHash('sha256').update(Buffer.concat([salt, Buffer.from(password, 'utf8')])).digest()]).toString('base64');
}
