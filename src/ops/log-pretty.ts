/**
 * The human form of a log line, for a person running `uplink run` on a terminal:
 * `12:00:01.234 INFO  [mqtt] mqtt broker listening host=127.0.0.1 port=1883` (local time; the
 * JSON lines for journald keep the ISO time in UTC).
 * It reformats the JSON line pino made, so what it shows is exactly what journald would get
 * (secrets already redacted). Lines it cannot parse are passed through as they are.
 */
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'gatewayId', 'component']);

export function prettyLine(json: string): string {
  let line: Record<string, unknown>;
  try {
    line = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const time = typeof line.time === 'string' ? localTime(new Date(line.time)) : '';
  const level = String(line.level ?? '').toUpperCase().padEnd(5);
  const component = typeof line.component === 'string' ? ` [${line.component}]` : '';
  const fields: string[] = [];
  let stack = '';
  for (const [key, value] of Object.entries(line)) {
    if (HIDDEN.has(key) || value === undefined) continue;
    if (key === 'err' && value !== null && typeof value === 'object') {
      const err = value as { message?: unknown; stack?: unknown };
      fields.push(`err=${JSON.stringify(String(err.message ?? ''))}`);
      const frames = typeof err.stack === 'string' ? err.stack.split('\n').slice(1).map((s) => s.trim()).filter((s) => s !== '') : [];
      if (frames.length > 0) stack = `\n    ${frames.join('\n    ')}`;
      continue;
    }
    fields.push(`${key}=${typeof value === 'string' && /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)}`);
  }
  return `${time} ${level}${component} ${String(line.msg ?? '')}${fields.length > 0 ? ` ${fields.join(' ')}` : ''}${stack}\n`;
}

/** HH:MM:SS.mmm in the machine's time zone: the person at the terminal reads their own clock. */
function localTime(date: Date): string {
  if (Number.isNaN(date.getTime())) return '';
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

/** A pino destination that writes the human form of each line to `out`. */
export function prettyDestination(out: NodeJS.WritableStream): { write(chunk: string): boolean } {
  return {
    write(chunk: string): boolean {
      let text = '';
      for (const json of chunk.split('\n')) if (json !== '') text += prettyLine(json);
      return out.write(text);
    },
  };
}
