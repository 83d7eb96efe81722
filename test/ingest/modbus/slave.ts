/**
 * The pymodbus slave (test/peers/modbus_slave.py) as a child process the tests drive: serving RTU
 * on a pty or TCP on a free loopback port, with commands to set and read its values, mute a unit
 * (no answer at all), make a unit answer with an exception, and count the requests it got.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../peers/modbus_slave.py', import.meta.url));
const PYTHON = '/usr/bin/python3';

export type Table = 'co' | 'di' | 'hr' | 'ir';

export interface Slave {
  /** TCP port (TCP slaves). */
  port: number;
  set(unit: number, table: Table, address: number, values: number[]): Promise<void>;
  get(unit: number, table: Table, address: number, count: number): Promise<number[]>;
  mute(unit: number): Promise<void>;
  /** The unit answers requests of `functions` (all when omitted) with exception `code`; 0 ends it. */
  exception(unit: number, code: number, functions?: number[]): Promise<void>;
  unmute(unit: number): Promise<void>;
  /** Requests decoded so far, in total and per unit id. */
  requests(): Promise<{ total: number; byUnit: Record<string, number> }>;
  /** Kills the process (SIGKILL) and waits for it. */
  kill(): Promise<void>;
  exited: Promise<void>;
}

export async function startSlave(options: { rtu?: string; baud?: number; tcpPort?: number; units: number[] }): Promise<Slave> {
  const args = [SCRIPT, '--units', options.units.join(',')];
  if (options.rtu !== undefined) args.push('--rtu', options.rtu, '--baud', String(options.baud ?? 115200));
  else args.push('--tcp', String(options.tcpPort ?? 0));
  const child: ChildProcess = spawn(PYTHON, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  const answers = new Map<number, (answer: Record<string, unknown>) => void>();
  let ready: ((port: number) => void) | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const message = JSON.parse(line) as Record<string, unknown>;
    if (message.ready === true) ready?.(Number(message.port ?? 0));
    else answers.get(Number(message.id))?.(message);
  });
  const port = await new Promise<number>((resolve, reject) => {
    ready = resolve;
    void exited.then(() => reject(new Error(`pymodbus slave exited before it was ready (is python3-pymodbus installed?)\n${stderr}`)));
    setTimeout(() => reject(new Error(`pymodbus slave not ready after 15 s\n${stderr}`)), 15_000).unref();
  });
  let nextId = 0;
  const send = (command: Record<string, unknown>): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
    const id = ++nextId;
    answers.set(id, (answer) => {
      answers.delete(id);
      if (typeof answer.error === 'string') reject(new Error(`pymodbus slave: ${answer.error}`));
      else resolve(answer);
    });
    child.stdin!.write(`${JSON.stringify({ ...command, id })}\n`);
  });
  return {
    port,
    exited,
    set: async (unit, table, address, values) => { await send({ op: 'set', unit, table, address, values }); },
    get: async (unit, table, address, count) => (await send({ op: 'get', unit, table, address, count })).values as number[],
    mute: async (unit) => { await send({ op: 'mute', unit }); },
    exception: async (unit, code, functions) => { await send({ op: 'exception', unit, code, ...(functions === undefined ? {} : { functions }) }); },
    unmute: async (unit) => { await send({ op: 'unmute', unit }); },
    requests: async () => {
      const answer = await send({ op: 'requests' });
      return { total: answer.requests as number, byUnit: answer.byUnit as Record<string, number> };
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
