/**
 * Readings into the spool, in order, one batch at a time: what the adapters that acknowledge
 * nothing to their devices share (serial lines, Modbus polls; MQTT appends per publish, for its
 * PUBACKs). The caller owns the queue and decides when to call (and what to hold back meanwhile).
 *
 * Rules: a batch is at most `batch.limit` readings; a batch the spool says can never fit
 * (PAYLOAD_TOO_LARGE) lowers the limit for good and is tried again smaller; a retryable failure
 * is tried again after `retryMs` (the readings stay first in line); anything else drops the batch,
 * reported to `failed`. When `signal` aborts (a stop that gave up), the batch in hand goes back to
 * the front of the queue and the call returns: the caller counts what is left.
 */
import type { RoutedReading } from '../core/envelope.js';
import { isGatewayError, type GatewayError } from '../core/errors.js';
import type { Spool } from '../spool/interface.js';

/** Readings per spool.append by default: a burst is committed in a few transactions, never one huge one. */
export const MAX_BATCH = 512;

export interface AppendInOrder {
  spool: Pick<Spool, 'append'>;
  signal: AbortSignal;
  /** Readings per append; lowered when the spool says a batch can never fit. */
  batch: { limit: number };
  /** A batch is committed. */
  stored: (batch: readonly RoutedReading[]) => void;
  /** A retryable failure: the batch is tried again after `retryMs`. */
  retrying: (err: GatewayError) => void;
  /** A batch that cannot be stored, and why. */
  failed: (batch: readonly RoutedReading[], err: unknown) => void;
  /** After each batch is over (stored, failed, or split). */
  settled?: () => void;
  /** Default 200 ms. */
  retryMs?: number;
}

/** Appends what `queue` holds (taking it from the front), until it is empty or `signal` aborts. */
export async function appendInOrder(queue: RoutedReading[], options: AppendInOrder): Promise<void> {
  const { spool, signal, batch: size } = options;
  while (queue.length > 0 && !signal.aborted) {
    const batch = queue.splice(0, size.limit);
    for (;;) {
      try {
        await spool.append(batch, { signal });
        options.stored(batch);
        break;
      } catch (err) {
        if (signal.aborted) {
          queue.unshift(...batch);
          return;
        }
        if (isGatewayError(err) && err.code === 'PAYLOAD_TOO_LARGE' && batch.length > 1) {
          size.limit = Math.max(1, Math.floor(batch.length / 2));
          queue.unshift(...batch);
          break;
        }
        if (isGatewayError(err) && err.retryable) {
          options.retrying(err);
          await sleep(options.retryMs ?? 200, signal);
          continue;
        }
        options.failed(batch, err);
        break;
      }
    }
    options.settled?.();
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
