/**
 * The life of one rhea connection, from the attempt to its end, reduced to two calls: `onOpen`
 * once it is open, and `onGone` once, with the reason, when it is gone for whatever cause. rhea
 * says "gone" in several ways, and none of them covers every case:
 *
 * - 'disconnected': the socket ended or failed, or a refused SASL login; never for a connection
 *   rhea closed itself.
 * - a close frame from the broker (RabbitMQ 4 closes with amqp:internal-error when it stops or an
 *   operator closes the connection): rhea answers it and ends the socket, but raises
 *   'disconnected' only for a connection it had not closed itself, so without this the gateway
 *   would stay "connected" to nothing for ever. (rhea raises 'connection_close' also for a
 *   refused SASL login, which ends in 'disconnected' as usual: only a close frame fills
 *   remote.close, an rhea internal.)
 * - silence: a half-open connection (the broker or the path to it died without FIN or RST) is
 *   found by rhea's idle timeout: rhea gives the connection up after hearing nothing for twice
 *   `idle_time_out`, and then says no more than any close would; so its `idle` is wrapped to
 *   know (an rhea internal).
 * - an attempt not open after `connectTimeoutMs` is abandoned.
 *
 * The reason given to `onGone` is that of the silence when rhea gave up a silent connection, else
 * the first error seen (a connection error, a close frame's error, a socket error), else
 * undefined (a close without a reason, or our own close answered).
 * Once gone, the connection's listeners are replaced by ones that ignore what rhea still raises.
 */
import type { Connection, EventContext } from 'rhea';
import type { Logger } from '../../core/logger.js';
import { abandon } from './abandon.js';
import { translateAmqpError, type UpstreamError } from './errors.js';

export interface ConnectionWatchOptions {
  /** The URL, redacted, for errors. */
  url: string;
  log: Logger;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  /** Still the upstream's current connection: when not (stop() let it go), it being gone is no news. */
  current: () => boolean;
  onOpen: () => void;
  onGone: (error: UpstreamError | undefined) => void;
}

export interface ConnectionWatch {
  /** The connection is gone from our side (a reload closed it): as if rhea said so. */
  gone(): void;
  /** Stops the connect timer (stop()). */
  dispose(): void;
}

export function watchConnection(connection: Connection, o: ConnectionWatchOptions): ConnectionWatch {
  let failure: UpstreamError | undefined;
  let silent = false;
  const internals = connection as unknown as { idle: () => void };
  const idle = internals.idle.bind(connection);
  internals.idle = () => {
    silent = true;
    idle();
  };
  const connectTimer = setTimeout(() => {
    failure = translateAmqpError({ code: 'ETIMEDOUT', message: `not open after ${o.connectTimeoutMs} ms` }, 'connecting');
    abandon(connection);
  }, o.connectTimeoutMs);

  const lost = (ctxError: unknown): void => {
    clearTimeout(connectTimer);
    if (!o.current()) return;
    if (silent) {
      failure = translateAmqpError({ code: 'ETIMEDOUT', message: `nothing heard for ${2 * o.idleTimeoutMs} ms (upstream.idleTimeout ${o.idleTimeoutMs} ms): a half-open connection` },
        `upstream ${o.url}`);
      o.log.warn({ code: failure.code, idleTimeoutMs: o.idleTimeoutMs }, 'upstream: nothing heard from the broker for twice upstream.idleTimeout; the connection is dead, reconnecting');
    }
    connection.removeAllListeners();
    connection.on('error', () => {});
    // A socket that ends or fails later is no news either (rhea would print a warning for it).
    connection.on('disconnected', () => {});
    // RabbitMQ 4 answers our answer to its close with another close: rhea calls that a protocol
    // error, which is no news once the connection is given up.
    connection.on('protocol_error', () => {});
    o.onGone(failure ?? (ctxError === undefined ? undefined : translateAmqpError(ctxError, `upstream ${o.url}`)));
  };
  const closedByBroker = (): void => {
    if (!o.current()) return;
    lost(undefined);
    // rhea writes its answering close on the next tick and then ends the socket; a broker that
    // keeps its end open is dropped a while later (rhea's own timers are cleared then too).
    setTimeout(() => abandon(connection), 2000).unref();
  };

  connection.on('connection_open', () => {
    clearTimeout(connectTimer);
    o.onOpen();
  });
  connection.on('connection_error', (ctx: EventContext) => {
    failure = translateAmqpError(ctx.connection.error ?? ctx.error, `upstream ${o.url}`);
  });
  connection.on('connection_close', (ctx: EventContext) => {
    const error = ctx.connection.error;
    if (error !== undefined && failure === undefined) failure = translateAmqpError(error, `upstream ${o.url} closed the connection`);
    // Our own close answered (stop, reload) leaves the connection closed on both sides; a close
    // the broker started finds ours still open (see the header).
    const remote = (connection as unknown as { remote?: { close?: unknown } }).remote;
    if (remote?.close !== undefined && !connection.is_closed()) closedByBroker();
  });
  connection.on('error', (err: unknown) => {
    failure ??= translateAmqpError(err, `upstream ${o.url}`);
  });
  connection.on('disconnected', (ctx: EventContext) => lost(ctx.error));
  return { gone: () => lost(undefined), dispose: () => clearTimeout(connectTimer) };
}
