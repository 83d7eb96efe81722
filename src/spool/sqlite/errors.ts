/**
 * better-sqlite3 errors enter our code here, and only here, as GatewayErrors.
 */
import { GatewayError } from '../../core/errors.js';

const DISK_FULL = new Set(['SQLITE_FULL', 'SQLITE_IOERR_WRITE', 'SQLITE_IOERR_FSYNC', 'SQLITE_IOERR_SHMSIZE', 'SQLITE_IOERR_TRUNCATE']);
const CORRUPT = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CORRUPT_VTAB', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_INDEX']);

export function isCorruption(err: unknown): boolean {
  return CORRUPT.has((err as { code?: string } | null)?.code ?? '');
}

export function translateSqliteError(err: unknown, doing: string): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = (err as { code?: string } | null)?.code ?? '';
  const message = err instanceof Error ? err.message : String(err);
  if (DISK_FULL.has(code) || /ENOSPC|disk is full|database or disk is full/i.test(message)) {
    return new GatewayError('DISK_FULL', `spool: disk full while ${doing} (${code})`, { retryable: true, cause: err });
  }
  if (CORRUPT.has(code)) {
    return new GatewayError('SPOOL_CORRUPT', `spool: database file is corrupt (${code}: ${message}) while ${doing}`, { cause: err });
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code.startsWith('SQLITE_IOERR')) {
    return new GatewayError('IO', `spool: ${message} (${code}) while ${doing}`, { retryable: true, cause: err });
  }
  return new GatewayError('IO', `spool: ${message}${code === '' ? '' : ` (${code})`} while ${doing}`, { cause: err });
}
