/**
 * better-sqlite3 and file-system errors enter our code here, and only here, as GatewayErrors.
 *
 * - DISK_FULL (retryable): SQLITE_FULL or ENOSPC, or any other I/O error while the file system
 *   has no room left (SQLite reports a -shm that cannot grow as SQLITE_IOERR_SHMSIZE, say).
 *   The spool holds devices back and tries again.
 * - STORAGE_FAILED (not retryable): any other SQLITE_IOERR_*, and every failed fsync. The medium
 *   is failing (a dying SD card), and after a failed fsync a later fsync proves nothing about the
 *   pages of the earlier one (PostgreSQL's "fsyncgate"). Retrying would acknowledge readings that
 *   are not safe, so the spool stops and the process exits; SQLite recovers the WAL on restart.
 * - SPOOL_CORRUPT (not retryable): the database file is damaged.
 * - IO (retryable): the file is busy or locked (another process holds it, e.g. `uplink dlq`).
 */
import { GatewayError } from '../../core/errors.js';
import { freeBytes } from './free-space.js';

const CORRUPT = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CORRUPT_VTAB', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_INDEX']);
/** Below this many free bytes an I/O error is taken for a full disk. */
const NEARLY_FULL = 1024 * 1024;

export function isCorruption(err: unknown): boolean {
  return CORRUPT.has(codeOf(err));
}

/** True for the errors after which the spool must stop (see STORAGE_FAILED above). */
export function isFatal(error: GatewayError): boolean {
  return error.code === 'STORAGE_FAILED' || error.code === 'SPOOL_CORRUPT';
}

/** An error of SQLite while `doing`; `dir` is where the spool lives (to tell a full disk from a failing one). */
export function translateSqliteError(err: unknown, doing: string, dir?: string): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = codeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || (code.startsWith('SQLITE_IOERR') && dir !== undefined && freeBytes(dir) < NEARLY_FULL)) {
    return new GatewayError('DISK_FULL', `spool: disk full while ${doing} (${code})`, { retryable: true, cause: err });
  }
  if (CORRUPT.has(code)) {
    return new GatewayError('SPOOL_CORRUPT', `spool: database file is corrupt (${code}: ${message}) while ${doing}`, { cause: err });
  }
  if (code.startsWith('SQLITE_IOERR')) {
    return new GatewayError('STORAGE_FAILED', `spool: I/O error while ${doing} (${code}: ${message})`, { cause: err });
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new GatewayError('IO', `spool: ${message} (${code}) while ${doing}`, { retryable: true, cause: err });
  }
  return new GatewayError('IO', `spool: ${message}${code === '' ? '' : ` (${code})`} while ${doing}`, { cause: err });
}

/** A failed fsync: never retried, whatever its errno (see STORAGE_FAILED above). */
export function translateSyncError(err: unknown, file: string): GatewayError {
  const code = codeOf(err);
  return new GatewayError('STORAGE_FAILED', `spool: fdatasync of ${file} failed (${code || 'error'}): ` +
    'what was written before it may not be on disk', { cause: err });
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}
