/**
 * The real side of the model-based spool test: a real SqliteSpool on real SQLite files, with its
 * faults injected for real and every asynchronous completion in the test's hands.
 *
 * - Commits: the write queue commits at the end of an event-loop turn (groupCommitMs 0), and so
 *   does its retry after a full disk (diskFullRetryMs 0). `tick()` lets one turn pass: calls made
 *   between two ticks share a commit, and a call made after a settlement but before the next tick
 *   runs between that settlement and its commit.
 * - Commit failures: each planned SQLite error code fails the next transaction, from inside it
 *   (faults.inTransaction), as SQLite itself would report it.
 * - fsyncs: held until the test completes them, in any order, successfully or with EIO; or one
 *   fails at once, as when the WAL cannot be opened.
 * - Time: a step-free clock the test moves, and a wall clock off it by less than a millisecond or
 *   by one, as Date.now (truncated) and a rounded monotonic clock are.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '../../src/core/clock.js';
import type { GatewayError } from '../../src/core/errors.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import type { SyncFn } from '../../src/spool/sqlite/durability.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { spoolOptions } from './options.js';

/** Lets every promise reaction that is already due run, without letting the event loop turn. */
export async function drainMicrotasks(): Promise<void> {
  // The longest chain here (fsync callback to an append's resolution) is about ten reactions.
  for (let i = 0; i < 64; i++) await Promise.resolve();
}

export type CommitFault = 'SQLITE_BUSY' | 'SQLITE_FULL' | 'SQLITE_IOERR_WRITE';

export interface WorldConfig {
  maxAttempts: number;
  /** spool.maxReadings, with policy `block`: appends beyond it wait for room. */
  maxReadings: number;
  expired: 'drop' | 'dead-letter';
  /** Wall clock minus step-free clock, in ms (|jitter| <= 1: no step). */
  jitter: number;
}

interface HeldSync {
  index: number;
  callback: (err: NodeJS.ErrnoException | null) => void;
}

export class World {
  readonly dir: string;
  readonly config: WorldConfig;
  now = 1_750_000_000_000;
  #spool: SqliteSpool | undefined;
  /** onFatal was called by the current instance. */
  failed = false;
  fatalLines = 0;
  readonly plan: CommitFault[] = [];
  /** A planned fatal fault was thrown since the last check. */
  fatalThrown = false;
  readonly held: HeldSync[] = [];
  /** The next fsync fails before it returns. */
  failNextSyncAtOnce = false;
  syncs = 0;
  /** The highest index of an fsync that completed successfully. */
  maxSyncedOk = -1;
  readonly emits = new Map<string, number>();
  /** Appends given an AbortSignal and not settled yet: a device that may give up waiting. */
  readonly abortable: AbortController[] = [];
  readonly #clock: Clock;
  readonly #log: Logger;

  constructor(config: WorldConfig, base: string) {
    this.config = config;
    this.dir = mkdtempSync(join(base, 'uplink-model-'));
    this.#clock = { now: () => this.now, wall: () => this.now + this.config.jitter };
    const count = (): void => { this.fatalLines += 1; };
    this.#log = { ...silentLogger, fatal: count, child: () => this.#log };
  }

  get spool(): SqliteSpool {
    if (this.#spool === undefined) throw new Error('the spool was never started');
    return this.#spool;
  }

  async start(): Promise<void> {
    const sync: SyncFn = (_fd, callback) => {
      const index = this.syncs++;
      if (!this.failNextSyncAtOnce) return void this.held.push({ index, callback });
      // As when the WAL cannot even be opened for its fsync: the failure is there before any callback.
      this.failNextSyncAtOnce = false;
      callback(Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO', errno: -5 }));
    };
    const inTransaction = (): void => {
      const code = this.plan.shift();
      if (code === undefined) return;
      if (code === 'SQLITE_IOERR_WRITE') this.fatalThrown = true;
      throw Object.assign(new Error(`injected ${code}`), { code });
    };
    this.failed = false;
    this.fatalLines = 0;
    this.#spool = new SqliteSpool(spoolOptions(this.dir, {
      log: this.#log, clock: this.#clock, maxAttempts: this.config.maxAttempts, expired: this.config.expired, maxReadings: this.config.maxReadings, policy: 'block',
      diskFullRetryMs: 0, reserveBytes: 0, maintenanceMs: 3_600_000,
      faults: { inTransaction, sync },
      onFatal: (error: GatewayError) => {
        if (this.failed) throw new Error(`onFatal called twice (${error.code})`);
        this.failed = true;
      },
    }));
    await this.spool.start();
    this.spool.onAvailable((address) => this.emits.set(address, (this.emits.get(address) ?? 0) + 1));
  }

  /** One turn of the event loop: a scheduled commit runs, and every promise it settles. */
  async tick(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
  }

  /** Completes a held fsync (the k-th oldest, modulo), successfully or with EIO. */
  completeSync(k: number, ok: boolean): boolean {
    if (this.held.length === 0) return false;
    const [sync] = this.held.splice(k % this.held.length, 1);
    if (ok) this.maxSyncedOk = Math.max(this.maxSyncedOk, sync!.index);
    sync!.callback(ok ? null : Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 }));
    return true;
  }

  /** Stops the spool (its held fsyncs complete as `ok` says), then opens the same directory again. */
  async restart(ok: boolean): Promise<void> {
    await this.stop(ok);
    await this.start();
  }

  /** Stops the spool; the fsyncs it waits for complete as `ok` says. */
  async stop(ok: boolean): Promise<void> {
    let stopped = false;
    const stopping = this.spool.stop().finally(() => { stopped = true; });
    // What stop() settled at once is seen before any fsync comes back, as it would be.
    await drainMicrotasks();
    while (!stopped) {
      while (this.completeSync(0, ok));
      await this.tick();
    }
    await stopping;
  }

  async close(): Promise<void> {
    if (this.#spool !== undefined) await this.stop(true);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
