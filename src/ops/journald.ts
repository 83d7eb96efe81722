/**
 * journald reads a service's stdout line by line and gives every line the priority `info`,
 * unless the line starts with a syslog prefix `<N>` (SyslogLevelPrefix=, on by default), which it
 * strips and takes as the priority. So that `journalctl -p err` shows the gateway's errors, each
 * JSON line gets the prefix of its level when, and only when, stdout is the journal: systemd then
 * sets JOURNAL_STREAM to the device and inode of that stream (systemd.exec(5)). A pipe, a file or
 * a terminal gets the bare JSON line.
 */
import { fstatSync } from 'node:fs';

/** syslog(3) priorities: fatal is crit (2), error err (3), warn warning (4), info (6), debug and trace debug (7). */
const PRIORITY: Readonly<Record<string, string>> = {
  fatal: '<2>', error: '<3>', warn: '<4>', info: '<6>', debug: '<7>', trace: '<7>',
};

/** True when file descriptor `fd` is the stream JOURNAL_STREAM names. */
export function isJournalStream(env: Readonly<Record<string, string | undefined>>, fd = 1): boolean {
  const stream = env.JOURNAL_STREAM;
  if (stream === undefined || !/^\d+:\d+$/.test(stream)) return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return stream === `${st.dev}:${st.ino}`;
  } catch {
    return false; // fd closed: nothing will be written there anyway
  }
}

/**
 * Prefixes one serialized line with the priority of its level. pino writes `{"level":"error",...`
 * (the level formatter puts the label first), so the label is read from the start of the line.
 */
export function withPriority(line: string): string {
  if (!line.startsWith('{"level":"')) return line;
  const end = line.indexOf('"', 10);
  const prefix = end > 10 ? PRIORITY[line.slice(10, end)] : undefined;
  return prefix === undefined ? line : prefix + line;
}
