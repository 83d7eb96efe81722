/**
 * The one error type that crosses module boundaries.
 *
 * Errors from libraries (rhea, better-sqlite3, aedes, serialport, fs) are translated into a
 * GatewayError once, where they enter our code, so callers decide on `retryable` alone and never
 * inspect library-specific shapes.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNREADABLE'
  | 'USAGE'
  | 'SPOOL_FULL'
  | 'SPOOL_CORRUPT'
  | 'SPOOL_IN_USE'
  /** The spool's storage failed (an I/O error, a failed fsync): the spool stopped; restart the process. */
  | 'STORAGE_FAILED'
  | 'DISK_FULL'
  | 'IO'
  | 'UPSTREAM_AUTH'
  | 'UPSTREAM_TLS'
  | 'UPSTREAM_CONNECTION'
  | 'UPSTREAM_REJECTED'
  | 'PAYLOAD_TOO_LARGE'
  | 'BAD_INPUT'
  | 'INTERNAL';

export class GatewayError extends Error {
  readonly code: ErrorCode;
  /** True when the same operation may succeed later without any change by a person. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}

/** A printable message for any thrown value, without stack noise. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
