/**
 * Decoding a frame into the payload that is stored and the fields that fill the topic template.
 * raw/text store the frame bytes as they came; json/csv store the JSON text of the object.
 */
import type { Decode } from './config.js';

export type Fields = Record<string, unknown>;

export type Decoded =
  | { ok: true; payload: Buffer; fields: Fields }
  | { ok: false; reason: 'invalid_utf8' | 'invalid_json' | 'invalid_csv'; detail: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

function text(frame: Buffer): string | undefined {
  try {
    return utf8.decode(frame);
  } catch {
    return undefined;
  }
}

const NUMBER = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

export function decodeFrame(frame: Buffer, mode: Decode, columns: readonly string[] | undefined): Decoded {
  if (mode === 'raw') return { ok: true, payload: frame, fields: {} };
  const decoded = text(frame);
  if (decoded === undefined) return { ok: false, reason: 'invalid_utf8', detail: 'the frame is not valid UTF-8' };
  if (mode === 'text') return { ok: true, payload: frame, fields: {} };
  if (mode === 'json') {
    let value: unknown;
    try {
      value = JSON.parse(decoded);
    } catch (err) {
      return { ok: false, reason: 'invalid_json', detail: err instanceof Error ? err.message : String(err) };
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      return { ok: false, reason: 'invalid_json', detail: 'the frame is JSON but not an object' };
    }
    // Stored as the JSON text of the object (the frame without surrounding whitespace).
    return { ok: true, payload: Buffer.from(JSON.stringify(value)), fields: value as Fields };
  }
  const names = columns ?? [];
  const values = decoded.split(',');
  if (values.length !== names.length) {
    return { ok: false, reason: 'invalid_csv', detail: `${values.length} columns; expected ${names.length}` };
  }
  const fields: Fields = {};
  names.forEach((name, i) => {
    const raw = values[i]!.trim();
    fields[name] = NUMBER.test(raw) ? Number(raw) : raw;
  });
  return { ok: true, payload: Buffer.from(JSON.stringify(fields)), fields };
}

/**
 * Fills `{name}` placeholders of `template` from `fields` (`{port}` is always the port's name); undefined when a value
 * is missing, not a string/number/boolean, empty, or would add topic levels or wildcards.
 */
export function fillTopic(template: string, fields: Fields, port: string): string | undefined {
  if (!template.includes('{')) return template;
  let missing = false;
  const topic = template.replace(/\{([^{}]+)\}/g, (_, name: string) => {
    const value = name === 'port' ? port : fields[name];
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      missing = true;
      return '';
    }
    const level = String(value);
    if (level.length === 0 || /[/+#]/.test(level) || level.includes('\u0000')) missing = true;
    return level;
  });
  return missing ? undefined : topic;
}
