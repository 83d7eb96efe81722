/**
 * The options of one serial port, as the config schema (config/serial-schema.ts) produces them;
 * structurally the same as `z.output<typeof SerialPortSchema>`, declared here so that this
 * module does not import config/.
 */
export type Framing =
  | { mode: 'line'; delimiter: string }
  | { mode: 'regex'; pattern: string; gapMs: number }
  | { mode: 'length'; length: number }
  | { mode: 'timeout'; gapMs: number };

export type Decode = 'raw' | 'text' | 'json' | 'csv';

export interface SerialPortConfig {
  /** Names the port in logs and as `{port}` in topic templates. */
  name: string;
  path: string;
  baudRate: number;
  dataBits: 5 | 6 | 7 | 8;
  parity: 'none' | 'even' | 'odd' | 'mark' | 'space';
  stopBits: 1 | 1.5 | 2;
  flowControl: 'none' | 'rtscts' | 'xonxoff';
  framing: Framing;
  /** Frames longer than this (bytes) are dropped and counted `too_long`. */
  maxFrame: number;
  decode: Decode;
  /** For decode `csv`: the column names in order. */
  columns?: string[] | undefined;
  /** Topic template: `{port}` and field names of the decoded reading. */
  topic: string;
}
