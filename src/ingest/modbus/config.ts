/**
 * The `modbus:` section of the config as this module reads it: the output of `ModbusSchema`
 * (config/modbus-schema.ts), declared here structurally because ingest may not import config. The
 * tests assign the schema's output to these types, so the type check fails if the two drift apart.
 * Durations are in ms.
 */
export type ModbusFunction = 'coil' | 'discrete' | 'holding' | 'input';
export type ModbusType = 'bit' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32' | 'float64' | 'string';
export type Order = 'big' | 'little';

export interface ReportByException {
  /** A number is reported when it moved more than this from the last reported value. */
  deadband: number;
  /** A value is reported at least this often (ms), changed or not. */
  heartbeat: number;
}

export interface ModbusPointConfig {
  /** `{point}` in topics; the name a command uses. */
  name: string;
  function: ModbusFunction;
  /** The first coil or register, from 0 (as on the wire). */
  address: number;
  type: ModbusType;
  /** Values read as one reading (an array when more than one); strings: always 1. */
  count: number;
  /** For type string: its length in bytes (two a register). */
  length?: number | undefined;
  /** For type bit on a register: which bit, 0 the least significant. */
  bit?: number | undefined;
  /** Within each register: big = the high byte first (the Modbus standard). */
  byteOrder: Order;
  /** Across the registers of one value: big = the most significant register first. */
  wordOrder: Order;
  /** value = raw * scale + offset (numbers only). */
  scale: number;
  offset: number;
  unit?: string | undefined;
  /** ms between polls. */
  interval: number;
  reportByException?: ReportByException | undefined;
  /** Commands may write it (coils and holding registers only). */
  writable: boolean;
  /** Limits of a written value, in engineering units (after scale and offset). */
  min?: number | undefined;
  max?: number | undefined;
}

export interface ModbusDeviceConfig {
  /** `{device}` in topics. */
  name: string;
  unitId: number;
  points: ModbusPointConfig[];
}

export interface Rs485Config {
  /** The adapter hears its own transmission: the request's bytes come back first and are skipped. */
  echo: boolean;
}

export interface ModbusRtuConfig {
  path: string;
  baudRate: number;
  dataBits: 7 | 8;
  parity: 'none' | 'even' | 'odd';
  stopBits: 1 | 2;
  rs485: Rs485Config;
}

export interface ModbusTcpConfig {
  host: string;
  port: number;
  /** ms a connection attempt may take. */
  connectTimeout: number;
}

export interface ModbusBusConfig {
  /** `{bus}` in topics; the name a command uses. */
  name: string;
  rtu?: ModbusRtuConfig | undefined;
  tcp?: ModbusTcpConfig | undefined;
  /** ms to wait for a response. */
  timeout: number;
  /** Attempts after the first for a request that got no valid response. */
  retries: number;
  /** ms of silence between a response and the next request; undefined: 3.5 characters (RTU, at least 1.75 ms), 0 (TCP). */
  interFrameDelay?: number | undefined;
  /** RTU: ms the line is left quiet after a timeout, for a late answer to land and be dropped; undefined: the timeout. */
  lateWindow?: number | undefined;
  /** Polls of a device that stopped answering: the first after `offlineBackoff.base` ms, doubling up to `cap`. */
  offlineBackoff: { base: number; cap: number };
  /** Topic template: {bus}, {device}, {point}, {unitId}. */
  topic: string;
  devices: ModbusDeviceConfig[];
}

export interface ModbusConfig {
  buses: ModbusBusConfig[];
}

/** Registers (or bits, for coils and discrete inputs) one read of the point covers. */
export function quantityOf(point: Pick<ModbusPointConfig, 'function' | 'type' | 'count' | 'length'>): number {
  if (point.function === 'coil' || point.function === 'discrete') return point.count;
  return registersPerValue(point) * point.count;
}

export function registersPerValue(point: Pick<ModbusPointConfig, 'type' | 'length'>): number {
  switch (point.type) {
    case 'bit':
    case 'int16':
    case 'uint16':
      return 1;
    case 'int32':
    case 'uint32':
    case 'float32':
      return 2;
    case 'float64':
      return 4;
    case 'string':
      return Math.ceil((point.length ?? 2) / 2);
  }
}
