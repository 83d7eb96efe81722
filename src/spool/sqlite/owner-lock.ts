/**
 * One spool directory, one owner. A second gateway or Node-RED runtime on the same dataDir would
 * lease and send the same readings as the first (lease state lives in memory), and their totals
 * would drift apart. So the owner holds an exclusive SQLite lock on a file of its own,
 * `spool.lock`, for as long as the spool is open: an open transaction that is never committed.
 * The operating system drops the lock when the process dies (kill -9, a power cut), so there is
 * never a stale lock to clean up, and SQLite also keeps two connections of one process apart.
 * `uplink dlq` does not take it: it works on spool.db beside a running gateway.
 *
 * Error rules: SPOOL_IN_USE (not retryable) when another owner holds the lock; IO when the lock
 * file cannot be created.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { GatewayError } from '../../core/errors.js';

export interface OwnerLock {
  release(): void;
}

export function lockSpoolDir(dataDir: string): OwnerLock {
  const file = join(dataDir, 'spool.lock');
  let db: Database.Database;
  try {
    mkdirSync(dataDir, { recursive: true });
    db = new Database(file);
  } catch (err) {
    throw new GatewayError('IO', `spool: cannot create the lock file ${file} (${(err as { code?: string }).code ?? 'error'})`, { cause: err });
  }
  try {
    db.pragma('busy_timeout = 0');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') {
      throw new GatewayError('SPOOL_IN_USE', `spool: ${dataDir} is in use by another uplink (a gateway or a Node-RED runtime); `
        + 'each needs a dataDir of its own', { cause: err });
    }
    throw new GatewayError('IO', `spool: cannot lock ${file} (${(err as { code?: string }).code ?? 'error'})`, { cause: err });
  }
  return {
    release(): void {
      if (db.open) db.close();
    },
  };
}
