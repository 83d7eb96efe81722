/**
 * MQTT 3.1.1 packets as bytes, for a test client that decides itself when (and whether) it
 * acknowledges: SUBSCRIBE, PUBACK, and a reader of the PUBLISH packets a broker sends. The
 * encoding of lengths and strings is the one helpers.ts builds its CONNECT and PUBLISH with.
 */

export interface RawPublish {
  topic: string;
  qos: number;
  messageId: number | undefined;
  payload: Buffer;
  dup: boolean;
}

/** MQTT's variable-length "remaining length" (1-4 bytes, 7 bits each, low first). */
export function remainingLength(n: number): Buffer {
  const bytes: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    bytes.push(byte);
  } while (n > 0);
  return Buffer.from(bytes);
}

function withLength(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), remainingLength(body.length), body]);
}

/** An MQTT UTF-8 string: two bytes of length, then the bytes. */
export function str(text: string): Buffer {
  const body = Buffer.from(text);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(body.length);
  return Buffer.concat([len, body]);
}

export function subscribePacket(filter: string, qos: 0 | 1 | 2, messageId = 1): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(messageId);
  return withLength(0x82, Buffer.concat([id, str(filter), Buffer.from([qos])]));
}

export function pubackPacket(messageId: number): Buffer {
  return Buffer.from([0x40, 0x02, messageId >> 8, messageId & 0xff]);
}

/** Every PUBLISH in `bytes` (a whole stream from its start); other packets are skipped. */
export function publishesIn(bytes: Buffer): RawPublish[] {
  const out: RawPublish[] = [];
  let at = 0;
  while (at < bytes.length) {
    const first = bytes[at]!;
    let length = 0;
    let multiplier = 1;
    let i = at + 1;
    for (;;) {
      if (i >= bytes.length) return out;
      const byte = bytes[i++]!;
      length += (byte & 0x7f) * multiplier;
      multiplier *= 128;
      if ((byte & 0x80) === 0) break;
    }
    if (i + length > bytes.length) return out;
    const body = bytes.subarray(i, i + length);
    if (first >> 4 === 3) {
      const qos = (first >> 1) & 3;
      const topicLength = body.readUInt16BE(0);
      const topic = body.subarray(2, 2 + topicLength).toString();
      const messageId = qos > 0 ? body.readUInt16BE(2 + topicLength) : undefined;
      out.push({ topic, qos, messageId, payload: Buffer.from(body.subarray(2 + topicLength + (qos > 0 ? 2 : 0))), dup: (first & 0x08) !== 0 });
    }
    at = i + length;
  }
  return out;
}
