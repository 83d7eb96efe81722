/**
 * The config of Modbus polling (`modbus:` in uplink.yaml): buses (a serial line with RS-485
 * settings, or a TCP host), the devices on each (unit ids), and the points to poll on each
 * device. Strict like the rest of the config: an unknown key is an error.
 *
 * Defaults follow the Modbus specifications: serial lines 19200 baud, 8 data bits, even parity,
 * 1 stop bit ("the default parity mode must be even"); TCP port 502; registers big-endian in both
 * byte and word order.
 */
import { z } from 'zod';
import { duration } from './duration.js';
import { topicTemplateProblem } from './serial-schema.js';

const name = (what: string): z.ZodString => z.string().regex(/^[A-Za-z0-9_.-]+$/, `must be letters, digits, _ . or - (it becomes {${what}} in topics)`);

const TOPIC_FIELDS = new Set(['bus', 'device', 'point', 'unitId']);

const topicTemplate = z.string().superRefine((value, ctx) => {
  const problem = topicTemplateProblem(value);
  if (problem !== undefined) {
    ctx.addIssue({ code: 'custom', message: `${problem} (a topic template such as factory/{bus}/{device}/{point})` });
    return;
  }
  for (const match of value.matchAll(/\{([^{}]*)\}/g)) {
    if (!TOPIC_FIELDS.has(match[1]!)) ctx.addIssue({ code: 'custom', message: `has {${match[1]}}; known are {bus}, {device}, {point} and {unitId}` });
  }
});

const ReportByExceptionSchema = z.strictObject({
  deadband: z.number().min(0, 'must be 0 or more').default(0)
    .describe('a number is reported when it moved more than this from the last reported value (engineering units)'),
  heartbeat: duration.default(60_000).describe('a value is reported at least this often, changed or not'),
});

/** A pause that may also be none. */
const delay = z.union([z.literal(0), duration], { error: 'must be 0 or a duration: seconds, or text such as 5ms, 2s or 1m' });

const order = z.enum(['big', 'little'], { error: 'must be big or little' }).default('big');

const REGISTERS: Record<string, number> = { bit: 1, int16: 1, uint16: 1, int32: 2, uint32: 2, float32: 2, float64: 4 };

const PointSchema = z.strictObject({
  name: name('point').describe('names the point in topics ({point}) and in commands'),
  function: z.enum(['coil', 'discrete', 'holding', 'input'], { error: 'must be coil, discrete, holding or input' })
    .describe('coil (read 1, write 5/15), discrete input (2), holding register (read 3, write 6/16), input register (4)'),
  address: z.number().int('must be an integer').min(0, 'must be from 0 to 65535').max(65535, 'must be from 0 to 65535')
    .describe('the first coil or register, from 0 as on the wire (register 40001 of the old notation is holding 0)'),
  type: z.enum(['bit', 'int16', 'uint16', 'int32', 'uint32', 'float32', 'float64', 'string'],
    { error: 'must be bit, int16, uint16, int32, uint32, float32, float64 or string' }).optional()
    .describe('bit for coils and discrete inputs (the default there); uint16 by default for registers'),
  count: z.number().int('must be an integer').min(1, 'must be at least 1').default(1)
    .describe('values read at once; more than 1 makes the value an array'),
  length: z.number().int('must be an integer').min(1, 'must be at least 1').max(250, 'must be at most 250').optional()
    .describe('for type string: its length in bytes, two a register'),
  bit: z.number().int('must be an integer').min(0, 'must be from 0 to 15').max(15, 'must be from 0 to 15').optional()
    .describe('for type bit on a register: which bit, 0 the least significant'),
  byteOrder: order.describe('within each register: big = high byte first (standard), little = swapped'),
  wordOrder: order.describe('across the registers of one value: big = most significant register first (standard)'),
  scale: z.number().refine((n) => n !== 0, 'must not be 0').default(1).describe('value = raw * scale + offset'),
  offset: z.number().default(0),
  unit: z.string().min(1).optional().describe('the unit of the value, sent in every reading (e.g. V, °C, kWh)'),
  interval: duration.optional().describe("time between polls; the device's interval when unset"),
  reportByException: z.union([ReportByExceptionSchema, z.literal(false)]).optional()
    .describe("report only changed values (and a heartbeat); false turns the device's setting off for this point"),
  writable: z.boolean().default(false).describe('commands may write it (coil and holding points only)'),
  min: z.number().optional().describe('the lowest value a command may write (engineering units)'),
  max: z.number().optional().describe('the highest value a command may write (engineering units)'),
}).transform((point, ctx) => {
  const isBits = point.function === 'coil' || point.function === 'discrete';
  const type = point.type ?? (isBits ? 'bit' : 'uint16');
  if (isBits && type !== 'bit') ctx.addIssue({ code: 'custom', path: ['type'], message: `must be bit for ${point.function} points` });
  if (type === 'string' && point.length === undefined) ctx.addIssue({ code: 'custom', path: ['length'], message: 'is required for type string' });
  if (type !== 'string' && point.length !== undefined) ctx.addIssue({ code: 'custom', path: ['length'], message: 'applies only to type string' });
  if (type === 'string' && point.count !== 1) ctx.addIssue({ code: 'custom', path: ['count'], message: 'must be 1 for type string' });
  if (point.bit !== undefined && (isBits || type !== 'bit')) ctx.addIssue({ code: 'custom', path: ['bit'], message: 'applies only to type bit on a register' });
  if (!isBits && type === 'bit' && point.bit === undefined) ctx.addIssue({ code: 'custom', path: ['bit'], message: 'is required for type bit on a register (0-15)' });
  const registers = type === 'string' ? Math.ceil((point.length ?? 2) / 2) : REGISTERS[type]! * point.count;
  // What one request may carry (Modbus application protocol, 6.1-6.4).
  if (isBits && point.count > 2000) ctx.addIssue({ code: 'custom', path: ['count'], message: 'must be at most 2000 bits (one request)' });
  if (!isBits && registers > 125) ctx.addIssue({ code: 'custom', path: ['count'], message: `needs ${registers} registers; one request reads at most 125` });
  if (point.address + (isBits ? point.count : registers) > 65536) ctx.addIssue({ code: 'custom', path: ['address'], message: 'the point runs past address 65535' });
  if (point.writable && (point.function === 'input' || point.function === 'discrete')) {
    ctx.addIssue({ code: 'custom', path: ['writable'], message: `${point.function} points can only be read` });
  }
  if (point.writable && !isBits && type === 'bit') ctx.addIssue({ code: 'custom', path: ['writable'], message: 'a bit inside a register cannot be written on its own' });
  if (point.min !== undefined && point.max !== undefined && point.min > point.max) ctx.addIssue({ code: 'custom', path: ['min'], message: 'must not be more than max' });
  return { ...point, type };
});

const DeviceSchema = z.strictObject({
  name: name('device').describe('names the device in topics ({device}) and in commands'),
  unitId: z.number().int('must be an integer').min(0, 'must be from 0 to 255').max(255, 'must be from 0 to 255')
    .describe('the slave address: 1-247 on a serial line; TCP devices often use 1 or 255'),
  interval: duration.default(1000).describe('time between polls of each point (points may set their own)'),
  reportByException: ReportByExceptionSchema.optional().describe('report only changed values, plus a heartbeat; for every point of the device'),
  points: z.array(PointSchema).min(1, 'must list at least one point'),
}).transform((device, ctx) => {
  const names = new Set<string>();
  device.points.forEach((point, i) => {
    if (names.has(point.name)) ctx.addIssue({ code: 'custom', path: ['points', i, 'name'], message: `is used twice on device ${device.name}` });
    names.add(point.name);
  });
  return {
    name: device.name,
    unitId: device.unitId,
    points: device.points.map(({ interval, reportByException, ...point }) => ({
      ...point,
      interval: interval ?? device.interval,
      reportByException: reportByException === false ? undefined : reportByException ?? device.reportByException,
    })),
  };
});

/**
 * The direction of an RS-485 line is switched by the adapter (USB adapters do it themselves) or
 * by the kernel's RS-485 mode (set up by the device tree for a UART with a transceiver), not by
 * the gateway: toggling RTS from user space cannot drop it within a character time (87 µs at
 * 115200 baud), and serialport has no call for the kernel's RS-485 settings.
 */
const Rs485Schema = z.strictObject({
  echo: z.boolean().default(false).describe('the adapter hears its own transmission (two-wire, no echo suppression): skip the request echoed back'),
});

const RtuSchema = z.strictObject({
  path: z.string().min(1, 'must be a device path such as /dev/ttyUSB0').describe('the serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...'),
  baudRate: z.number().int('must be an integer').positive('must be more than 0').default(19200),
  dataBits: z.union([z.literal(7), z.literal(8)], { error: 'must be 7 or 8' }).default(8),
  parity: z.enum(['none', 'even', 'odd'], { error: 'must be none, even or odd' }).default('even'),
  stopBits: z.union([z.literal(1), z.literal(2)], { error: 'must be 1 or 2' }).default(1),
  rs485: Rs485Schema.prefault({}),
});

const TcpSchema = z.strictObject({
  host: z.string().min(1, 'must not be empty'),
  port: z.number().int().min(1, 'must be a port from 1 to 65535').max(65535, 'must be a port from 1 to 65535').default(502),
  connectTimeout: duration.default(5000).describe('how long a connection attempt may take'),
});

export const ModbusBusSchema = z.strictObject({
  name: name('bus').describe('names the bus in logs, topics ({bus}) and commands'),
  rtu: RtuSchema.optional().describe('Modbus RTU on a serial line (RS-485 or RS-232)'),
  tcp: TcpSchema.optional().describe('Modbus TCP'),
  timeout: duration.default(1000).describe('how long to wait for each response'),
  retries: z.number().int('must be an integer').min(0, 'must be from 0 to 10').max(10, 'must be from 0 to 10').default(2)
    .describe('attempts after the first for a request without a valid answer; then the device is offline'),
  interFrameDelay: delay.optional()
    .describe('silence between a response and the next request; 3.5 characters (at least 1.75 ms) on RTU, 0 on TCP when unset'),
  lateWindow: delay.optional()
    .describe('RTU: after a timeout the line is left quiet this long before the next request, so that a late answer lands there and is dropped (RTU answers carry no transaction id: one arriving during the next request would be taken as its answer); the timeout when unset'),
  offlineBackoff: z.strictObject({
    base: duration.default(1000),
    cap: duration.default(60_000),
  }).refine((b) => b.base <= b.cap, { path: ['base'], error: (issue) => `must not be more than cap (${(issue.input as { cap: number }).cap} ms)` })
    .prefault({}).describe('an offline device is polled again after base, doubling up to cap'),
  topic: topicTemplate.default('factory/{bus}/{device}/{point}').describe('the topic of each reading: {bus}, {device}, {point}, {unitId}'),
  devices: z.array(DeviceSchema).min(1, 'must list at least one device'),
}).superRefine((bus, ctx) => {
  if ((bus.rtu === undefined) === (bus.tcp === undefined)) {
    ctx.addIssue({ code: 'custom', path: [], message: 'must have either rtu or tcp (not both)' });
  }
  const names = new Set<string>();
  const units = new Set<number>();
  bus.devices.forEach((device, i) => {
    if (names.has(device.name)) ctx.addIssue({ code: 'custom', path: ['devices', i, 'name'], message: `is used twice on bus ${bus.name}` });
    names.add(device.name);
    if (units.has(device.unitId)) ctx.addIssue({ code: 'custom', path: ['devices', i, 'unitId'], message: `is used twice on bus ${bus.name}` });
    units.add(device.unitId);
    if (bus.rtu !== undefined && (device.unitId < 1 || device.unitId > 247)) {
      ctx.addIssue({ code: 'custom', path: ['devices', i, 'unitId'], message: 'must be from 1 to 247 on a serial line' });
    }
  });
});

export const ModbusSchema = z.strictObject({
  buses: z.array(ModbusBusSchema).default([]),
}).superRefine((modbus, ctx) => {
  const names = new Set<string>();
  modbus.buses.forEach((bus, i) => {
    if (names.has(bus.name)) ctx.addIssue({ code: 'custom', path: ['buses', i, 'name'], message: 'is used by another bus' });
    names.add(bus.name);
  });
});

export type ModbusInput = z.input<typeof ModbusSchema>;
