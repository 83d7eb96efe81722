import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PYTHON } from './proton.js';

/**
 * A Qpid Proton receiver (test/peers/proton_capture.py) that accepts every message and reports what
 * the gateway put on it: id, body, subject, creation_time and ttl. Plain TCP, SASL ANONYMOUS.
 */
const SCRIPT = fileURLToPath(new URL('./proton_capture.py', import.meta.url));

export interface CapturedMessage {
  address: string;
  id: string;
  body: string;
  subject: string | null;
  /** ms since the epoch; null when the message had none. */
  creation_time: number | null;
  /** ms; null when the message had none. */
  ttl: number | null;
}

export interface CapturePeer {
  url: string;
  messages(): CapturedMessage[];
  /** Resolves once `n` messages arrived, with them all. */
  waitForMessages(n: number, timeoutMs?: number): Promise<CapturedMessage[]>;
  /** Resolves once a sender's link is attached (with `hold`: still without credit). */
  waitForLink(timeoutMs?: number): Promise<void>;
  /** With `hold`: gives every link its credit now. */
  grant(): Promise<void>;
  stop(): Promise<void>;
}

export interface CaptureOptions {
  /** Default 0: the OS picks one. A test that starts its gateway first passes a port from freePort(). */
  port?: number;
  /** Credit each link keeps outstanding; default 100. */
  credit?: number;
  /** No credit until grant(). */
  hold?: boolean;
}

export async function startCapture(options: CaptureOptions = {}): Promise<CapturePeer> {
  const args = [SCRIPT, '--port', String(options.port ?? 0), '--credit', String(options.credit ?? 100), ...(options.hold === true ? ['--hold'] : [])];
  const child = spawn(PYTHON, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const events: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  let exit: string | undefined;
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  child.stdin.on('error', () => { /* gone already */ });
  const closed = new Promise<void>((resolve) => child.once('close', (code, signal) => {
    exit = code === 3 ? `the qpid-proton module is missing for ${PYTHON} (apt-get install python3-qpid-proton)` : `exited (${code ?? signal})`;
    for (const wake of [...waiters]) wake();
    resolve();
  }));
  child.once('error', (err) => { exit = `could not start ${PYTHON}: ${err.message}`; for (const wake of [...waiters]) wake(); });
  createInterface({ input: child.stdout }).on('line', (line) => {
    events.push(JSON.parse(line) as Record<string, unknown>);
    for (const wake of [...waiters]) wake();
  });

  const waitFor = <T>(check: () => T | undefined, what: string, timeoutMs: number): Promise<T> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => { waiters.delete(wake); reject(new Error(`capture peer: timed out waiting for ${what}\n${stderr}`)); }, timeoutMs);
    const wake = (): void => {
      const value = check();
      if (value === undefined && exit === undefined) return;
      waiters.delete(wake);
      clearTimeout(timer);
      if (value !== undefined) resolve(value);
      else reject(new Error(`capture peer ${exit} while waiting for ${what}\n${stderr}`));
    };
    waiters.add(wake);
    wake();
  });

  const messages = (): CapturedMessage[] => events.filter((e) => e.event === 'message') as unknown as CapturedMessage[];
  const stop = async (): Promise<void> => {
    if (exit === undefined) {
      child.stdin.end();
      child.kill('SIGTERM');
    }
    await closed;
  };
  try {
    const listening = await waitFor(() => events.find((e) => e.event === 'listening'), 'it to listen', 10_000);
    return {
      url: `amqp://127.0.0.1:${String(listening.port)}`,
      messages,
      waitForMessages: (n, timeoutMs = 30_000) => waitFor(() => (messages().length >= n ? messages() : undefined), `${n} messages`, timeoutMs),
      waitForLink: async (timeoutMs = 30_000) => { await waitFor(() => events.find((e) => e.event === 'link'), 'a link', timeoutMs); },
      grant: async () => {
        const before = events.filter((e) => e.event === 'granted').length;
        child.stdin.write('grant\n');
        await waitFor(() => (events.filter((e) => e.event === 'granted').length > before ? true : undefined), 'the grant', 10_000);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
