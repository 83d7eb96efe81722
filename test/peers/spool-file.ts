/**
 * What a gateway left in its spool, read from the file itself (better-sqlite3, read-only) after
 * the gateway was stopped cleanly: the readings waiting, by payload.
 */
import Database from 'better-sqlite3';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startGateway } from './gateway.js';

export interface SpooledRow {
  id: string;
  topic: string;
}

export function readSpoolFile(dataDir: string): Map<string, SpooledRow> {
  const db = new Database(join(dataDir, 'spool.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT id, topic, payload FROM readings ORDER BY seq').all() as Array<{ id: string; topic: string; payload: Buffer }>;
    return new Map(rows.map((r) => [r.payload.toString(), { id: r.id, topic: r.topic }]));
  } finally {
    db.close();
  }
}

/**
 * Starts a plain gateway on `dataDir` (SQLite recovers the WAL as it opens), stops it cleanly and
 * returns what the spool holds. Rejects when the gateway does not start or stop with exit 0.
 */
export async function restartAndRead(dataDir: string): Promise<Map<string, SpooledRow>> {
  const gw = await startGateway({ config: { dataDir } });
  const result = await gw.stop();
  await rm(gw.dir, { recursive: true, force: true });
  if (result.code !== 0) throw new Error(`the restarted gateway stopped with ${JSON.stringify(result)}: ${gw.stderr()}`);
  return readSpoolFile(dataDir);
}
