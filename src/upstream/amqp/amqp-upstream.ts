/**
 * The AMQP 1.0 connection (the only module that talks to rhea): TLS, SASL, the sender links, and
 * reconnection. rhea's own reconnect is off: it drops unsettled deliveries silently and gives up
 * after a SASL failure (FACTS.md). Here every connection attempt is a fresh rhea connection with
 * freshly read certificates; URLs are tried in turn; the wait between attempts is exponential
 * with full jitter, and the cap after auth or TLS failures.
 *
 * A half-open connection (the broker or the path to it died without FIN or RST, common on
 * cellular and industrial links) is found by rhea's idle timeout: we ask the broker to send
 * something at least every `idleTimeoutMs` (heartbeats at half that), and rhea gives the
 * connection up after hearing nothing for twice that, plus one second to close. The readings in
 * flight are then reported lost and sent again, with the same message ids, over the next URL.
 *
 * A reload with new certificates reconnects to the URL in use; only a failure moves on to the next.
 */
import rhea, { type Connection, type ConnectionOptions, type Container, type EventContext } from 'rhea';
import { Backoff } from '../../core/backoff.js';
import { GatewayError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { DownlinkSource, UpstreamReceiver, UpstreamReceiverOptions } from '../downlink.js';
import type { RefusedAddress, Upstream, UpstreamLink, UpstreamReload, UpstreamState } from '../interface.js';
import { translateAmqpError, type UpstreamError } from './errors.js';
import { abandon } from './abandon.js';
import { guarded } from './guard.js';
import { SenderLinks } from './links.js';
import { Refusals } from './refusals.js';
import { AmqpReceiverLink } from './receiver-link.js';
import { AmqpSenderLink, type DeliveryMode } from './sender-link.js';
import { readTlsFiles, sameMaterial, type TlsMaterial, type TlsPaths } from './tls-files.js';

export interface AmqpUpstreamOptions {
  /** amqp:// or amqps:// URLs, tried in turn. */
  urls: string[];
  sasl: 'external' | 'plain' | 'anonymous';
  tls?: TlsPaths & { servername?: string };
  username?: string;
  password?: string;
  gatewayId: string;
  /**
   * The AMQP container id sent in the open frame; gatewayId when unset. Some brokers refuse a
   * second connection with a container id already connected: give each connection of one host
   * its own (the Node-RED config nodes do).
   */
  containerId?: string;
  log: Logger;
  backoff?: { baseMs: number; capMs: number; random?: () => number };
  /** A connection attempt that is not open after this long is abandoned. */
  connectTimeoutMs?: number;
  /**
   * Wait before attaching a link again after the broker refused or closed it; for a sender link
   * the first wait, growing with each refusal up to the backoff's cap (refusals.ts).
   */
  linkRetryMs?: number;
  /** rhea's idle_time_out: the broker must send something this often; silent for twice this, the connection is dead. */
  idleTimeoutMs?: number;
  /** Sender links open at once at most (see links.ts). */
  maxLinks?: number;
  /** A sender link idle this long is closed. */
  linkIdleTimeoutMs?: number;
}

/** The defaults, also those of the config schema (upstream.idleTimeout, maxLinks, linkIdleTimeout). */
export const UPSTREAM_DEFAULTS = { idleTimeoutMs: 20_000, maxLinks: 64, linkIdleTimeoutMs: 300_000 } as const;


export class AmqpUpstream implements Upstream, DownlinkSource {
  readonly #options: AmqpUpstreamOptions;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #links: SenderLinks;
  readonly #refusals: Refusals;
  readonly #receivers = new Set<AmqpReceiverLink>();
  readonly #listeners = new Set<(state: UpstreamState) => void>();
  #container: Container | undefined;
  #connection: Connection | undefined;
  #connected = false;
  #stopping = false;
  #urlIndex = 0;
  #reconnects = 0;
  #attempts = 0;
  #everConnected = false;
  #lastError: UpstreamState['lastError'];
  #retryTimer: NodeJS.Timeout | undefined;
  #connectTimer: NodeJS.Timeout | undefined;
  #tls: TlsMaterial = {};
  readonly #linkTimers = new Set<NodeJS.Timeout>();
  /** The next reconnect is a reload's: same URL, at once. */
  #reloading = false;
  /** Tears the current connection down and reconnects (set per connection by #connect). */
  #lost: ((error: unknown) => void) | undefined;

  constructor(options: AmqpUpstreamOptions) {
    if (options.urls.length === 0) throw new GatewayError('CONFIG_INVALID', 'upstream: no URL');
    this.#options = options;
    this.#log = options.log;
    this.#backoff = new Backoff(options.backoff ?? { baseMs: 500, capMs: 30_000 });
    const linkRetryMs = this.#linkRetryMs();
    this.#refusals = new Refusals({
      baseMs: linkRetryMs, capMs: Math.max(linkRetryMs, options.backoff?.capMs ?? 30_000), log: this.#log,
      ...(options.backoff?.random ? { random: options.backoff.random } : {}),
    });
    this.#links = new SenderLinks({
      maxLinks: options.maxLinks ?? UPSTREAM_DEFAULTS.maxLinks,
      idleTimeoutMs: options.linkIdleTimeoutMs ?? UPSTREAM_DEFAULTS.linkIdleTimeoutMs,
      log: this.#log,
      create: (address, mode, onChange) => {
        const link: AmqpSenderLink = new AmqpSenderLink({
          address, mode, gatewayId: options.gatewayId, log: this.#log, onChange,
          onError: (error) => this.#attachLater(link, error, () => this.#links.placed(link), this.#refusals.refused(address, error)),
          onTaken: () => {
            if (!this.#refusals.has(address)) return;
            this.#refusals.attached(address);
            this.#emit();
          },
        });
        return link;
      },
    });
  }

  async start(): Promise<void> {
    this.#stopping = false;
    this.#container = rhea.create_container({ id: this.#options.containerId ?? this.#options.gatewayId });
    // rhea throws unhandled 'error' events; every error is handled on the connection instead.
    this.#container.on('error', (err: unknown) => this.#recordError(translateAmqpError(err, 'upstream')));
    this.#links.start();
    this.#connect();
  }

  async stop(): Promise<void> {
    // Outcomes the consumers already decided are written before the connection goes.
    await Promise.all([...this.#receivers].map((receiver) => receiver.flush()));
    this.#stopping = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#connectTimer);
    for (const timer of this.#linkTimers) clearTimeout(timer);
    this.#linkTimers.clear();
    const connection = this.#connection;
    this.#connection = undefined;
    this.#links.stop();
    for (const receiver of this.#receivers) receiver.detach();
    if (connection !== undefined && connection.is_open()) {
      // Wait for the broker to close its end too; rhea clears its timers only then.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000);
        // The broker's answer to our close ('disconnected' does not come for a close of ours).
        connection.once('connection_close', () => { clearTimeout(timer); resolve(); });
        connection.once('disconnected', () => { clearTimeout(timer); resolve(); });
        connection.close();
      });
    }
    if (connection !== undefined) abandon(connection);
    this.#setConnected(false);
  }

  /** See Upstream.link; the cap and the idle links are SenderLinks' (links.ts). */
  link(address: string, mode: DeliveryMode): UpstreamLink {
    return this.#links.get(address, mode);
  }

  /** Sender links holding a place (open or to be attached), being closed, and waiting for a place. */
  links(): { open: number; closing: number; waiting: number } {
    return this.#links.counts();
  }

  /** A receiver for `options.address` (downlink), attached now if connected and after every reconnect. */
  receiver(options: UpstreamReceiverOptions): UpstreamReceiver {
    const receiver: AmqpReceiverLink = new AmqpReceiverLink({
      ...options, log: this.#log,
      onError: (error) => this.#attachLater(receiver, error, () => !receiver.closed),
      onClose: () => this.#receivers.delete(receiver),
    });
    this.#receivers.add(receiver);
    if (this.#connected && this.#connection !== undefined) receiver.attach(this.#connection);
    return receiver;
  }

  state(): UpstreamState {
    return {
      connected: this.#connected,
      url: redact(this.#options.urls[this.#urlIndex]!),
      reconnects: this.#reconnects,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
      ...(this.#refusals.size === 0 ? {} : { refused: this.#refused() }),
    };
  }

  /** The refused addresses still asked for (a link holds a place or waits for one); the others are forgotten. */
  #refused(): RefusedAddress[] {
    const refused = this.#refusals.list();
    for (const { address } of refused) if (!this.#links.knows(address)) this.#refusals.forget(address);
    return refused.filter(({ address }) => this.#refusals.has(address));
  }

  onState(listener: (state: UpstreamState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Credit summed over the links: what the broker lets us send right now. */
  credit(): number {
    return this.#links.credit();
  }

  /** See Upstream.reload: `changed`, `unchanged` or `unreadable`, as the files on disk are now. */
  async reload(): Promise<UpstreamReload> {
    let fresh: TlsMaterial;
    try {
      fresh = readTlsFiles(this.#options.tls);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'upstream: cannot re-read the certificates; keeping the current connection');
      return 'unreadable';
    }
    if (sameMaterial(fresh, this.#tls)) {
      this.#log.info('upstream: certificates unchanged');
      return 'unchanged';
    }
    this.#log.info('upstream: certificates changed; reconnecting with them');
    this.#backoff.reset();
    const connection = this.#connection;
    const lost = this.#lost;
    if (connection !== undefined && lost !== undefined) {
      // Not a failure of this URL: the reconnect stays on it (see `lost` in #connect).
      this.#reloading = true;
      // rhea raises no 'disconnected' for a connection closed on our side: once the broker
      // answered the close, or after 2 s without an answer, the socket goes and the reconnect starts.
      const gone = (): void => {
        clearTimeout(timer);
        abandon(connection);
        lost(undefined);
      };
      const timer = setTimeout(gone, 2000);
      connection.once('connection_close', gone);
      connection.close();
    } else {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      this.#connect();
    }
    return 'changed';
  }

  #connect(): void {
    if (this.#stopping || this.#container === undefined) return;
    const url = new URL(this.#options.urls[this.#urlIndex]!);
    const log = this.#log.child({ url: redact(url.href) });
    let options: ConnectionOptions;
    try {
      options = this.#connectionOptions(url);
    } catch (err) {
      this.#failed(translateAmqpError(err, `connecting to ${redact(url.href)}`), log);
      return;
    }
    this.#attempts += 1;
    log.debug({ attempt: this.#attempts }, 'upstream: connecting');
    let connection: Connection;
    try {
      connection = this.#container.connect(options);
    } catch (err) {
      // Whatever the socket or TLS layer throws at once (the TLS files were checked before).
      this.#failed(translateAmqpError(err, `connecting to ${redact(url.href)}`), log);
      return;
    }
    this.#connection = connection;
    let failure: UpstreamError | undefined;
    // rhea internal: Connection.idle runs when nothing came for 2 x idle_time_out; it closes the
    // connection and drops the socket a second later, and then says no more than any close would.
    let silent = false;
    const internals = connection as unknown as { idle: () => void };
    const idle = internals.idle.bind(connection);
    internals.idle = () => {
      silent = true;
      idle();
    };
    this.#connectTimer = setTimeout(() => {
      failure = translateAmqpError({ code: 'ETIMEDOUT', message: `not open after ${this.#options.connectTimeoutMs ?? 15_000} ms` }, 'connecting');
      abandon(connection);
    }, this.#options.connectTimeoutMs ?? 15_000);

    connection.on('connection_open', () => {
      clearTimeout(this.#connectTimer);
      if (this.#everConnected) this.#reconnects += 1;
      this.#everConnected = true;
      this.#attempts = 0;
      this.#backoff.reset();
      log.info({ sasl: this.#options.sasl }, 'upstream connected');
      this.#setConnected(true);
      this.#links.connected(connection);
      for (const receiver of this.#receivers) receiver.attach(connection);
    });
    connection.on('connection_error', (ctx: EventContext) => {
      failure = translateAmqpError(ctx.connection.error ?? ctx.error, `upstream ${redact(url.href)}`);
    });
    connection.on('connection_close', (ctx: EventContext) => {
      const error = ctx.connection.error;
      if (error !== undefined && failure === undefined) failure = translateAmqpError(error, `upstream ${redact(url.href)} closed the connection`);
      // Our own close answered (stop, reload) leaves the connection closed on both sides; a close
      // the broker started finds ours still open. rhea answers that close and ends the socket, but
      // raises 'disconnected' only for a connection it had not closed itself (RabbitMQ 4 closes
      // with amqp:internal-error when it stops or an operator closes the connection): without
      // this, the gateway would stay "connected" to nothing for ever.
      // (rhea raises connection_close also for a failure of its own, a refused SASL login: that
      // one ends in 'disconnected' as usual. Only a close frame fills remote.close, an rhea internal.)
      const remote = (connection as unknown as { remote?: { close?: unknown } }).remote;
      if (remote?.close !== undefined && !connection.is_closed()) closedByBroker();
    });
    connection.on('error', (err: unknown) => {
      failure ??= translateAmqpError(err, `upstream ${redact(url.href)}`);
    });
    // The connection is gone (the socket, or our own close answered): rhea raises 'disconnected'
    // only for a connection it did not close itself, so a reload calls this too.
    const lost = (ctxError: unknown): void => {
      clearTimeout(this.#connectTimer);
      if (this.#connection !== connection) return;
      this.#connection = undefined;
      this.#lost = undefined;
      const wasConnected = this.#connected;
      const idleTimeoutMs = this.#idleTimeoutMs();
      if (silent) {
        failure = translateAmqpError({ code: 'ETIMEDOUT', message: `nothing heard for ${2 * idleTimeoutMs} ms (upstream.idleTimeout ${idleTimeoutMs} ms): a half-open connection` },
          `upstream ${redact(url.href)}`);
        log.warn({ code: failure.code, idleTimeoutMs }, 'upstream: nothing heard from the broker for twice upstream.idleTimeout; the connection is dead, reconnecting');
      }
      this.#links.disconnected();
      for (const receiver of this.#receivers) receiver.detach();
      this.#setConnected(false);
      connection.removeAllListeners();
      connection.on('error', () => {});
      // A socket that ends or fails later is no news either (rhea would print a warning for it).
      connection.on('disconnected', () => {});
      // RabbitMQ 4 answers our answer to its close with another close: rhea calls that a protocol
      // error, which is no news once the connection is given up.
      connection.on('protocol_error', () => {});
      if (this.#stopping) return;
      if (this.#reloading) {
        this.#reloading = false;
        log.info('upstream: reconnecting to the same URL with the new certificates');
        this.#connect();
        return;
      }
      const error = failure ?? translateAmqpError(ctxError ?? { code: 'ECONNRESET', message: 'connection lost' }, `upstream ${redact(url.href)}`);
      if (wasConnected && failure === undefined && ctxError === undefined) {
        log.warn('upstream: connection closed; reconnecting');
      }
      this.#failed(error, log);
    };
    const closedByBroker = (): void => {
      if (this.#connection !== connection) return;
      lost(undefined);
      // rhea writes its answering close on the next tick and then ends the socket; a broker that
      // keeps its end open is dropped a while later (rhea's own timers are cleared then too).
      setTimeout(() => abandon(connection), 2000).unref();
    };
    this.#lost = lost;
    connection.on('disconnected', (ctx: EventContext) => lost(ctx.error));
  }

  #connectionOptions(url: URL): ConnectionOptions {
    const secure = url.protocol === 'amqps:';
    const o = this.#options;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = url.port === '' ? (secure ? 5671 : 5672) : Number(url.port);
    const base: Record<string, unknown> = {
      host, port, hostname: host, container_id: o.containerId ?? o.gatewayId, reconnect: false, idle_time_out: this.#idleTimeoutMs(),
    };
    if (secure) {
      this.#tls = readTlsFiles(o.tls);
      Object.assign(base, {
        transport: 'tls', servername: o.tls?.servername ?? host, minVersion: 'TLSv1.2', rejectUnauthorized: true,
        ...(this.#tls.ca ? { ca: this.#tls.ca } : {}), ...(this.#tls.cert ? { cert: this.#tls.cert } : {}), ...(this.#tls.key ? { key: this.#tls.key } : {}),
        ...(o.tls?.passphrase === undefined ? {} : { passphrase: o.tls.passphrase }),
      });
    } else {
      base.transport = 'tcp';
    }
    if (o.sasl === 'external') base.enable_sasl_external = true;
    else if (o.sasl === 'plain') Object.assign(base, { username: o.username, password: o.password });
    // ANONYMOUS: rhea offers it when given a user name without a password.
    else base.username = 'anonymous';
    return base as unknown as ConnectionOptions;
  }

  #idleTimeoutMs(): number {
    return this.#options.idleTimeoutMs ?? UPSTREAM_DEFAULTS.idleTimeoutMs;
  }

  #failed(error: UpstreamError, log: Logger): void {
    this.#recordError(error);
    // The next URL, for failover; a single URL is simply tried again.
    this.#urlIndex = (this.#urlIndex + 1) % this.#options.urls.length;
    const delay = error.slow ? this.#backoff.capped() : this.#backoff.next();
    log.error({ code: error.code, condition: error.condition, retryInMs: delay, err: error.message },
      error.slow ? 'upstream refused us (credentials or certificates); retrying at the capped interval' : 'upstream connection failed; retrying');
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#connect();
    }, delay);
  }

  /**
   * A link the broker closed (sender or receiver): its error is recorded, and a while later it is
   * attached again, if it is still wanted, still detached, and the connection is still up.
   */
  #attachLater(link: { readonly attached: boolean; attach(connection: Connection): void }, error: UpstreamError, wanted: () => boolean,
    delayMs = this.#linkRetryMs()): void {
    this.#recordError(error);
    const timer = setTimeout(() => {
      this.#linkTimers.delete(timer);
      if (!this.#stopping && this.#connected && this.#connection !== undefined && wanted() && !link.attached) link.attach(this.#connection);
    }, delayMs);
    this.#linkTimers.add(timer);
  }

  #linkRetryMs(): number {
    return this.#options.linkRetryMs ?? 5000;
  }

  #recordError(error: UpstreamError): void {
    this.#lastError = { code: error.code, message: error.message, ...(error.condition ? { condition: error.condition } : {}), at: Date.now() };
    this.#emit();
  }

  #setConnected(connected: boolean): void {
    if (this.#connected === connected) return;
    this.#connected = connected;
    this.#emit();
  }

  #emit(): void {
    const state = this.state();
    for (const listener of [...this.#listeners]) guarded(this.#log, { url: state.url, connected: state.connected }, () => listener(state));
  }
}

/** A URL for logs: never with credentials. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.href.replace(/\/$/, '');
  } catch {
    return '(invalid url)';
  }
}
