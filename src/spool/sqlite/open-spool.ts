/**
 * Opening the spool: the owner lock, the database, and the parts wired to one context. What it
 * returns exists only while the spool is open; the facade (sqlite-spool.ts) closes it in stop().
 */
import type { Clock } from '../../core/clock.js';
import type { GatewayError } from '../../core/errors.js';
import { Checkpoints } from './checkpoints.js';
import { ClockSteps } from './clock-steps.js';
import type { Counters, SpoolContext, SqliteSpoolOptions } from './context.js';
import { openSpoolDatabase, spoolFile, type Db } from './database.js';
import { SqliteDeadLetterStore } from './dead-letters.js';
import { WalDurability } from './durability.js';
import { translateSqliteError } from './errors.js';
import { InFlight } from './in-flight.js';
import { Leasing } from './leasing.js';
import { Maintenance } from './maintenance.js';
import { lockSpoolDir, type OwnerLock } from './owner-lock.js';
import { DiskReserve } from './reserve.js';
import { Statements } from './statements.js';
import { Targets } from './targets.js';
import { WriteQueue } from './write-queue.js';

const DEFAULT_RESERVE = 8 * 1024 * 1024;

export interface OpenSpool {
  ctx: SpoolContext;
  writes: WriteQueue;
  leasing: Leasing;
  durability: WalDurability;
  reserve: DiskReserve;
  deadLetters: SqliteDeadLetterStore;
  timer: NodeJS.Timeout;
  lock: OwnerLock;
}

/** The facade's side of the context: its failure, and its two ways out. */
export interface FacadeHooks {
  failure(): GatewayError | undefined;
  emit(address: string): void;
  fail(error: GatewayError): void;
}

export function openSpool(options: SqliteSpoolOptions, clock: Clock, hooks: FacadeHooks): OpenSpool {
  const log = options.log;
  const lock = lockSpoolDir(options.dataDir);
  let db: Db;
  try {
    db = openSpoolDatabase(options);
  } catch (err) {
    lock.release();
    throw err;
  }
  // See durability.ts: the fsync of each append's commit is ours, off the event loop.
  if (options.durability === 'full') db.pragma('synchronous = NORMAL');
  // See checkpoints.ts: SQLite's automatic checkpoints drop their errors.
  db.pragma('wal_autocheckpoint = 0');
  const sql = new Statements(db);
  const counters: Counters = { commits: 0, deadLettered: 0, deadLetterCount: 0, dropped: { expired: 0, evicted: 0 } };
  const ctx: SpoolContext = {
    options, log, clock, db, sql, counters,
    targets: new Targets(), inFlight: new InFlight(), steps: new ClockSteps(clock, log),
    get failure() { return hooks.failure(); },
    durableSeq: 0,
    emit: hooks.emit,
    fail: hooks.fail,
  };
  const reserve = new DiskReserve(options.dataDir, options.reserveBytes ?? DEFAULT_RESERVE);
  const durability = new WalDurability({ walFile: `${spoolFile(options.dataDir)}-wal`, enabled: options.durability === 'full',
    ...(options.faults?.sync ? { sync: options.faults.sync } : {}), onFailure: hooks.fail });
  const checkpoints = new Checkpoints(ctx);
  const writes = new WriteQueue(ctx, durability, reserve, checkpoints);
  const leasing = new Leasing(ctx);
  const deadLetters = new SqliteDeadLetterStore(db);
  const maintenance = new Maintenance(ctx, { checkpoints, leasing, writes, reserve, deadLetters, durability });
  try {
    ctx.targets.load(sql, clock.now());
    ctx.steps.load(sql);
    // What is on disk at start was written by an earlier run: leasable. (Frames a crash left in the
    // page cache reach the disk within the kernel's writeback interval; not synced here.)
    ctx.durableSeq = sql.maxSeq();
    counters.deadLetterCount = deadLetters.count();
    maintenance.start();
  } catch (err) {
    db.close();
    lock.release();
    throw translateSqliteError(err, 'opening the spool', options.dataDir);
  }
  const timer = setInterval(() => maintenance.run(), options.maintenanceMs ?? 1000);
  return { ctx, writes, leasing, durability, reserve, deadLetters, timer, lock };
}
