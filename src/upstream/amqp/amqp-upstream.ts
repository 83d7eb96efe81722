/**
 * The AMQP 1.0 connection (the only module that talks to rhea): TLS, SASL, the sender links, and
 * reconnection. rhea's own reconnect is off: it drops unsettled deliveries silently and gives up
 * after a SASL failure (FACTS.md). Here every connection attempt is a fresh rhea connection with
 * freshly read certificates (connection-options.ts); URLs are tried in turn; the waits between
 * attempts, and between attaches of a link the broker refused, are the retry policy's
 * (core/retry.ts), decided by the translated error: exponential with jitter, or the cap after a
 * refusal of credentials, certificates or permissions.
 *
 * How a connection ends is watched in connection-watch.ts: the socket, a close frame from the
 * broker, or silence. A half-open connection (the broker or the path to it died without FIN or
 * RST, common on cellular and industrial links) is found by rhea's idle timeout: we ask the broker
 * to send something at least every `idleTimeoutMs` (heartbeats at half that), and rhea gives the
 * connection up after hearing nothing for twice that, plus one second to close. The readings in
 * flight are then reported lost and sent again, with the same message ids, over the next URL.
 *
 * A reload with new certificates reconnects to the URL in use; only a failure moves on to the next.
 */
import rhea, { type Connection, type Container } from 'rhea';
import { GatewayError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { RetryPolicy, type RetryPolicyOptions } from '../../core/retry.js';
import type { DownlinkSource, UpstreamReceiver, UpstreamReceiverOptions } from '../downlink.js';
import type { RefusedAddress, Upstream, UpstreamLink, UpstreamReload, UpstreamState } from '../interface.js';
import { translateAmqpError, type UpstreamError } from './errors.js';
import { abandon } from './abandon.js';
import { connectionOptions, redact } from './connection-options.js';
import { watchConnection, type ConnectionWatch } from './connection-watch.js';
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
   * The first wait before attaching a link again after the broker refused or closed it, and the
   * shortest; the waits grow with each refusal up to the backoff's cap (core/retry.ts).
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
  /** The connection's waits between attempts (core/retry.ts). */
  readonly #retry: RetryPolicy;
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
  #tls: TlsMaterial = {};
  readonly #linkTimers = new Set<NodeJS.Timeout>();
  /** The next reconnect is a reload's: same URL, at once. */
  #reloading = false;
  /** The current connection's watch (connection-watch.ts). */
  #watch: ConnectionWatch | undefined;

  constructor(options: AmqpUpstreamOptions) {
    if (options.urls.length === 0) throw new GatewayError('CONFIG_INVALID', 'upstream: no URL');
    this.#options = options;
    this.#log = options.log;
    this.#retry = new RetryPolicy(options.backoff ?? { baseMs: 500, capMs: 30_000 });
    this.#refusals = new Refusals({ ...this.#linkRetry(), log: this.#log });
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
    // A reload cut short by stop() must not make the next start's first failure a reload's.
    this.#reloading = false;
    clearTimeout(this.#retryTimer);
    this.#watch?.dispose();
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
    // Its own waits between attaches after the broker refused or closed it, as a sender link's.
    const retry = new RetryPolicy(this.#linkRetry());
    const receiver: AmqpReceiverLink = new AmqpReceiverLink({
      ...options, log: this.#log,
      onError: (error) => this.#attachLater(receiver, error, () => !receiver.closed, retry.next(error)),
      onAttached: () => retry.reset(),
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
    this.#retry.reset();
    const connection = this.#connection;
    const watch = this.#watch;
    if (connection !== undefined && watch !== undefined) {
      // Not a failure of this URL: the reconnect stays on it (#gone).
      this.#reloading = true;
      // rhea raises no 'disconnected' for a connection closed on our side: once the broker
      // answered the close, or after 2 s without an answer, the socket goes and the reconnect starts.
      const gone = (): void => {
        clearTimeout(timer);
        abandon(connection);
        watch.gone();
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
    const o = this.#options;
    let connection: Connection;
    try {
      const { options, tls } = connectionOptions(url, {
        sasl: o.sasl, containerId: o.containerId ?? o.gatewayId, idleTimeoutMs: this.#idleTimeoutMs(),
        ...(o.tls === undefined ? {} : { tls: o.tls }), ...(o.username === undefined ? {} : { username: o.username }),
        ...(o.password === undefined ? {} : { password: o.password }),
      });
      // Only a TLS connection's material is compared on reload (an amqp:// URL reads none).
      if (url.protocol === 'amqps:') this.#tls = tls;
      this.#attempts += 1;
      log.debug({ attempt: this.#attempts }, 'upstream: connecting');
      // Throws what the socket or TLS layer refuses at once (the TLS files were checked before).
      connection = this.#container.connect(options);
    } catch (err) {
      this.#failed(translateAmqpError(err, `connecting to ${redact(url.href)}`), log);
      return;
    }
    this.#connection = connection;
    this.#watch = watchConnection(connection, {
      url: redact(url.href), log, idleTimeoutMs: this.#idleTimeoutMs(), connectTimeoutMs: o.connectTimeoutMs ?? 15_000,
      current: () => this.#connection === connection,
      onOpen: () => {
        if (this.#everConnected) this.#reconnects += 1;
        this.#everConnected = true;
        this.#attempts = 0;
        this.#retry.reset();
        log.info({ sasl: o.sasl }, 'upstream connected');
        this.#setConnected(true);
        this.#links.connected(connection);
        for (const receiver of this.#receivers) receiver.attach(connection);
      },
      onGone: (error) => this.#gone(error, url, log),
    });
  }

  /** The current connection is gone (connection-watch.ts): `error` says why, when anything did. */
  #gone(error: UpstreamError | undefined, url: URL, log: Logger): void {
    this.#connection = undefined;
    this.#watch = undefined;
    const wasConnected = this.#connected;
    this.#links.disconnected();
    for (const receiver of this.#receivers) receiver.detach();
    this.#setConnected(false);
    if (this.#stopping) return;
    if (this.#reloading) {
      this.#reloading = false;
      log.info('upstream: reconnecting to the same URL with the new certificates');
      this.#connect();
      return;
    }
    if (wasConnected && error === undefined) log.warn('upstream: connection closed; reconnecting');
    this.#failed(error ?? translateAmqpError({ code: 'ECONNRESET', message: 'connection lost' }, `upstream ${redact(url.href)}`), log);
  }

  #idleTimeoutMs(): number {
    return this.#options.idleTimeoutMs ?? UPSTREAM_DEFAULTS.idleTimeoutMs;
  }

  #failed(error: UpstreamError, log: Logger): void {
    this.#recordError(error);
    // The next URL, for failover; a single URL is simply tried again.
    this.#urlIndex = (this.#urlIndex + 1) % this.#options.urls.length;
    const delay = this.#retry.next(error);
    log.error({ code: error.code, condition: error.condition, retryInMs: delay, err: error.message },
      error.retryable ? 'upstream connection failed; retrying' : 'upstream refused us (credentials, certificates or permissions); retrying at the capped interval');
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#connect();
    }, delay);
  }

  /**
   * A link the broker refused or closed (sender or receiver): its error is recorded, and after
   * `delayMs` (the link's retry policy) it is attached again, if it is still wanted, still
   * detached, and the connection is still up.
   */
  #attachLater(link: { readonly attached: boolean; attach(connection: Connection): void }, error: UpstreamError, wanted: () => boolean,
    delayMs: number): void {
    this.#recordError(error);
    const timer = setTimeout(() => {
      this.#linkTimers.delete(timer);
      if (!this.#stopping && this.#connected && this.#connection !== undefined && wanted() && !link.attached) link.attach(this.#connection);
    }, delayMs);
    this.#linkTimers.add(timer);
  }

  /**
   * The retry policy of a link: the first wait `linkRetryMs` (5 s), and never shorter, so that a
   * refusal answered at once does not become a loop of attaches; up to the connection's cap.
   */
  #linkRetry(): RetryPolicyOptions {
    const first = this.#options.linkRetryMs ?? 5000;
    const backoff = this.#options.backoff;
    return { baseMs: first, floorMs: first, capMs: Math.max(first, backoff?.capMs ?? 30_000), ...(backoff?.random ? { random: backoff.random } : {}) };
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
