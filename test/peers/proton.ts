import { spawn, type ChildProcess } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TestPki } from './certs.js';

/**
 * A Qpid Proton AMQP 1.0 receiver (test/peers/proton_receiver.py) run as a child process: the upstream
 * a credit test talks to. RabbitMQ grants 65536 credit and never makes a sender wait; this peer grants
 * exactly what the test asks for and records every transfer that arrived beyond it.
 *
 * The Proton binding is only installed for the Debian interpreter, hence the fixed /usr/bin/python3.
 */
export const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('./proton_receiver.py', import.meta.url));

export type Outcome = 'accept' | 'reject' | 'release' | 'modify' | 'modify-undeliverable';

/**
 * Per-link credit policy.
 * - `window`: keep `n` credits outstanding, topped up as deliveries are settled (credit + unsettled = n).
 * - `batch`: grant `n`; grant the next `n` only once all `n` of the batch have arrived and been settled.
 * - `drain`: grant `n` with drain=true (AMQP 1.0 2.6.7: the sender must use it or give it back at
 *   once); once the round is over, wait `drainIntervalMs` (default 200) and start the next. Each
 *   round ends with a `drained` event: `returned` (credit given back), `received` (transfers so far).
 * - `total`: the sender may never send more than `total` on the link; the limit stops growing there.
 */
export interface CreditPolicy {
  mode: 'window' | 'batch' | 'drain';
  n: number;
  total?: number;
  drainIntervalMs?: number;
}

/**
 * Which transfers get a non-accept outcome, by their 1-based position on their link. The first matching
 * rule wins; a message whose application property `outcome` names an outcome overrides all rules.
 * `modify` is `modified` with delivery-failed=true; rejections carry `rejectCondition`.
 */
export type OutcomeRule =
  | { outcome: Outcome; every: number }
  | { outcome: Outcome; at: number[] }
  | { outcome: Outcome; all: true };

export interface ProtonReceiverOptions {
  /** Needed unless `tls` is false: the server presents `pki.server` and requires a client cert from `pki.ca`. */
  pki?: TestPki;
  /** Default true: TLS with a required client certificate and SASL EXTERNAL. False: plain TCP, SASL ANONYMOUS or none. */
  tls?: boolean;
  /** Default `{ mode: 'window', n: 10 }`. */
  credit?: CreditPolicy;
  /** Grant nothing for this long after a link attaches, then apply `credit`. */
  withholdSeconds?: number;
  /** Hold each outcome this long before settling (settlements are then recorded as `settled` events). */
  settleDelayMs?: number;
  /** Never settle the first N transfers the peer receives (over all connections): they stay in flight. */
  holdFirst?: number;
  outcomes?: OutcomeRule[];
  /** Error condition of rejections; default `amqp:precondition-failed`. */
  rejectCondition?: string;
  /** `detach`: close the link with amqp:link:transfer-limit-exceeded on the first over-credit transfer. */
  onOverCredit?: 'record' | 'detach';
  /** How long to wait for the ready line; default 10 s. */
  startTimeoutMs?: number;
  /** Interpreter with the `proton` module; default /usr/bin/python3 (the pyenv python on PATH lacks it). */
  python?: string;
}

/** One transfer as the peer saw it. */
export interface Transfer {
  event: 'transfer';
  conn: number;
  link: string;
  address: string | null;
  /** 1-based position on its link. */
  index: number;
  tag: string | null;
  message_id: string | number | null;
  body_size: number;
  /** Encoded size of the whole message. */
  size: number | null;
  /** Credit the sender had left for this transfer when it sent it (1 = its last credit). */
  credit: number;
  /** True when the sender had no credit left for it: a flow-control violation by the sender. */
  over_credit: boolean;
  /** One of the first `holdFirst` transfers: never settled. */
  held: boolean;
  presettled: boolean;
  outcome: Outcome | null;
  condition: { name: string; description: string } | null;
  t: number;
}

export interface PeerEvent {
  event: string;
  t: number;
  [key: string]: unknown;
}

export interface ProtonPeer {
  host: string;
  port: number;
  pid: number;
  /** `amqps://127.0.0.1:PORT` (or `amqp://` without TLS). */
  url: string;
  /** Every line the peer printed so far, parsed. */
  events(): PeerEvent[];
  transfers(): Transfer[];
  /** Number of transfers that arrived while the sender had no credit left. */
  overCredit(): number;
  /** Resolves with all transfers once at least `n` arrived; rejects after `timeoutMs` or if the peer dies. */
  waitForTransfers(n: number, timeoutMs?: number): Promise<Transfer[]>;
  /** Resolves with the first event (already seen or future) that satisfies `match`. */
  waitForEvent(match: (event: PeerEvent) => boolean, timeoutMs?: number): Promise<PeerEvent>;
  /** What the peer wrote to stderr (tracebacks, Proton logging). */
  stderr(): string;
  /** SIGTERM, then SIGKILL after a few seconds; resolves once the process is gone. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort if a test forgets stop(): the peer also exits by itself when its stdin closes.
  process.on('exit', () => {
    for (const child of live) {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
      }
    }
  });
}

function ruleText(rule: OutcomeRule): string {
  if ('every' in rule) return `${rule.outcome}:every=${rule.every}`;
  if ('at' in rule) return `${rule.outcome}:at=${rule.at.join(',')}`;
  return `${rule.outcome}:all`;
}

function buildArgs(options: ProtonReceiverOptions, tls: boolean): string[] {
  const credit = options.credit ?? { mode: 'window', n: 10 };
  if (!Number.isInteger(credit.n) || credit.n < 1) throw new Error(`credit.n must be a positive integer, got ${credit.n}`);
  const args = [SCRIPT, '--host', '127.0.0.1', '--port', '0', '--exit-on-stdin-eof',
    '--credit', credit.mode, String(credit.n)];
  if (tls) {
    const pki = options.pki;
    if (pki === undefined) throw new Error('startProtonReceiver: TLS needs options.pki (or set tls: false)');
    args.push('--cert', pki.server.cert, '--key', pki.server.key, '--ca', pki.ca.cert);
  } else {
    args.push('--no-tls');
  }
  if (credit.total !== undefined) args.push('--total', String(credit.total));
  if (credit.drainIntervalMs !== undefined) args.push('--drain-interval-ms', String(credit.drainIntervalMs));
  if (options.withholdSeconds !== undefined) args.push('--withhold', String(options.withholdSeconds));
  if (options.settleDelayMs !== undefined) args.push('--settle-delay-ms', String(options.settleDelayMs));
  if (options.holdFirst !== undefined) args.push('--hold-first', String(options.holdFirst));
  for (const rule of options.outcomes ?? []) args.push('--outcome', ruleText(rule));
  if (options.rejectCondition !== undefined) args.push('--reject-condition', options.rejectCondition);
  if (options.onOverCredit !== undefined) args.push('--on-over-credit', options.onOverCredit);
  return args;
}

async function assertPythonPresent(python: string): Promise<void> {
  try {
    await access(python, constants.X_OK);
  } catch {
    throw new Error(`${python} not found or not executable: the Proton test peer needs Debian's python3 ` +
      'with python3-qpid-proton (apt-get install python3 python3-qpid-proton)');
  }
}

/** Starts a Proton receiver on a free loopback port the OS picks; resolves once it listens. */
export async function startProtonReceiver(options: ProtonReceiverOptions = {}): Promise<ProtonPeer> {
  const tls = options.tls ?? true;
  const args = buildArgs(options, tls);
  const python = options.python ?? PYTHON;
  await assertPythonPresent(python);
  installExitHook();

  const child = spawn(python, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  const events: PeerEvent[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let spawnError: Error | undefined;

  const notify = (): void => { for (const wake of [...waiters]) wake(); };
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => { stderr += chunk; });
  child.stdin?.on('error', () => { /* the peer may be gone already */ });
  // 'close', not 'exit': it comes after the last stdout line was read, so no record is lost at the end.
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('close', (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      notify();
      resolve();
    });
  });
  child.once('error', (err) => { spawnError = err; live.delete(child); notify(); });
  if (child.stdout === null) throw new Error('no stdout pipe from the Proton peer');
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    try {
      events.push(JSON.parse(line) as PeerEvent);
    } catch {
      stderr += `unparsable stdout line: ${line}\n`;
    }
    notify();
  });

  const describeDeath = (): string => {
    if (spawnError !== undefined) return `could not start ${python}: ${spawnError.message}`;
    // proton_receiver.py exits 3 when `import proton` fails.
    if (exited?.code === 3) return `the qpid-proton module is missing for ${python} (apt-get install python3-qpid-proton)`;
    return `Proton peer exited (code ${exited?.code ?? 'none'}, signal ${exited?.signal ?? 'none'})`;
  };

  const waitFor = <T>(check: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const attempt = (): boolean => {
        const value = check();
        if (value !== undefined) { finish(); resolve(value); return true; }
        if (exited !== undefined || spawnError !== undefined) {
          finish();
          reject(new Error(`${what()}: ${describeDeath()}\n${stderr.trim()}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => { finish(); reject(new Error(`timed out after ${timeoutMs} ms ${what()}\n${stderr.trim()}`)); }, timeoutMs);
      const finish = (): void => { clearTimeout(timer); waiters.delete(wake); };
      const wake = (): void => { attempt(); };
      waiters.add(wake);
      attempt();
    });

  const transfers = (): Transfer[] => events.filter((e): e is PeerEvent & Transfer => e.event === 'transfer');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exited === undefined && spawnError === undefined && child.pid !== undefined) {
        const pid = child.pid;
        try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
        if (!await within(exitedPromise, 3000)) {
          try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
          if (!await within(exitedPromise, 2000)) throw new Error(`Proton peer pid ${pid} survived SIGKILL`);
        }
      }
      child.stdin?.destroy();
      lines.close();
      live.delete(child);
    })();
    return stopping;
  };

  let ready: PeerEvent;
  try {
    ready = await waitFor(() => events.find((e) => e.event === 'listening'),
      options.startTimeoutMs ?? 10_000, () => 'waiting for the Proton peer to listen');
  } catch (err) {
    await stop();
    throw err;
  }
  const port = ready.port;
  if (typeof port !== 'number' || port <= 0 || port === 5671 || port === 5672) {
    await stop();
    throw new Error(`Proton peer reported an unusable port: ${String(port)}`);
  }
  // A peer left running must not keep the test process alive; its stdin closing then stops it too.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as Socket | null)?.unref?.();

  return {
    host: '127.0.0.1',
    port,
    pid: child.pid ?? -1,
    url: `${tls ? 'amqps' : 'amqp'}://127.0.0.1:${port}`,
    events: () => [...events],
    transfers,
    overCredit: () => transfers().filter((t) => t.over_credit).length,
    waitForTransfers: (n, timeoutMs = 10_000) => waitFor(() => {
      const all = transfers();
      return all.length >= n ? all : undefined;
    }, timeoutMs, () => `waiting for ${n} transfers (have ${transfers().length})`),
    waitForEvent: (match, timeoutMs = 10_000) =>
      waitFor(() => events.find(match), timeoutMs, () => 'waiting for a peer event'),
    stderr: () => stderr,
    stop,
  };
}

/** True if `promise` settled within `ms`. The timer stays referenced: it is what keeps the process alive meanwhile. */
async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
