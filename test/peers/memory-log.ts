import { Writable } from 'node:stream';
import type { Logger } from '../../src/core/logger.js';
import { createLogger } from '../../src/ops/log.js';

/** A real (pino) logger whose JSON lines are kept in memory, so tests can assert what was logged. */
export function memoryLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { log: createLogger({ level: 'debug', destination }), lines };
}
