import { pino } from 'pino';
import type { Logger } from '../core/logger.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface LogOptions {
  level: LogLevel;
  /** Where the JSON lines go; stdout (journald) by default. */
  destination?: NodeJS.WritableStream;
}

/**
 * JSON lines with a readable level and an ISO time: journald keeps its own timestamp, but lines
 * copied out of it (or out of a container log) should still say when they happened.
 */
export function createLogger(options: LogOptions): Logger {
  return pino({
    level: options.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Secrets must never reach a log line, even when a whole options object is logged by mistake.
    redact: { paths: ['password', '*.password', 'key', '*.key', 'passphrase', '*.passphrase'], censor: '[redacted]' },
  }, options.destination ?? pino.destination({ fd: 1, sync: true }));
}
