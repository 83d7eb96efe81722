/**
 * The config of one serial port (`serial:` in uplink.yaml, a list): how to open it, how to cut
 * its bytes into frames, how to decode a frame and which topic the reading gets. Strict like the
 * rest of the config: an unknown key is an error.
 */
import { z } from 'zod';

const PLACEHOLDER_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** A topic template: `{name}` placeholders (field names of the decoded reading, or `port`), no wildcards. */
export function topicTemplateProblem(template: string): string | undefined {
  if (template.length === 0) return 'must not be empty';
  if (template.includes('+') || template.includes('#')) return "must not contain the MQTT wildcards '+' or '#'";
  if (template.includes('\u0000')) return 'must not contain NUL';
  const outside = template.replace(/\{[^{}]*\}/g, '');
  if (outside.includes('{') || outside.includes('}')) return 'has an unbalanced { or }';
  for (const match of template.matchAll(/\{([^{}]*)\}/g)) {
    if (!PLACEHOLDER_NAME.test(match[1]!)) return `has a placeholder {${match[1]}} that is not a field name`;
  }
  return undefined;
}

const topicTemplate = z.string().superRefine((value, ctx) => {
  const problem = topicTemplateProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `${problem} (a topic template such as sensor/{line}/{metric})` });
});

const regexSource = z.string().min(1, 'must not be empty').superRefine((value, ctx) => {
  try {
    new RegExp(value, 'g');
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `is not a valid regular expression: ${err instanceof Error ? err.message : String(err)}` });
  }
});

const gapMs = z.number().int('must be an integer number of ms').min(1, 'must be at least 1 ms').max(60_000, 'must be at most 60000 ms').default(50);

const FramingSchema = z.discriminatedUnion('mode', [
  z.strictObject({
    mode: z.literal('line'),
    delimiter: z.string().min(1, 'must not be empty').default('\n')
      .describe('ends a frame; with the default "\\n" a trailing "\\r" is stripped too'),
  }),
  z.strictObject({
    mode: z.literal('regex'),
    pattern: regexSource.describe('a JavaScript regular expression; each match is a frame, bytes between matches are dropped'),
    gapMs: gapMs.describe('a match that more bytes could still extend (T=\\d+ on "T=12") is a frame after this many ms without a byte'),
  }),
  z.strictObject({
    mode: z.literal('length'),
    length: z.number().int('must be an integer number of bytes').min(1, 'must be at least 1').describe('every frame is this many bytes'),
  }),
  z.strictObject({
    mode: z.literal('timeout'),
    gapMs: gapMs.describe('a pause of this many ms between bytes ends a frame'),
  }),
], { error: 'must have mode line, regex, length or timeout' });

export const SerialPortSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'must be letters, digits, _ . or - (it becomes {port} in topics)')
    .describe('names the port in logs and in topic templates ({port})'),
  path: z.string().min(1, 'must be a device path such as /dev/ttyUSB0').describe('the device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...'),
  baudRate: z.number().int('must be an integer').positive('must be more than 0').default(9600),
  dataBits: z.union([z.literal(5), z.literal(6), z.literal(7), z.literal(8)], { error: 'must be 5, 6, 7 or 8' }).default(8),
  parity: z.enum(['none', 'even', 'odd', 'mark', 'space'], { error: 'must be none, even, odd, mark or space' }).default('none'),
  stopBits: z.union([z.literal(1), z.literal(1.5), z.literal(2)], { error: 'must be 1, 1.5 or 2' }).default(1),
  flowControl: z.enum(['none', 'rtscts', 'xonxoff'], { error: 'must be none, rtscts or xonxoff' }).default('none')
    .describe('rtscts: hardware flow control; xonxoff: software; holds the device back while the spool waits'),
  framing: FramingSchema.default({ mode: 'line', delimiter: '\n' }).describe('how bytes are cut into frames'),
  maxFrame: z.number().int('must be an integer number of bytes').min(1, 'must be at least 1').max(1024 * 1024, 'must be at most 1 MiB').default(4096)
    .describe('longer frames are dropped and counted (rejected.too_long)'),
  decode: z.enum(['raw', 'text', 'json', 'csv'], { error: 'must be raw, text, json or csv' }).default('text')
    .describe('raw: bytes as is; text: UTF-8; json: one object per frame; csv: comma separated values named by columns'),
  columns: z.array(z.string().regex(PLACEHOLDER_NAME, 'must be a field name (letters, digits, _ . -)')).min(1, 'must name at least one column').optional()
    .describe('for decode: csv, the names of the columns in order'),
  topic: topicTemplate.describe('the topic of each reading, e.g. sensor/{line}/{metric}; {port} is the name, other names are JSON or CSV fields'),
}).superRefine((port, ctx) => {
  if (port.decode === 'csv' && port.columns === undefined) {
    ctx.addIssue({ code: 'custom', path: ['columns'], message: 'is required for decode: csv' });
  }
  if (port.decode !== 'csv' && port.columns !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['columns'], message: 'applies only to decode: csv' });
  }
  if (port.decode === 'raw' || port.decode === 'text') {
    for (const match of port.topic.matchAll(/\{([^{}]*)\}/g)) {
      if (match[1] !== 'port') {
        ctx.addIssue({ code: 'custom', path: ['topic'], message: `{${match[1]}} needs decode: json or csv (only {port} is known for ${port.decode})` });
      }
    }
  }
});

export type SerialPortInput = z.input<typeof SerialPortSchema>;
