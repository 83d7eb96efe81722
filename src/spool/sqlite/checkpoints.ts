/**
 * WAL checkpoints: the spool's own, not SQLite's automatic ones. SQLite runs its automatic
 * checkpoint inside a commit and drops its result (the default WAL hook ignores it), so an I/O
 * error while copying pages into spool.db, or while syncing it, went unnoticed: the gateway kept
 * acknowledging on a dying SD card, the WAL grew at every commit, and the card was found out only
 * once it was gone. So automatic checkpoints are off (open-spool.ts) and the spool checkpoints
 * (PASSIVE: it never waits for a reader such as `uplink dlq`):
 * - after about as many WAL frames as SQLite would have (1000), estimated from the commits and
 *   the bytes they wrote (a commit writes a few index and bookkeeping pages besides its rows);
 * - in the maintenance round, once commits have waited unchecked for a while (a quiet gateway
 *   keeps few frames in the WAL, and its pages reach spool.db within CHECKPOINT_AFTER_MS).
 * Errors are translated like any other: STORAGE_FAILED stops the spool (errors.ts); a full disk
 * or a busy file is tried again at the next occasion (the frames stay in the WAL meanwhile).
 */
import type { SpoolContext } from './context.js';
import { isFatal, translateSqliteError } from './errors.js';

/** SQLite's own threshold (wal_autocheckpoint's default). */
const FRAMES = 1000;
const PAGE = 4096;
/** Pages besides the rows that a commit writes: index pages, the targets row, the WAL's own. */
const PAGES_PER_COMMIT = 3;
export const CHECKPOINT_AFTER_MS = 30_000;

export class Checkpoints {
  readonly #ctx: SpoolContext;
  /** WAL frames written since the last checkpoint, estimated. */
  #frames = 0;
  #last: number;
  #warned = false;

  constructor(ctx: SpoolContext) {
    this.#ctx = ctx;
    this.#last = ctx.clock.now();
  }

  /** A commit wrote `bytes` of payload: checkpoint once the WAL holds about FRAMES frames. */
  committed(bytes: number): void {
    // Rows are stored with their id, topic and index entries: about twice the payload.
    this.#frames += PAGES_PER_COMMIT + Math.ceil((2 * bytes) / PAGE);
    if (this.#frames >= FRAMES) this.run();
  }

  /** The maintenance round: checkpoints what waited long enough. */
  due(): void {
    if (this.#frames > 0 && this.#ctx.clock.now() - this.#last >= CHECKPOINT_AFTER_MS) this.run();
  }

  run(): void {
    const ctx = this.#ctx;
    if (ctx.failure !== undefined) return;
    try {
      ctx.db.pragma('wal_checkpoint(PASSIVE)');
      this.#frames = 0;
      this.#last = ctx.clock.now();
      this.#warned = false;
    } catch (err) {
      const error = translateSqliteError(err, 'checkpointing the WAL into spool.db', ctx.options.dataDir);
      if (isFatal(error)) {
        ctx.fail(error);
      } else if (!this.#warned) {
        this.#warned = true;
        ctx.log.warn({ err: error.message, code: error.code }, 'spool: checkpoint failed; the readings stay in the WAL, trying again later');
      }
    }
  }
}
