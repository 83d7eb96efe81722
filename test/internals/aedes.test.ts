/**
 * The private parts and unwritten behaviour of aedes that src/ingest/mqtt reads or patches, each
 * checked against the real broker (on a free loopback port) with real MQTT clients.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Aedes, type AedesPublishPacket, type Client, type ConnectPacket, type PublishPacket } from 'aedes';
import mqtt from 'mqtt';
import { connectPacket, publishPacket, rawClient } from '../ingest/mqtt/helpers.js';
import { internal, librarySource, until, versions, within } from './internal.js';

type ClientInternals = Client & { _nextId: number; subscriptions: Record<string, { qos: number }>; closed: boolean; clean: boolean };
interface Persistence {
  outgoingClearMessageId: (client: Client, packet: { messageId?: number }) => Promise<unknown>;
  incomingGetPacket: (client: Client, packet: { messageId?: number }) => Promise<unknown>;
}

let broker: Aedes;
let server: Server;
let port: number;
/** The server side of each connection, in the order accepted. */
const sockets: Socket[] = [];
const wills = new Map<string, unknown>();
const authorized: Array<{ clientId: string; packet: PublishPacket }> = [];
/** What authorizeForward does to a packet on its way to a subscriber (set by a test). */
let forward: (client: Client, packet: AedesPublishPacket) => void = () => {};
const connectionErrors: string[] = [];

before(async () => {
  broker = await Aedes.createBroker({
    connectTimeout: 500,
    preConnect: (client, packet: ConnectPacket, callback) => {
      if (packet.will) wills.set(packet.clientId, packet.will);
      callback(null, true);
    },
    authorizePublish: (client, packet, callback) => {
      if (client !== null) authorized.push({ clientId: client.id, packet });
      callback(null);
    },
    authorizeForward: (client, packet) => {
      forward(client, packet);
      return packet;
    },
  });
  broker.on('connectionError', (_client, err) => connectionErrors.push(err.message));
  server = createServer((socket) => {
    sockets.push(socket);
    broker.handle(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  port = (server.address() as { port: number }).port;
});

after(async () => {
  await new Promise<void>((resolve) => broker.close(() => resolve()));
  server.close();
});

const clientsOf = (): Record<string, ClientInternals> => (broker as unknown as { clients: Record<string, ClientInternals> }).clients;
const persistenceOf = (): Persistence => (broker as unknown as { persistence: Persistence }).persistence;

async function connect(clientId: string, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId, reconnectPeriod: 0, ...options });
}

describe('aedes internals', () => {
  test('aedes is pinned: package.json names the exact version installed', () => {
    const { installed, wanted } = versions('aedes');
    assert.equal(wanted, installed, 'src/ingest/mqtt reads aedes internals: pin aedes exactly and rerun test/internals on an upgrade');
  });

  test('Aedes.clients, Client.subscriptions, Client.clean, Client.closed', async () => {
    const device = await connect('internals-sub', { clean: false });
    await device.subscribeAsync('cmd/#', { qos: 1 });
    await internal('aedes', 'Aedes.clients, Client.subscriptions, Client.clean, Client.closed', 'src/ingest/mqtt/commands.ts publish()', async () => {
      const client = clientsOf()['internals-sub'];
      assert.ok(client !== undefined, 'broker.clients has no entry by client id');
      assert.equal(client.id, 'internals-sub');
      assert.equal(client.subscriptions['cmd/#']?.qos, 1, 'client.subscriptions does not map the filter to its granted qos');
      assert.equal(client.clean, false, 'client.clean is not false for a persistent session');
      assert.equal(client.closed, false, 'client.closed is not false while connected');
      const gone = new Promise<void>((resolve) => broker.once('clientDisconnect', () => resolve()));
      await device.endAsync();
      await within(gone, 'clientDisconnect');
      assert.equal(client.closed, true, 'client.closed is not true once disconnected');
    });
  });

  test('Client._nextId: the packet id QoSPacket takes next, 1 to 65535; an id the packet has already is kept', async () => {
    const device = await connect('internals-ids');
    await device.subscribeAsync('cmd/#', { qos: 1 });
    const ids: number[] = [];
    device.on('packetreceive', (packet) => { if (packet.cmd === 'publish') ids.push(packet.messageId ?? -1); });
    try {
      await internal('aedes', 'Client._nextId and QoSPacket numbering', 'src/ingest/mqtt/commands.ts forward()', async () => {
        const client = clientsOf()['internals-ids']!;
        assert.equal(typeof client._nextId, 'number', 'client._nextId is not a number');
        assert.ok(client._nextId >= 1 && client._nextId <= 65535, `client._nextId is ${client._nextId}`);
        const first = client._nextId;
        const delivered = (): Promise<void> => new Promise((resolve, reject) => {
          client.publish({ cmd: 'publish', topic: 'cmd/a', payload: Buffer.from('x'), qos: 1, retain: false, dup: false } as PublishPacket, (err?: Error) => (err ? reject(err) : resolve()));
        });
        await delivered();
        await until(() => ids.length === 1, 'the first command at the device');
        assert.equal(ids[0], first, 'the packet id is not the client\'s _nextId');
        assert.equal(client._nextId, first >= 65535 ? 1 : first + 1, '_nextId did not move on by one');
        // commands.ts numbers the packet itself in authorizeForward; QoSPacket must keep that id.
        forward = (_client, packet) => { packet.messageId = 4242; };
        await delivered();
        await until(() => ids.length === 2, 'the second command at the device');
        assert.equal(ids[1], 4242, 'an id set in authorizeForward was not kept');
        assert.equal(client._nextId, first >= 65535 ? 1 : first + 1, '_nextId moved although the packet had an id');
      });
    } finally {
      forward = () => {};
      await device.endAsync();
    }
  });

  test('authorizeForward sees the payload buffer given to Client.publish, the same object', async () => {
    const device = await connect('internals-payload');
    await device.subscribeAsync('cmd/#', { qos: 1 });
    const seen: unknown[] = [];
    forward = (_client, packet) => { seen.push(packet.payload); };
    try {
      await internal('aedes', 'the payload passed along unchanged to authorizeForward', 'src/ingest/mqtt/commands.ts (commands known by the identity of their payload)', async () => {
        const payload = Buffer.from('command');
        const client = clientsOf()['internals-payload']!;
        await new Promise<void>((resolve, reject) => client.publish({ cmd: 'publish', topic: 'cmd/b', payload, qos: 1, retain: false, dup: false } as PublishPacket, (err?: Error) => (err ? reject(err) : resolve())));
        assert.equal(seen.length, 1);
        assert.ok(seen[0] === payload, 'authorizeForward got another buffer');
      });
    } finally {
      forward = () => {};
      await device.endAsync();
    }
  });

  test('persistence.outgoingClearMessageId: called with the packet id for every PUBACK and PUBCOMP, clean session or not', async () => {
    const persistence = persistenceOf();
    const cleared: Array<{ clientId: string; messageId: number | undefined }> = [];
    const original = persistence.outgoingClearMessageId;
    await internal('aedes', 'persistence.outgoingClearMessageId', 'src/ingest/mqtt/commands.ts attach() (how a confirmation is seen)', async () => {
      assert.equal(typeof original, 'function', 'broker.persistence.outgoingClearMessageId is missing');
      const clear = original.bind(persistence);
      persistence.outgoingClearMessageId = (client, packet) => {
        cleared.push({ clientId: client.id, messageId: packet.messageId });
        return clear(client, packet);
      };
      for (const clean of [true, false]) {
        const clientId = `internals-acks-${clean ? 'clean' : 'persistent'}`;
        const device = await connect(clientId, { clean });
        await device.subscribeAsync('cmd/#', { qos: 2 });
        const client = clientsOf()[clientId]!;
        try {
          for (const qos of [1, 2] as const) {
            const id = client._nextId;
            await new Promise<void>((resolve, reject) => client.publish({ cmd: 'publish', topic: 'cmd/c', payload: Buffer.from('x'), qos, retain: false, dup: false } as PublishPacket, (err?: Error) => (err ? reject(err) : resolve())));
            await until(() => cleared.some((c) => c.clientId === clientId && c.messageId === id), `the clear for the QoS ${qos} confirmation (clean: ${clean})`);
          }
          await device.endAsync();
          assert.equal(cleared.filter((c) => c.clientId === clientId).length, 2, `called other than once per PUBACK and PUBCOMP (clean: ${clean})`);
        } finally {
          await device.endAsync();
        }
      }
    });
    persistence.outgoingClearMessageId = original;
  });

  test('persistence.incomingGetPacket: holds a QoS 2 publish from its PUBREC until the PUBREL', async () => {
    const raw = await rawClient(port);
    try {
      raw.socket.write(connectPacket('internals-q2'));
      await raw.waitFor(Buffer.from([0x20, 0x02, 0x00, 0x00]));
      raw.socket.write(publishPacket('sensor/q2', 'x', 2, 7));
      await raw.waitFor(Buffer.from([0x50, 0x02, 0x00, 0x07]));
      await internal('aedes', 'persistence.incomingGetPacket', 'src/ingest/mqtt/broker.ts heldByBroker() (QoS 2 retransmissions)', async () => {
        const persistence = persistenceOf();
        assert.equal(typeof persistence.incomingGetPacket, 'function', 'broker.persistence.incomingGetPacket is missing');
        const client = clientsOf()['internals-q2']!;
        await persistence.incomingGetPacket(client, { messageId: 7 });
        await assert.rejects(persistence.incomingGetPacket(client, { messageId: 8 }), 'a packet id never sent is found');
      });
    } finally {
      raw.socket.destroy();
    }
  });

  test('the stream given to handle() gets its client as `.client`', async () => {
    const before = sockets.length;
    const device = await connect('internals-conn');
    try {
      await internal('aedes', 'conn.client', 'src/ingest/mqtt/mqtt-ingest.ts #onFrameProblem()', () => {
        const socket = sockets[before] as Socket & { client?: Client };
        assert.ok(socket.client === clientsOf()['internals-conn'], 'the connection stream has no .client, or another one');
      });
    } finally {
      await device.endAsync();
    }
  });

  test('a will is authorized with the very object the CONNECT carried', async () => {
    const device = await connect('internals-will', { will: { topic: 'sensor/will', payload: Buffer.from('gone'), qos: 1, retain: false } });
    const socket = sockets.at(-1)!;
    await internal('aedes', 'the will packet object', 'src/ingest/mqtt/sessions.ts isWill()', async () => {
      const will = wills.get('internals-will');
      assert.ok(will !== undefined, 'preConnect got no will');
      // The connection drops without DISCONNECT: aedes publishes the will.
      socket.destroy();
      await until(() => authorized.some((a) => a.clientId === 'internals-will'), 'the will to be authorized');
      const published = authorized.find((a) => a.clientId === 'internals-will')!;
      assert.equal(published.packet.topic, 'sensor/will');
      assert.ok(published.packet === will, 'authorizePublish got a copy of the will, not the object preConnect saw');
    });
    device.end(true);
  });

  test('the messages of the client errors classifyClientError counts as a connection gone', async () => {
    await internal('aedes', "error messages ('connect did not arrive in time', 'keep alive timeout', 'drain timeout', 'connection closed', 'Client queue limit reached')", 'src/ingest/mqtt/client-errors.ts GONE', async () => {
      const client = librarySource('aedes', 'lib/client.js');
      const connect = librarySource('aedes', 'lib/handlers/connect.js');
      for (const message of ['connect did not arrive in time', 'drain timeout', 'connection closed', 'Client queue limit reached']) {
        assert.ok(client.includes(`new Error('${message}`), `lib/client.js raises no Error('${message}')`);
      }
      assert.ok(connect.includes("new Error('keep alive timeout')"), "lib/handlers/connect.js raises no Error('keep alive timeout')");
      // And one for real: a socket that never sends CONNECT.
      const raw = await rawClient(port);
      try {
        await until(() => connectionErrors.some((m) => m.startsWith('connect did not arrive in time')), 'the connect timeout error');
      } finally {
        raw.socket.destroy();
      }
    });
  });
});
