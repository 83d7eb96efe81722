/**
 * Every SQL statement of the running spool, written once, prepared once per connection
 * (preparing matters on the append and drain paths). The schema is in database.ts.
 */
import type Database from 'better-sqlite3';
import type { Db } from './database.js';

const READING = 'seq, id, priority, topic, payload, received_at, expires_at, attempts';
/** READING's columns, then the address: for the queries that join the targets. */
const READING_AND_ADDRESS = `${READING.split(', ').map((c) => `r.${c}`).join(', ')}, t.address`;

export const SQL = {
  // Raw rows (arrays) in lease order: on the drain path a row object per reading is measurably dearer.
  // Between the cursor and the last durable seq (context.ts).
  scan: `SELECT ${READING} FROM readings WHERE target = ? AND priority = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
  bySeq: `SELECT ${READING} FROM readings WHERE seq = ?`,
  withAddress: `SELECT ${READING_AND_ADDRESS} FROM readings r JOIN targets t ON t.id = r.target WHERE r.seq = ?`,
  expiredBetween: `SELECT ${READING_AND_ADDRESS} FROM readings r JOIN targets t ON t.id = r.target
    WHERE r.expires_at IS NOT NULL AND r.expires_at <= ? AND r.seq BETWEEN ? AND ? ORDER BY r.expires_at LIMIT 1000`,
  oldest: 'SELECT seq, received_at FROM readings ORDER BY seq LIMIT 1',
  newest: 'SELECT seq, received_at FROM readings ORDER BY seq DESC LIMIT 1',
  maxSeq: "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'readings'), 0)",
  remove: 'DELETE FROM readings WHERE seq = ?',
  removeRange: 'DELETE FROM readings WHERE seq BETWEEN ? AND ? RETURNING seq',
  removeListed: 'DELETE FROM readings WHERE seq IN (SELECT value FROM json_each(?)) RETURNING seq',
  bumpAttempts: 'UPDATE readings SET attempts = attempts + 1 WHERE seq = ? RETURNING attempts',
  evictable: 'SELECT seq, target, length(payload) AS size FROM readings WHERE priority = ? AND seq > ? ORDER BY seq LIMIT 256',
  targets: 'SELECT id, address, depth, bytes FROM targets',
  addTarget: 'INSERT INTO targets (address) VALUES (?)',
  removeTarget: 'DELETE FROM targets WHERE id = ? AND depth = 0 AND NOT EXISTS (SELECT 1 FROM readings WHERE target = ?)',
  totals: 'UPDATE targets SET depth = depth + ?, bytes = bytes + ? WHERE id = ?',
  steps: 'SELECT upto_seq, delta FROM clock_steps ORDER BY upto_seq',
  addStep: 'INSERT INTO clock_steps (upto_seq, delta) VALUES (?, ?) ON CONFLICT (upto_seq) DO UPDATE SET delta = delta + excluded.delta',
  pruneSteps: 'DELETE FROM clock_steps WHERE upto_seq < ?',
} as const;

const INSERT_CHUNK = 64;
const insertText = new Map<number, string>();

/** INSERT of `rows` readings at once; chunks keep the statement count small and under SQLite's parameter limit. */
function insertSql(rows: number): string {
  let text = insertText.get(rows);
  if (text === undefined) {
    text = `INSERT INTO readings (id, target, priority, topic, payload, received_at, expires_at) VALUES ${
      Array.from({ length: rows }, () => '(?, ?, ?, ?, ?, ?, ?)').join(', ')}`;
    insertText.set(rows, text);
  }
  return text;
}

export class Statements {
  readonly #db: Db;
  readonly #cache = new Map<string, Database.Statement>();

  constructor(db: Db) {
    this.#db = db;
  }

  get(name: keyof typeof SQL): Database.Statement {
    return this.#prepare(SQL[name]);
  }

  /** The highest seq ever given to a reading (AUTOINCREMENT: never reused, also after deletes). */
  maxSeq(): number {
    return this.get('maxSeq').pluck().get() as number;
  }

  /** Inserts readings given as flat values (7 per reading, in insertSql's column order). */
  insert(values: unknown[]): void {
    for (let i = 0; i < values.length; i += 7 * INSERT_CHUNK) {
      const chunk = values.slice(i, i + 7 * INSERT_CHUNK);
      this.#prepare(insertSql(chunk.length / 7)).run(chunk);
    }
  }

  #prepare(text: string): Database.Statement {
    let statement = this.#cache.get(text);
    if (statement === undefined) {
      statement = this.#db.prepare(text);
      this.#cache.set(text, statement);
    }
    return statement;
  }
}
