/**
 * systemd's notify protocol (sd_notify(3)) for `Type=notify`: READY=1 once the gateway runs,
 * WATCHDOG=1 every half `WatchdogSec` while the event loop turns, STOPPING=1 when it stops.
 *
 * Error rules
 * - Without NOTIFY_SOCKET (not started by systemd, or not `Type=notify`) this does nothing.
 * - Nothing here stops the gateway: a socket that cannot be used is logged as an error (systemd
 *   will then time the start out, and the log says why), a failed send is logged once until a
 *   send works again. A reading never waits for systemd.
 * - Node has no unix datagram sockets; the optional native package unix-dgram provides them.
 *   When it is not installed (a box without a compiler), the error names the fix.
 *
 * The watchdog pings come from a timer on the event loop, so a loop that is blocked (a hung
 * commit, an endless loop) sends none, and systemd restarts the service after `WatchdogSec`.
 */
import type { Logger } from '../core/logger.js';

interface DatagramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error & { code?: number }) => void): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
  close(): void;
}

export interface SdNotifyOptions {
  /** NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID as systemd set them. */
  env: Readonly<Record<string, string | undefined>>;
  pid: number;
  log: Logger;
  /** Opens a unix datagram socket; unix-dgram by default. */
  openSocket?: () => Promise<DatagramSocket>;
}

/** sun_path holds 108 bytes with the terminating NUL. */
const MAX_SOCKET_PATH = 107;

async function openUnixDgram(): Promise<DatagramSocket> {
  const mod = await import('unix-dgram');
  return mod.createSocket('unix_dgram');
}

export class SdNotify {
  readonly #options: SdNotifyOptions;
  #socket: DatagramSocket | undefined;
  #path = '';
  #watchdog: NodeJS.Timeout | undefined;
  #failing = false;

  constructor(options: SdNotifyOptions) {
    this.#options = options;
  }

  /** The watchdog interval in ms (half of WATCHDOG_USEC), if systemd asked this process for pings. */
  watchdogIntervalMs(): number | undefined {
    const { env, pid } = this.#options;
    if (env.WATCHDOG_USEC === undefined) return undefined;
    // WATCHDOG_PID names the process systemd watches; a child that inherited the variables must stay quiet.
    if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return undefined;
    const usec = Number(env.WATCHDOG_USEC);
    return Number.isFinite(usec) && usec > 0 ? Math.max(1, Math.floor(usec / 2000)) : undefined;
  }

  async start(): Promise<void> {
    const { env, log } = this.#options;
    const path = env.NOTIFY_SOCKET;
    if (path === undefined || path === '') return;
    if (path.startsWith('@') || path.length > MAX_SOCKET_PATH) {
      log.error({ notifySocket: path }, 'systemd notify: only socket paths up to 107 bytes are supported, not abstract sockets; systemd will not see the gateway as started');
      return;
    }
    try {
      this.#socket = await (this.#options.openSocket ?? openUnixDgram)();
    } catch (err) {
      log.error({ err: (err as Error).message, notifySocket: path },
        'systemd notify: cannot open a unix datagram socket (is the optional package unix-dgram installed? it needs make, g++ and python3 to build: run scripts/install.sh again); systemd will not see the gateway as started');
      return;
    }
    this.#socket.on('error', (err) => log.error({ err: err.message }, 'systemd notify: socket error'));
    this.#path = path;
    this.#send('READY=1');
    const interval = this.watchdogIntervalMs();
    if (interval !== undefined) {
      this.#watchdog = setInterval(() => this.#send('WATCHDOG=1'), interval);
      this.#watchdog.unref();
    } else if (env.WATCHDOG_USEC !== undefined && env.WATCHDOG_PID === undefined) {
      log.warn({ watchdogUsec: env.WATCHDOG_USEC }, 'systemd notify: WATCHDOG_USEC is not a positive number; no watchdog pings');
    }
    log.info({ notifySocket: path, watchdogMs: interval ?? null }, 'systemd notified: ready');
  }

  async stop(): Promise<void> {
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
    const socket = this.#socket;
    if (socket === undefined) return;
    this.#send('STOPPING=1');
    this.#socket = undefined;
    socket.close();
  }

  #send(state: string): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    const buf = Buffer.from(state);
    socket.send(buf, 0, buf.length, this.#path, (err) => {
      if (err === undefined) {
        this.#failing = false;
        return;
      }
      // One line per run of failures: the watchdog would otherwise repeat it every few seconds.
      if (!this.#failing) this.#options.log.error({ err: err.message, state }, 'systemd notify: send failed');
      this.#failing = true;
    });
  }
}
