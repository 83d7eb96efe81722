/**
 * What src/ingest/modbus relies on in modbus-serial beyond its typings: a port object of our own
 * (rtu-line.ts) driven through open/write and its events, with the transaction ids kept on the
 * port; the errors translateFault() tells apart; and the TCP port's buffer of a response not yet
 * complete. Checked against the real library, with a scripted port and a TCP server on a free
 * loopback port.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import ModbusSerial from 'modbus-serial';
import type { ModbusRTU } from 'modbus-serial/ModbusRTU.js';
import { translateFault } from '../../src/ingest/modbus/connection.js';
import { internal, until, versions, within } from './internal.js';

const ModbusClient = ModbusSerial as unknown as typeof ModbusRTU;

function crc16(bytes: Buffer): Buffer {
  let crc = 0xffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  const out = Buffer.alloc(2);
  out.writeUInt16LE(crc);
  return out;
}

const withCrc = (bytes: number[]): Buffer => Buffer.concat([Buffer.from(bytes), crc16(Buffer.from(bytes))]);

/** A port as RtuLine is one: open/close/write/isOpen and 'data', 'error', 'close' events; answers each request as told. */
class ScriptedPort extends EventEmitter {
  isOpen = false;
  readonly written: Buffer[] = [];
  answer: (request: Buffer) => Buffer | undefined = () => undefined;
  _transactionIdRead?: number;
  _transactionIdWrite?: number;

  open(callback: (err?: Error | null) => void): void {
    this.isOpen = true;
    callback(null);
  }

  close(callback?: () => void): void {
    this.isOpen = false;
    this.emit('close');
    callback?.();
  }

  write(data: Buffer): void {
    this.written.push(data);
    const response = this.answer(data);
    if (response !== undefined) setImmediate(() => this.emit('data', response));
  }
}

async function openClient(): Promise<{ client: ModbusRTU; port: ScriptedPort }> {
  const port = new ScriptedPort();
  const client = new ModbusClient(port as never);
  await new Promise<void>((resolve, reject) => client.open((err: unknown) => (err ? reject(err as Error) : resolve())));
  client.setTimeout(300);
  return { client, port };
}

/** FC 3 for one register; resolves with the data or the error modbus-serial gave. */
function readRegister(client: ModbusRTU): Promise<{ data?: number[]; err?: unknown }> {
  return new Promise((resolve) => {
    client.writeFC3(1, 0, 1, (err: unknown, result: { data: number[] } | undefined) => resolve(err ? { err } : { data: result?.data ?? [] }));
  });
}

describe('modbus-serial internals', () => {
  test('modbus-serial is pinned: package.json names the exact version installed', () => {
    const { installed, wanted } = versions('modbus-serial');
    assert.equal(wanted, installed, 'src/ingest/modbus relies on modbus-serial internals: pin it exactly and rerun test/internals on an upgrade');
  });

  test('a port of our own: driven through open/write and its data event, transaction ids kept on the port', async () => {
    await internal('modbus-serial', 'the port contract (open, write, isOpen, data/error/close events, port._transactionIdRead/_transactionIdWrite)', 'src/ingest/modbus/rtu-line.ts RtuLine', async () => {
      const { client, port } = await openClient();
      assert.equal(port._transactionIdRead, 1, 'open() did not set _transactionIdRead on the port');
      assert.equal(port._transactionIdWrite, 1, 'open() did not set _transactionIdWrite on the port');
      port.answer = () => withCrc([1, 3, 2, 0x01, 0x2c]);
      const answer = await within(readRegister(client), 'the answer');
      assert.deepEqual(answer.data, [300], `the answer was not read: ${String(answer.err)}`);
      assert.deepEqual([...port.written[0]!], [...withCrc([1, 3, 0, 0, 0, 1])], 'the request was not written to the port as one RTU frame');
      // A read id the client did not write under: the answer is not matched to the request.
      port._transactionIdRead = 9;
      const unmatched = await within(readRegister(client), 'the time-out');
      assert.ok(unmatched.err !== undefined, 'an answer was matched although the port\'s read id named no transaction');
      client.close(() => {});
    });
  });

  test('the errors translateFault() tells apart: exception, CRC, data length, another answer, time-out, port not open', async () => {
    await internal('modbus-serial', 'its error names, messages and modbusCode', 'src/ingest/modbus/connection.ts translateFault()', async () => {
      const { client, port } = await openClient();
      const cases: Array<[string, Buffer | undefined]> = [
        ['exception', withCrc([1, 0x83, 2])],
        ['crc', Buffer.from([1, 3, 2, 0x01, 0x2c, 0, 0])],
        ['bad_length', withCrc([1, 3, 4, 0, 1, 0, 2])],
        ['unexpected', withCrc([2, 3, 2, 0x01, 0x2c])],
        ['timeout', undefined],
      ];
      for (const [reason, response] of cases) {
        port.answer = () => response;
        const answer = await within(readRegister(client), `the answer for ${reason}`);
        assert.ok(answer.err !== undefined, `${reason}: no error`);
        assert.equal(translateFault(answer.err).reason, reason, `${reason}: got ${translateFault(answer.err).reason} from ${JSON.stringify(answer.err, Object.getOwnPropertyNames(answer.err as object))}`);
      }
      await new Promise<void>((resolve) => client.close(() => resolve()));
      const closed = await readRegister(client);
      assert.equal(translateFault(closed.err).reason, 'not_open');
    });
  });

  test('the TCP port holds the bytes of an unfinished response in _port._clientRcvData', async () => {
    const sockets: Socket[] = [];
    // Answers every request with the MBAP header of a 5-byte PDU and just one byte of it.
    const server = createServer((socket) => {
      sockets.push(socket);
      socket.on('data', (request: Buffer) => socket.write(Buffer.concat([request.subarray(0, 4), Buffer.from([0, 5, 1, 3])])));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const client = new ModbusClient();
    try {
      await client.connectTCP('127.0.0.1', { port: (server.address() as { port: number }).port });
      client.setTimeout(10_000);
      void readRegister(client);
      await internal('modbus-serial', 'TcpPort._clientRcvData', 'src/ingest/modbus/connection.ts heldBytes()', async () => {
        const held = (): unknown => (client as unknown as { _port?: { _clientRcvData?: unknown } })._port?._clientRcvData;
        await until(() => Buffer.isBuffer(held()) && (held() as Buffer).length > 0, 'the partial response in _clientRcvData');
        assert.equal((held() as Buffer).length, 8, 'not the 8 bytes of the unfinished response');
      });
    } finally {
      client.destroy(() => {});
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });
});
