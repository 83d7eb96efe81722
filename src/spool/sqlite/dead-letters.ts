/**
 * The dead-letter store on the spool database. Used by the running gateway (through the spool)
 * and by `uplink dlq` from another process; SQLite's WAL lets both work on the file at once, and
 * the gateway notices the other process's commits (PRAGMA data_version).
 */
import type { DeadLetter, DeadLetterReason, DeadLetterStore, SpooledReading } from '../interface.js';
import type { Db } from './database.js';
import { translateSqliteError } from './errors.js';

interface DeadLetterRow {
  seq: number; id: string; address: string; priority: number; topic: string; payload: Buffer;
  received_at: number; expires_at: number | null; attempts: number; condition: string;
  description: string | null; dead_at: number;
}

/** Dead letters replayed per transaction. */
const REPLAY_BATCH = 500;

const COLUMNS = 'seq, id, address, priority, topic, payload, received_at, expires_at, attempts, condition, description, dead_at';

function toDeadLetter(row: DeadLetterRow): DeadLetter {
  return {
    seq: row.seq, id: row.id, address: row.address, priority: row.priority, topic: row.topic, payload: row.payload,
    receivedAt: row.received_at, ...(row.expires_at === null ? {} : { expiresAt: row.expires_at }), attempts: row.attempts,
    reason: { condition: row.condition, ...(row.description === null ? {} : { description: row.description }) },
    deadAt: row.dead_at,
  };
}

/** Inserts a dead letter; call inside the transaction that deletes the reading from the queue. */
export function insertDeadLetter(db: Db, reading: SpooledReading, reason: DeadLetterReason, now: number): void {
  db.prepare(`INSERT INTO dead_letters (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
    reading.seq, reading.id, reading.address, reading.priority, reading.topic, reading.payload, reading.receivedAt,
    reading.expiresAt ?? null, reading.attempts, reason.condition, reason.description ?? null, now);
}

export class SqliteDeadLetterStore implements DeadLetterStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  list(options: { limit?: number; afterSeq?: number } = {}): DeadLetter[] {
    return this.#wrap('listing dead letters', () =>
      (this.#db.prepare(`SELECT ${COLUMNS} FROM dead_letters WHERE seq > ? ORDER BY seq LIMIT ?`)
        .all(options.afterSeq ?? 0, options.limit ?? 100) as DeadLetterRow[]).map(toDeadLetter));
  }

  get(seq: number): DeadLetter | undefined {
    return this.#wrap('reading a dead letter', () => {
      const row = this.#db.prepare(`SELECT ${COLUMNS} FROM dead_letters WHERE seq = ?`).get(seq) as DeadLetterRow | undefined;
      return row === undefined ? undefined : toDeadLetter(row);
    });
  }

  count(): number {
    return this.#wrap('counting dead letters', () => this.#db.prepare('SELECT count(*) FROM dead_letters').pluck().get() as number);
  }

  /**
   * In batches of REPLAY_BATCH, one transaction each: a running gateway's commits wait for this
   * process's write lock (busy_timeout, on its event loop), so no transaction may hold it long.
   */
  replay(seqs?: readonly number[]): number {
    let replayed = 0;
    if (seqs !== undefined) {
      const sorted = [...seqs].sort((a, b) => a - b);
      for (let i = 0; i < sorted.length; i += REPLAY_BATCH) replayed += this.#replayBatch(this.#selectSeqs(sorted.slice(i, i + REPLAY_BATCH)));
      return replayed;
    }
    for (let after = 0; ;) {
      const rows = this.#wrap('listing dead letters', () =>
        this.#db.prepare(`SELECT ${COLUMNS} FROM dead_letters WHERE seq > ? ORDER BY seq LIMIT ?`).all(after, REPLAY_BATCH) as DeadLetterRow[]);
      if (rows.length === 0) return replayed;
      replayed += this.#replayBatch(rows);
      after = rows.at(-1)!.seq;
    }
  }

  #replayBatch(rows: DeadLetterRow[]): number {
    return this.#wrap('replaying dead letters', () => this.#db.transaction(() => {
      const ensureTarget = this.#db.prepare('INSERT INTO targets (address) VALUES (?) ON CONFLICT (address) DO NOTHING');
      const targetId = this.#db.prepare('SELECT id FROM targets WHERE address = ?').pluck();
      const insert = this.#db.prepare('INSERT INTO readings (id, target, priority, topic, payload, received_at, expires_at, attempts) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, 0)');
      const totals = this.#db.prepare('UPDATE targets SET depth = depth + 1, bytes = bytes + ? WHERE id = ?');
      const remove = this.#db.prepare('DELETE FROM dead_letters WHERE seq = ?');
      let replayed = 0;
      for (const row of rows) {
        // Gone meanwhile (replayed or purged by another command): not twice.
        if (remove.run(row.seq).changes !== 1) continue;
        ensureTarget.run(row.address);
        const target = targetId.get(row.address) as number;
        // The TTL is dropped on replay: a person asked for these readings to go out again.
        insert.run(row.id, target, row.priority, row.topic, row.payload, row.received_at, null);
        totals.run(row.payload.length, target);
        replayed += 1;
      }
      return replayed;
    })());
  }

  purge(seqs?: readonly number[]): number {
    return this.#wrap('purging dead letters', () => {
      if (seqs === undefined) return this.#db.prepare('DELETE FROM dead_letters').run().changes;
      const remove = this.#db.prepare('DELETE FROM dead_letters WHERE seq = ?');
      return this.#db.transaction(() => seqs.reduce((n, seq) => n + remove.run(seq).changes, 0))();
    });
  }

  #selectSeqs(seqs: readonly number[]): DeadLetterRow[] {
    const one = this.#db.prepare(`SELECT ${COLUMNS} FROM dead_letters WHERE seq = ?`);
    return this.#wrap('reading dead letters', () => seqs.map((seq) => one.get(seq) as DeadLetterRow | undefined)
      .filter((row): row is DeadLetterRow => row !== undefined));
  }

  #wrap<T>(doing: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw translateSqliteError(err, doing);
    }
  }
}
