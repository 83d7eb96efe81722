import type { Logger } from '../../core/logger.js';

/**
 * Calls a listener of our callers (onState, onCredit, an outcome, a receiver's onChange) from
 * inside rhea's event handlers. rhea runs those handlers within its read of a frame and catches
 * whatever they throw as a fault of the connection: it drops the socket, and with it every
 * unsettled delivery. A bug in one listener must not cost the connection, so it is logged with
 * what it concerns and the other listeners still run.
 */
export function guarded(log: Logger, context: Record<string, unknown>, listener: () => void): void {
  try {
    listener();
  } catch (err) {
    log.error({ ...context, err }, 'upstream: a listener threw; ignored, the connection carries on');
  }
}
