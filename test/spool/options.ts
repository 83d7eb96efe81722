import type { SqliteSpoolOptions } from '../../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../peers/memory-log.js';

/** Spool options for tests: the config defaults, with a quiet logger and slow maintenance. */
export function spoolOptions(dataDir: string, overrides: Partial<SqliteSpoolOptions> = {}): SqliteSpoolOptions {
  return {
    dataDir, durability: 'full', groupCommitMs: 0, maxBytes: 1024 ** 3, maxReadings: 1_000_000, policy: 'block',
    expired: 'drop', maxAttempts: 10, onCorrupt: 'fail', log: memoryLogger().log, maintenanceMs: 60_000, ...overrides,
  };
}
