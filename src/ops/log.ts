import { pino, type Logger as Pino } from 'pino';
import type { LogFn, Logger } from '../core/logger.js';
import { isJournalStream, withPriority } from './journald.js';
import { prettyDestination } from './log-pretty.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface LogOptions {
  level: LogLevel;
  /** `json` (the default): JSON lines, for journald; `pretty`: one readable line each, for a terminal. */
  format?: 'json' | 'pretty';
  /** Where the lines go; stdout by default. */
  destination?: NodeJS.WritableStream;
  /** Prefix each line with its syslog priority for journald; default: when stdout is the journal (JOURNAL_STREAM). */
  journald?: boolean;
}

/** The gateway's root logger: its level, and that of every child made from it, can change at run time (SIGHUP). */
export interface AppLogger extends Logger {
  readonly level: LogLevel;
  setLevel(level: LogLevel): void;
}

const SEVERITY: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/**
 * The fields redacted in every line. In pino's path syntax (@pinojs/redact, as fast-redact) a `*`
 * stands for exactly one level, an array index included, so each name is listed at every depth a
 * logged config object could put it: `{ password }`, `{ upstream: { password } }`,
 * `{ upstream: { tls: { passphrase } } }`, `{ mqtt: { users: [{ password }] } }` (a hash, still a
 * secret), `{ config: { mqtt: { users: [{ password }] } } }`. `key` goes too: it names a file,
 * but a PEM pasted there must not reach a line. Lines log summaries, not config objects
 * (gateway.ts); this is the net under that rule.
 */
const SECRET_FIELDS = ['password', 'passphrase', 'key'];
const REDACT_PATHS = [
  ...SECRET_FIELDS.flatMap((name) => [name, `*.${name}`, `*.*.${name}`, `*.*.*.${name}`, `*.*.*.*.${name}`]),
  'users[*].password', '*.users[*].password', '*.*.users[*].password', 'upstream.tls.passphrase',
];
const LEVELS = Object.keys(SEVERITY) as LogLevel[];

/**
 * JSON lines with a readable level and an ISO time: journald keeps its own timestamp, but lines
 * copied out of it (or out of a container log) should still say when they happened.
 *
 * pino children keep the level they were made with, and components make their children at
 * start-up, so the level is checked here, against one threshold that all of them share; pino
 * itself lets everything through. A line below the threshold costs one comparison.
 */
export function createLogger(options: LogOptions): AppLogger {
  const out = options.destination ?? (options.format === 'pretty' ? process.stdout : undefined);
  const destination = options.format === 'pretty' ? prettyDestination(out!) : out ?? pino.destination({ fd: 1, sync: true });
  const root = pino({
    level: 'trace',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Secrets must never reach a log line, even when a whole options object is logged by mistake.
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...(options.journald ?? (out === undefined && isJournalStream(process.env)) ? { hooks: { streamWrite: withPriority } } : {}),
  }, destination);
  const shared = { level: options.level, threshold: SEVERITY[options.level] };
  const logger = wrap(root, shared) as Logger & { level: LogLevel; setLevel(level: LogLevel): void };
  Object.defineProperty(logger, 'level', { get: () => shared.level, enumerable: true });
  logger.setLevel = (level) => {
    shared.level = level;
    shared.threshold = SEVERITY[level];
  };
  return logger;
}

function wrap(target: Pino, shared: { threshold: number }): Logger {
  const method = (level: LogLevel): LogFn => {
    const severity = SEVERITY[level];
    return ((fieldsOrMessage: Record<string, unknown> | string, message?: string): void => {
      if (severity < shared.threshold) return;
      if (typeof fieldsOrMessage === 'string') target[level](fieldsOrMessage);
      else target[level](fieldsOrMessage, message);
    }) as LogFn;
  };
  const logger = Object.fromEntries(LEVELS.map((level) => [level, method(level)])) as unknown as Logger;
  logger.child = (fields) => wrap(target.child(fields), shared);
  return logger;
}
