/**
 * Registers and bits as values, and back: data types, byte and word order, scale and offset.
 *
 * Registers are the 16-bit words of the wire. A value of several registers is read as big-endian
 * bytes once the orders are applied: byteOrder little swaps the two bytes of every register,
 * wordOrder little reverses the registers of each value. So float32 with big/big is the standard
 * "ABCD", little/big "BADC", big/little "CDAB", little/little "DCBA".
 *
 * Decoding never guesses: a float that is NaN or infinite is not a value (the reading gets quality
 * bad). Encoding refuses what the point cannot hold (out of the type's range or the point's
 * min/max, not a multiple of the scale, a string too long) instead of storing something else.
 */
import type { ModbusPointConfig } from './config.js';
import { registersPerValue } from './config.js';

export type Value = number | boolean | string | Array<number | boolean>;

export type Decoded = { ok: true; value: Value } | { ok: false; error: string };

type PointShape = Pick<ModbusPointConfig, 'function' | 'type' | 'count' | 'length' | 'bit' | 'byteOrder' | 'wordOrder' | 'scale' | 'offset'>;

/** The bytes of `registers` with the point's orders applied, as big-endian bytes of one value. */
function valueBytes(registers: readonly number[], point: PointShape): Buffer {
  const ordered = point.wordOrder === 'little' ? [...registers].reverse() : registers;
  const bytes = Buffer.alloc(ordered.length * 2);
  ordered.forEach((register, i) => {
    if (point.byteOrder === 'little') bytes.writeUInt16LE(register, i * 2);
    else bytes.writeUInt16BE(register, i * 2);
  });
  return bytes;
}

/** Avoids 0.1 * 2301 = 230.10000000000002 in readings: 15 significant digits are what a double holds. */
function scaled(raw: number, point: PointShape): number {
  if (point.scale === 1 && point.offset === 0) return raw;
  return Number((raw * point.scale + point.offset).toPrecision(15));
}

function decodeOne(registers: readonly number[], point: PointShape): Decoded {
  const bytes = valueBytes(registers, point);
  let raw: number;
  switch (point.type) {
    case 'bit':
      return { ok: true, value: ((bytes.readUInt16BE(0) >> (point.bit ?? 0)) & 1) === 1 };
    case 'string': {
      const text = bytes.subarray(0, point.length ?? bytes.length).toString('latin1');
      const end = text.indexOf('\u0000');
      return { ok: true, value: end < 0 ? text : text.slice(0, end) };
    }
    case 'int16': raw = bytes.readInt16BE(0); break;
    case 'uint16': raw = bytes.readUInt16BE(0); break;
    case 'int32': raw = bytes.readInt32BE(0); break;
    case 'uint32': raw = bytes.readUInt32BE(0); break;
    case 'float32': raw = bytes.readFloatBE(0); break;
    case 'float64': raw = bytes.readDoubleBE(0); break;
  }
  if (!Number.isFinite(raw)) return { ok: false, error: `the device sent ${raw} (not a number)` };
  return { ok: true, value: scaled(raw, point) };
}

/** The point's value from the registers read (function holding/input) or the bits (coil/discrete). */
export function decodePoint(point: PointShape, data: readonly number[] | readonly boolean[]): Decoded {
  if (point.function === 'coil' || point.function === 'discrete') {
    const bits = (data as readonly boolean[]).slice(0, point.count);
    if (bits.length < point.count) return { ok: false, error: `${bits.length} bits in the response; expected ${point.count}` };
    return { ok: true, value: point.count === 1 ? bits[0]! : bits };
  }
  const registers = data as readonly number[];
  const per = registersPerValue(point);
  if (registers.length < per * point.count) return { ok: false, error: `${registers.length} registers in the response; expected ${per * point.count}` };
  const values: Array<number | boolean> = [];
  for (let i = 0; i < point.count; i++) {
    const one = decodeOne(registers.slice(i * per, (i + 1) * per), point);
    if (!one.ok) return one;
    if (point.count === 1) return one;
    values.push(one.value as number | boolean);
  }
  return { ok: true, value: values };
}

const RANGES: Record<string, [number, number]> = {
  int16: [-32768, 32767], uint16: [0, 65535], int32: [-2147483648, 2147483647], uint32: [0, 4294967295],
  float32: [-3.4028234663852886e38, 3.4028234663852886e38], float64: [-Number.MAX_VALUE, Number.MAX_VALUE],
};

export type Encoded =
  | { ok: true; kind: 'bits'; bits: boolean[] }
  | { ok: true; kind: 'registers'; registers: number[] }
  | { ok: false; code: 'invalid_value' | 'out_of_range'; error: string };

type WritableShape = PointShape & Pick<ModbusPointConfig, 'min' | 'max'>;

function encodeOne(value: unknown, point: WritableShape): Encoded {
  const per = registersPerValue(point);
  const bytes = Buffer.alloc(per * 2);
  if (point.type === 'string') {
    if (typeof value !== 'string') return { ok: false, code: 'invalid_value', error: 'must be a string' };
    const text = Buffer.from(value, 'latin1');
    if (text.toString('latin1') !== value) return { ok: false, code: 'invalid_value', error: 'has characters outside Latin-1' };
    if (text.length > (point.length ?? 0)) return { ok: false, code: 'out_of_range', error: `is ${text.length} bytes long; the point holds ${point.length}` };
    text.copy(bytes);
  } else {
    if (typeof value !== 'number' || !Number.isFinite(value)) return { ok: false, code: 'invalid_value', error: `must be a number (${point.type})` };
    if (point.min !== undefined && value < point.min) return { ok: false, code: 'out_of_range', error: `${value} is below the point's min ${point.min}` };
    if (point.max !== undefined && value > point.max) return { ok: false, code: 'out_of_range', error: `${value} is above the point's max ${point.max}` };
    let raw = (value - point.offset) / point.scale;
    const integer = point.type !== 'float32' && point.type !== 'float64';
    if (integer) {
      const rounded = Math.round(raw);
      if (Math.abs(raw - rounded) > 1e-6 * Math.max(1, Math.abs(rounded))) {
        return { ok: false, code: 'invalid_value', error: `${value} is not representable: the point stores whole steps of ${point.scale}` };
      }
      raw = rounded;
    }
    const [low, high] = RANGES[point.type]!;
    if (raw < low || raw > high) return { ok: false, code: 'out_of_range', error: `${value} is outside what ${point.type} holds` };
    switch (point.type) {
      case 'int16': bytes.writeInt16BE(raw, 0); break;
      case 'uint16': bytes.writeUInt16BE(raw, 0); break;
      case 'int32': bytes.writeInt32BE(raw, 0); break;
      case 'uint32': bytes.writeUInt32BE(raw, 0); break;
      case 'float32': bytes.writeFloatBE(raw, 0); break;
      case 'float64': bytes.writeDoubleBE(raw, 0); break;
      default: return { ok: false, code: 'invalid_value', error: `type ${point.type} cannot be written` };
    }
  }
  // The inverse of valueBytes: big-endian bytes back into registers in the point's orders.
  const registers: number[] = [];
  for (let i = 0; i < per; i++) registers.push(point.byteOrder === 'little' ? bytes.readUInt16LE(i * 2) : bytes.readUInt16BE(i * 2));
  return { ok: true, kind: 'registers', registers: point.wordOrder === 'little' ? registers.reverse() : registers };
}

/** What to write for `value`: bits (coils) or registers (holding), or why it cannot be written. */
export function encodePoint(point: WritableShape, value: unknown): Encoded {
  const values = point.count === 1 ? [value] : value;
  if (!Array.isArray(values) || values.length !== point.count) {
    return { ok: false, code: 'invalid_value', error: `must be an array of ${point.count} values` };
  }
  if (point.function === 'coil') {
    const bits: boolean[] = [];
    for (const v of values) {
      if (typeof v === 'boolean') bits.push(v);
      else if (v === 0 || v === 1) bits.push(v === 1);
      else return { ok: false, code: 'invalid_value', error: 'must be true or false (or 1 or 0)' };
    }
    return { ok: true, kind: 'bits', bits };
  }
  if (point.type === 'bit') return { ok: false, code: 'invalid_value', error: 'a bit inside a register cannot be written on its own' };
  const registers: number[] = [];
  for (const v of values) {
    const one = encodeOne(v, point);
    if (!one.ok) return one;
    if (one.kind === 'registers') registers.push(...one.registers);
  }
  return { ok: true, kind: 'registers', registers };
}
