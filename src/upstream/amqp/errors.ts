/**
 * Errors from rhea, TLS and the socket enter our code here, and only here, as GatewayErrors.
 * The AMQP conditions are mapped through one table. `retryable` is what the retry policy
 * (core/retry.ts) decides by: false where someone must change something first (credentials, a
 * certificate, a permission), and those are tried again only at the capped interval.
 */
import { GatewayError, type ErrorCode } from '../../core/errors.js';

interface Mapping { code: ErrorCode; retryable: boolean }

const CONDITIONS: Record<string, Mapping> = {
  'amqp:unauthorized-access': { code: 'UPSTREAM_AUTH', retryable: false },
  'amqp:connection:forced': { code: 'UPSTREAM_CONNECTION', retryable: true },
  'amqp:connection:framing-error': { code: 'UPSTREAM_CONNECTION', retryable: true },
  'amqp:connection:redirect': { code: 'UPSTREAM_CONNECTION', retryable: true },
  'amqp:resource-limit-exceeded': { code: 'UPSTREAM_CONNECTION', retryable: true },
  'amqp:internal-error': { code: 'UPSTREAM_CONNECTION', retryable: true },
  'amqp:link:detach-forced': { code: 'UPSTREAM_CONNECTION', retryable: true },
  'amqp:link:stolen': { code: 'UPSTREAM_CONNECTION', retryable: true },
  'amqp:session:window-violation': { code: 'UPSTREAM_CONNECTION', retryable: true },
  // A queue or exchange missing at attach: it is often declared later by its consumer, and the
  // same attach then succeeds with no change on our side.
  'amqp:not-found': { code: 'UPSTREAM_REJECTED', retryable: true },
  'amqp:not-allowed': { code: 'UPSTREAM_REJECTED', retryable: false },
  'amqp:not-implemented': { code: 'UPSTREAM_REJECTED', retryable: false },
  'amqp:precondition-failed': { code: 'UPSTREAM_REJECTED', retryable: false },
  'amqp:invalid-field': { code: 'UPSTREAM_REJECTED', retryable: false },
  'amqp:decode-error': { code: 'UPSTREAM_REJECTED', retryable: false },
  'amqp:link:message-size-exceeded': { code: 'UPSTREAM_REJECTED', retryable: false },
};

const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND',
  'EAI_AGAIN', 'EPIPE', 'ECONNABORTED']);
const TLS_PATTERN = /CERT|TLS|SSL|SIGNATURE|ALTNAME|EPROTO|ISSUER|VERIFY/i;
const CLOCK_CODES = new Set(['CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED']);
const TLS_ALERT = /alert|certificate|handshake|wrong version number/i;

/** An upstream error, with the AMQP condition when there is one. */
export class UpstreamError extends GatewayError {
  readonly condition: string | undefined;

  constructor(code: ErrorCode, message: string, options: { retryable: boolean; condition?: string; cause?: unknown }) {
    super(code, message, options);
    this.name = 'UpstreamError';
    this.condition = options.condition;
  }
}

export function translateAmqpError(err: unknown, doing: string): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const e = (err ?? {}) as { condition?: string; description?: string; code?: string; message?: string; value?: unknown };
  if (typeof e.condition === 'string') {
    const mapping = CONDITIONS[e.condition] ?? { code: 'UPSTREAM_CONNECTION', retryable: true };
    const description = e.description ?? e.message ?? '';
    return new UpstreamError(mapping.code, `${doing}: ${e.condition}${description === '' ? '' : ` (${description})`}`,
      { retryable: mapping.retryable, condition: e.condition, cause: err });
  }
  const code = typeof e.code === 'string' ? e.code : '';
  const message = e.message ?? String(err);
  if (SOCKET_CODES.has(code)) {
    return new UpstreamError('UPSTREAM_CONNECTION', `${doing}: ${code} ${message}`, { retryable: true, cause: err });
  }
  if (TLS_PATTERN.test(code) || TLS_ALERT.test(message)) {
    // Certificates are checked against this machine's clock: a Pi without a real-time clock that
    // booted in 1970 sees every certificate as not yet valid until NTP sets the time.
    const clock = CLOCK_CODES.has(code) ? ` (is this machine's clock right? ${new Date().toISOString()})` : '';
    return new UpstreamError('UPSTREAM_TLS', `${doing}: TLS failed: ${code === '' ? '' : `${code} `}${message}${clock}`, { retryable: false, cause: err });
  }
  return new UpstreamError('UPSTREAM_CONNECTION', `${doing}: ${message}`, { retryable: true, cause: err });
}
