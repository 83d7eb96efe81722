/**
 * The logging interface every module receives (it never creates its own). The first argument holds
 * the structured fields, such as the connection or device a line concerns; the second the message.
 * ops/log.ts provides the implementation (pino, JSON lines on stdout for journald).
 */
export interface LogFn {
  (fields: Record<string, unknown>, message: string): void;
  (message: string): void;
}

export interface Logger {
  fatal: LogFn;
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  trace: LogFn;
  /** A logger whose lines all carry `fields`, e.g. `{ component: 'upstream', url }`. */
  child(fields: Record<string, unknown>): Logger;
}

/** A logger that writes nothing: for tools whose output is their own (uplink dlq, uplink demo). */
export const silentLogger: Logger = {
  fatal: () => {}, error: () => {}, warn: () => {}, info: () => {}, debug: () => {}, trace: () => {},
  child: () => silentLogger,
};
