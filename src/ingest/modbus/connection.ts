/**
 * One Modbus connection (a serial line or a TCP socket) behind modbus-serial's client, which
 * builds the requests and checks the responses (CRC, exception codes, unit, function, length),
 * and the one place where its errors enter our code: each becomes a ModbusFault with a reason.
 *
 * Error rules
 * - `read`/`write` never reject: they resolve with the data or with a ModbusFault: `timeout` (no
 *   answer), `gateway` (exception 10 or 11: a Modbus gateway got no answer from the device behind
 *   it, which is no answer too), `short_frame` (an answer that stopped part way), `crc`, `unexpected` (another unit
 *   or function answered), `bad_length` (a length that does not match the request), `not_open`,
 *   `io`: all retryable, the line may be better next time; `exception` (the device answered with
 *   an exception code): not retryable.
 * - One request at a time: the caller (the bus) waits for each to settle before the next.
 * - `open` rejects with a ModbusFault `io` when the port or host cannot be reached.
 *
 * On a serial line, a request that timed out settles only after the line was left quiet for
 * `lateWindow` (default: the timeout, as libmodbus): an answer that comes late lands in that
 * window and is dropped (`late`: its bytes), instead of being taken as the answer to the next
 * request (rtu-line.ts). A write is confirmed only by a response that echoes its address and
 * value (5, 6) or quantity (15, 16); another echo is `unexpected`.
 *
 * Over TCP, a response that stopped part way (its MBAP header promised more) would stay in
 * modbus-serial's buffer, and every later response would be read against it: the stream cannot
 * be resynchronised. So a request that timed out with bytes held settles only after the
 * connection was closed and opened again (`short_frame`); when it cannot tell (modbus-serial
 * changed), it does so after every timeout.
 */
import type { ModbusRTU } from 'modbus-serial/ModbusRTU.js';
import { GatewayError, messageOf } from '../../core/errors.js';
import type { ModbusBusConfig } from './config.js';
import { RtuLine } from './rtu-line.js';

/**
 * modbus-serial's client class, and serialport's SerialPort for RTU lines: loaded with the first
 * connection, so a gateway without Modbus buses loads neither.
 */
async function libraries(rtu: boolean): Promise<{ ModbusClient: typeof ModbusRTU; SerialPort?: typeof import('serialport').SerialPort }> {
  // A CommonJS module whose typings declare an ES default export: at run time the default is the class.
  const ModbusClient = (await import('modbus-serial')).default as unknown as typeof ModbusRTU;
  return rtu ? { ModbusClient, SerialPort: (await import('serialport')).SerialPort } : { ModbusClient };
}

export type FaultReason = 'timeout' | 'gateway' | 'short_frame' | 'crc' | 'unexpected' | 'bad_length' | 'exception' | 'not_open' | 'io';

/** Exceptions of a Modbus gateway that could not reach the device behind it: no answer from the device, not a refusal. */
const GATEWAY_EXCEPTIONS = new Set([10, 11]);

const EXCEPTIONS: Record<number, string> = {
  1: 'illegal function', 2: 'illegal data address', 3: 'illegal data value', 4: 'slave device failure', 5: 'acknowledge',
  6: 'slave device busy', 8: 'memory parity error', 10: 'gateway path unavailable', 11: 'gateway target device failed to respond',
};

export class ModbusFault extends GatewayError {
  readonly reason: FaultReason;
  /** The exception code the device answered with (reason `exception`). */
  readonly exception: number | undefined;

  constructor(reason: FaultReason, message: string, exception?: number) {
    super(reason === 'exception' ? 'BAD_INPUT' : 'IO', message, { retryable: reason !== 'exception' });
    this.name = 'ModbusFault';
    this.reason = reason;
    this.exception = exception;
  }
}

export function exceptionText(code: number): string {
  return `exception ${code} (${EXCEPTIONS[code] ?? 'unknown'})`;
}

/** modbus-serial's errors: plain objects and Errors told apart by name, errno, modbusCode and message. */
export function translateFault(err: unknown, shortBytes = 0): ModbusFault {
  const e = (err ?? {}) as { name?: string; errno?: string; message?: string; modbusCode?: number };
  const message = e.message ?? messageOf(err);
  if (typeof e.modbusCode === 'number') {
    return new ModbusFault(GATEWAY_EXCEPTIONS.has(e.modbusCode) ? 'gateway' : 'exception', exceptionText(e.modbusCode), e.modbusCode);
  }
  if (e.name === 'TransactionTimedOutError' || e.errno === 'ETIMEDOUT') {
    return shortBytes > 0
      ? new ModbusFault('short_frame', `the response stopped after ${shortBytes} bytes`)
      : new ModbusFault('timeout', 'no response');
  }
  if (message === 'CRC error') return new ModbusFault('crc', 'the response failed its CRC check');
  if (message.startsWith('Data length error')) return new ModbusFault('bad_length', `the response has the wrong length (${message})`);
  if (message.startsWith('Unexpected data error')) return new ModbusFault('unexpected', `another answer than the one asked for (${message})`);
  if (e.name === 'PortNotOpenError' || message === 'Port Not Open') return new ModbusFault('not_open', 'the connection is not open');
  return new ModbusFault('io', message);
}

type Callback<T> = (err: unknown, data: T) => void;

/** Bytes of an unfinished response modbus-serial's TCP port holds; undefined when it cannot tell. */
function heldBytes(client: ModbusRTU): number | undefined {
  const held = (client as unknown as { _port?: { _clientRcvData?: unknown } })._port?._clientRcvData;
  return Buffer.isBuffer(held) ? held.length : undefined;
}

export type ReadFunction = 1 | 2 | 3 | 4;

/** What a request got: the data, or why there is none (and the bytes of a late answer dropped after it timed out). */
export type Answer<T> = { ok: true; data: T } | { ok: false; fault: ModbusFault; late?: number };

/** What modbus-serial makes of a write response: the address and value (5, 6) or quantity (15, 16) it echoes. */
interface WriteEcho {
  address?: number;
  state?: boolean;
  value?: number;
  length?: number;
}

/** Why the echo of a write response does not confirm the write, if it does not. */
export function echoProblem(fn: 5 | 6 | 15 | 16, address: number, values: boolean[] | number[], echo: WriteEcho): string | undefined {
  const [what, expected, got]: [string, unknown, unknown] = fn === 5 ? ['value', values[0], echo.state]
    : fn === 6 ? ['value', values[0], echo.value] : ['quantity', values.length, echo.length];
  if (echo.address === address && got === expected) return undefined;
  return `the write confirmation echoes address ${echo.address}, ${what} ${String(got)}; the write was address ${address}, ${what} ${String(expected)}`;
}

export class ModbusConnection {
  readonly #bus: ModbusBusConfig;
  readonly #lateWindowMs: number;
  #client: ModbusRTU | undefined;
  #line: RtuLine | undefined;
  #onClose: () => void = () => {};
  /** Ends the quiet window after a timeout early (the connection closes). */
  #endQuiet: (() => void) | undefined;

  constructor(bus: ModbusBusConfig) {
    this.#bus = bus;
    this.#lateWindowMs = bus.rtu === undefined ? 0 : bus.lateWindow ?? bus.timeout;
  }

  get isOpen(): boolean {
    return this.#client?.isOpen === true;
  }

  /** Bytes the RTU line skipped as garbage, in runs (TCP: none). */
  garbage(): { runs: number; bytes: number } {
    return { runs: this.#line?.garbageRuns ?? 0, bytes: this.#line?.garbageBytes ?? 0 };
  }

  /** Called once when an open connection goes away (the port closes, the socket drops). */
  onClose(listener: () => void): void {
    this.#onClose = listener;
  }

  async open(): Promise<void> {
    const bus = this.#bus;
    let client: ModbusRTU | undefined;
    try {
      const { ModbusClient, SerialPort } = await libraries(bus.rtu !== undefined);
      if (bus.rtu !== undefined) {
        const line = new RtuLine(bus.rtu, SerialPort!);
        // Errors of an open port are followed by its close; this listener keeps them from being thrown.
        line.on('error', () => {});
        const rtu = new ModbusClient(line);
        client = rtu;
        await new Promise<void>((resolve, reject) => rtu.open((err: unknown) => (err ? reject(err) : resolve())));
        this.#line = line;
      } else {
        const tcp = bus.tcp!;
        client = new ModbusClient();
        await client.connectTCP(tcp.host, { port: tcp.port, timeout: tcp.connectTimeout });
      }
    } catch (err) {
      // A connect that timed out is still trying: its socket would stay (SYN_SENT) for minutes.
      client?.destroy(() => {});
      throw new ModbusFault('io', messageOf(err));
    }
    client.setTimeout(bus.timeout);
    // The client is an EventEmitter (its typings do not say so).
    const events = client as unknown as NodeJS.EventEmitter;
    events.on('error', () => {});
    events.once('close', () => {
      if (this.#client !== client) return;
      this.#client = undefined;
      this.#onClose();
    });
    this.#client = client;
  }

  async close(): Promise<void> {
    this.#endQuiet?.();
    const client = this.#client;
    this.#client = undefined;
    if (client === undefined) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      try {
        client.close(() => { clearTimeout(timer); resolve(); });
      } catch {
        clearTimeout(timer);
        resolve();
      }
    });
    // A TCP socket that never answered the FIN is dropped.
    client.destroy(() => {});
  }

  /** Reads bits (functions 1, 2) or registers (3, 4). */
  async read(unit: number, fn: ReadFunction, address: number, quantity: number): Promise<Answer<number[] | boolean[]>> {
    const answer = await this.#request<{ data: number[] | boolean[] }>((client, done) => {
      switch (fn) {
        case 1: client.writeFC1(unit, address, quantity, done as never); break;
        case 2: client.writeFC2(unit, address, quantity, done as never); break;
        case 3: client.writeFC3(unit, address, quantity, done as never); break;
        case 4: client.writeFC4(unit, address, quantity, done as never); break;
      }
    });
    return answer.ok ? { ok: true, data: answer.data.data } : answer;
  }

  /** Writes coils (function 5 for one, 15 for several) or holding registers (6, 16). */
  async write(unit: number, fn: 5 | 6 | 15 | 16, address: number, values: boolean[] | number[]): Promise<Answer<undefined>> {
    const answer = await this.#request<WriteEcho>((client, done) => {
      switch (fn) {
        case 5: client.writeFC5(unit, address, values[0] as boolean, done as never); break;
        case 6: client.writeFC6(unit, address, values[0] as number, done as never); break;
        case 15: client.writeFC15(unit, address, values as boolean[], done as never); break;
        case 16: client.writeFC16(unit, address, values as number[], done as never); break;
      }
    });
    if (!answer.ok) return answer;
    const problem = echoProblem(fn, address, values, answer.data);
    return problem === undefined ? { ok: true, data: undefined } : { ok: false, fault: new ModbusFault('unexpected', problem) };
  }

  #request<T>(send: (client: ModbusRTU, done: Callback<T>) => void): Promise<Answer<T>> {
    const client = this.#client;
    if (client === undefined || !client.isOpen) return Promise.resolve({ ok: false, fault: new ModbusFault('not_open', 'the connection is not open') });
    const line = this.#line;
    return new Promise<Answer<T>>((resolve) => {
      let settled = false;
      const done: Callback<T> = (err, data) => {
        if (settled) return;
        settled = true;
        if (!err) {
          resolve({ ok: true, data });
        } else if ((err as { errno?: string }).errno === 'ETIMEDOUT' && line !== undefined) {
          const fault = translateFault(err, line.abandon());
          void this.#quiet().then(() => resolve({ ok: false, fault, late: line.takeLate() }));
        } else if ((err as { errno?: string }).errno === 'ETIMEDOUT') {
          const held = heldBytes(client);
          if (held === 0) {
            resolve({ ok: false, fault: translateFault(err) });
            return;
          }
          const cut = translateFault(err, held ?? 0);
          const fault = new ModbusFault(cut.reason, `${cut.message}; the connection is opened again (its stream cannot be resynchronised)`);
          void this.#reconnect().then(() => resolve({ ok: false, fault }));
        } else {
          resolve({ ok: false, fault: translateFault(err) });
        }
      };
      try {
        send(client, done);
      } catch (err) {
        done(err, undefined as T);
      }
    });
  }

  /** A TCP connection whose stream is out of step: closed and opened again (on failure the bus reopens it with backoff). */
  async #reconnect(): Promise<void> {
    await this.close();
    await this.open().catch(() => {});
  }

  /** The quiet window after a timeout on a serial line; over at once when the connection closes. */
  #quiet(): Promise<void> {
    if (this.#lateWindowMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const end = (): void => {
        clearTimeout(timer);
        if (this.#endQuiet === end) this.#endQuiet = undefined;
        resolve();
      };
      const timer = setTimeout(end, this.#lateWindowMs);
      this.#endQuiet = end;
    });
  }
}
