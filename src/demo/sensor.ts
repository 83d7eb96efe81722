/**
 * A simulated temperature sensor for `uplink demo`: publishes a JSON reading with QoS 1 at a
 * fixed interval, as a real device would. It speaks the four MQTT 3.1.1 packets it needs
 * (CONNECT/CONNACK, PUBLISH QoS 1/PUBACK, DISCONNECT) itself over a TCP socket, so that a
 * production install carries no MQTT client library for the demo's sake. A publish counts as
 * acknowledged when its PUBACK comes: the gateway has the reading on disk.
 */
import { connect, type Socket } from 'node:net';

export class SimulatedSensor {
  readonly #host: string;
  readonly #port: number;
  readonly #topic: string;
  readonly #intervalMs: number;
  #socket: Socket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #published = 0;
  #acknowledged = 0;
  /** Packet ids sent and not acknowledged yet. */
  readonly #unacked = new Set<number>();
  #nextId = 1;
  /** Called when every publish so far is acknowledged (stop() waits for it). */
  #onSettled: (() => void) | undefined;

  constructor(options: { url: string; topic: string; intervalMs: number }) {
    const url = new URL(options.url);
    this.#host = url.hostname;
    this.#port = Number(url.port || 1883);
    this.#topic = options.topic;
    this.#intervalMs = options.intervalMs;
  }

  counts(): { published: number; acknowledged: number } {
    return { published: this.#published, acknowledged: this.#acknowledged };
  }

  async start(): Promise<void> {
    const socket = connect({ host: this.#host, port: this.#port });
    this.#socket = socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      const packets = new PacketReader((type, body) => {
        if (type === CONNACK) {
          if (body[1] === 0) resolve();
          else reject(new Error(`the gateway refused the sensor (CONNACK ${body[1]})`));
        } else if (type === PUBACK) {
          this.#acked(body.readUInt16BE(0));
        }
      });
      socket.on('data', (chunk: Buffer) => packets.push(chunk));
      socket.once('connect', () => socket.write(connectPacket('demo-sensor-line1')));
    });
    socket.on('error', () => { /* the demo's counts show what was not acknowledged */ });
    let t = 21;
    this.#timer = setInterval(() => {
      t += (Math.random() - 0.5) * 0.4;
      this.#published += 1;
      const payload = JSON.stringify({ celsius: Number(t.toFixed(2)), seq: this.#published, at: new Date().toISOString() });
      const id = this.#nextId;
      this.#nextId = id >= 65535 ? 1 : id + 1;
      this.#unacked.add(id);
      socket.write(publishPacket(this.#topic, Buffer.from(payload), id));
    }, this.#intervalMs);
  }

  /** Stops publishing and waits (10 s at most) until every publish is acknowledged (on disk at the gateway). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    const socket = this.#socket;
    if (socket === undefined) return;
    this.#socket = undefined;
    if (this.#unacked.size > 0 && !socket.destroyed) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#onSettled = resolve;
        timer = setTimeout(resolve, 10_000);
        socket.once('close', resolve);
      });
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => {
      if (socket.destroyed) {
        resolve();
        return;
      }
      socket.once('close', () => resolve());
      socket.end(Buffer.from([DISCONNECT << 4, 0]));
    });
  }

  #acked(id: number): void {
    if (!this.#unacked.delete(id)) return;
    this.#acknowledged += 1;
    if (this.#unacked.size === 0) this.#onSettled?.();
  }
}

const CONNECT = 1;
const CONNACK = 2;
const PUBLISH = 3;
const PUBACK = 4;
const DISCONNECT = 14;

/** A packet: its fixed header (type and flags, then the remaining length, 7 bits a byte) and body. */
function packet(first: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const length: number[] = [];
  let n = body.length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    length.push(byte);
  } while (n > 0);
  return Buffer.concat([Buffer.from([first, ...length]), body]);
}

/** A UTF-8 string with its 2-byte length. */
function string(text: string | Buffer): Buffer {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** CONNECT, MQTT 3.1.1, clean session, keep-alive off (the demo runs on one machine). */
function connectPacket(clientId: string): Buffer {
  return packet(CONNECT << 4, string('MQTT'), Buffer.from([4, 0x02]), u16(0), string(clientId));
}

/** PUBLISH at QoS 1 (flags 0b0010). */
function publishPacket(topic: string, payload: Buffer, id: number): Buffer {
  return packet((PUBLISH << 4) | 0x02, string(topic), u16(id), payload);
}

/** Splits the bytes from the gateway into packets, however the reads cut them. */
class PacketReader {
  readonly #onPacket: (type: number, body: Buffer) => void;
  #buffered = Buffer.alloc(0);

  constructor(onPacket: (type: number, body: Buffer) => void) {
    this.#onPacket = onPacket;
  }

  push(chunk: Buffer): void {
    this.#buffered = Buffer.concat([this.#buffered, chunk]);
    for (;;) {
      const buffered = this.#buffered;
      let length = 0;
      let multiplier = 1;
      let offset = 1;
      for (;;) {
        if (offset >= buffered.length) return;
        const byte = buffered[offset]!;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        offset += 1;
        if ((byte & 0x80) === 0) break;
      }
      if (buffered.length < offset + length) return;
      this.#onPacket(buffered[0]! >> 4, buffered.subarray(offset, offset + length));
      this.#buffered = buffered.subarray(offset + length);
    }
  }
}
