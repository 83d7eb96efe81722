/**
 * Opening the spool database: file layout, pragmas, schema, and what happens to a corrupt file.
 *
 * On-disk format (schema version 1)
 * - `readings`: one row per reading waiting or in flight; `seq` (AUTOINCREMENT, never reused) is
 *   the arrival order. Index (target, priority, seq) serves leasing in order per address.
 * - `targets`: one row per AMQP address with its depth and payload bytes, kept in the same
 *   transactions as the readings so that start-up reads totals without scanning.
 * - `dead_letters`: readings the upstream rejected (or that hit the attempt cap or expired), with
 *   the reason.
 * - `clock_steps`: steps of the system clock seen while readings were stored, so that their times
 *   can be corrected without rewriting them (clock-steps.ts). Added to schema 1 without a version
 *   change: an older uplink ignores it (and its readings' times stay uncorrected).
 * - WAL journal; `auto_vacuum=INCREMENTAL` so that freed pages are returned to the file system bit
 *   by bit. With `durability: full` the connection runs `synchronous=NORMAL` and the spool fsyncs
 *   the WAL itself before it acknowledges an append (durability.ts); with `normal`, nothing is
 *   fsynced at commit and a power cut may lose the last acknowledged readings.
 * Lease state (what is in flight) is never written: after a restart everything is simply queued.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { GatewayError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { isCorruption, translateSqliteError } from './errors.js';

export type Db = Database.Database;

export const SCHEMA_VERSION = 1;

const DDL = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS targets (
  id INTEGER PRIMARY KEY,
  address TEXT NOT NULL UNIQUE,
  depth INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS readings (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL,
  target INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  received_at INTEGER NOT NULL,
  expires_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS readings_order ON readings (target, priority, seq);
CREATE INDEX IF NOT EXISTS readings_expiry ON readings (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS clock_steps (upto_seq INTEGER PRIMARY KEY, delta INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  address TEXT NOT NULL,
  priority INTEGER NOT NULL,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  received_at INTEGER NOT NULL,
  expires_at INTEGER,
  attempts INTEGER NOT NULL,
  condition TEXT NOT NULL,
  description TEXT,
  dead_at INTEGER NOT NULL
);
`;

export interface OpenOptions {
  dataDir: string;
  durability: 'full' | 'normal';
  onCorrupt: 'fail' | 'fresh';
  log: Logger;
  /** Opened by another process (the `uplink dlq` command) beside a running gateway. */
  readonly?: boolean;
}

export function spoolFile(dataDir: string): string {
  return join(dataDir, 'spool.db');
}

export function openSpoolDatabase(options: OpenOptions): Db {
  const file = spoolFile(options.dataDir);
  try {
    return openAndCheck(file, options);
  } catch (err) {
    if (!isCorruption(err)) throw translateSqliteError(err, `opening ${file}`);
    if (options.onCorrupt === 'fail') {
      throw new GatewayError('SPOOL_CORRUPT', `spool: ${file} is corrupt or not a spool database ` +
        `(${(err as { code?: string }).code}); it was left as it is. Move it aside to keep it and start with an ` +
        'empty spool, or set spool.onCorrupt: fresh to do that automatically', { cause: err });
    }
    const aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
    }
    options.log.error({ file, movedTo: aside, code: (err as { code?: string }).code },
      'spool database is corrupt: moved it aside and started with an empty spool (spool.onCorrupt: fresh)');
    return openAndCheck(file, options);
  }
}

function openAndCheck(file: string, options: OpenOptions): Db {
  if (!options.readonly) mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  try {
    db.pragma('busy_timeout = 5000');
    if (!options.readonly) {
      // auto_vacuum only takes effect before the first table exists.
      db.pragma('auto_vacuum = INCREMENTAL');
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${options.durability === 'full' ? 'FULL' : 'NORMAL'}`);
      // Keeps the WAL from staying large after a burst: fewer blocks held on the SD card.
      db.pragma('journal_size_limit = 16777216');
      db.exec(DDL);
      const version = db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get('schema_version') as number | undefined;
      if (version === undefined) {
        db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema_version', SCHEMA_VERSION);
      } else if (version > SCHEMA_VERSION) {
        throw new GatewayError('SPOOL_CORRUPT', `spool: ${file} has schema version ${version}, newer than this uplink understands (${SCHEMA_VERSION})`);
      }
    }
    // Touch the tables: a file that is not a database, or a damaged one, fails here.
    db.prepare('SELECT count(*) FROM targets').get();
    db.prepare('SELECT seq FROM readings ORDER BY seq LIMIT 1').get();
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
