/**
 * Packet limits enforced on the raw bytes, before aedes' parser buffers anything.
 *
 * aedes (via mqtt-packet) has no maximum packet size: it collects a packet's bytes until the
 * whole packet is there, so a client declaring a 20 MiB publish makes the broker hold 20 MiB.
 * This guard walks the byte stream alongside: it reads each fixed header (type, flags, remaining
 * length) and, for PUBLISH, the 2-byte topic length, and skips over the rest arithmetically
 * without keeping any of it. A packet over the limits is refused as soon as its header (at most
 * 7 bytes) has arrived; the connection is then closed without handing that chunk to the parser.
 *
 * Checks (MQTT 3.1.1 section 2):
 * - the first packet is CONNECT; the type is 1-14; reserved flag bits are as table 2.2 says;
 *   PUBLISH has no QoS 3; the remaining length takes at most 4 bytes: else `malformed`;
 * - PUBLISH: topic length <= maxTopicLength (`topic_too_long`), payload <= maxPayload
 *   (`too_large`); other packets: <= maxPayload + maxTopicLength + 8 KiB (CONNECT carries a will
 *   payload and credentials; SUBSCRIBE a list of filters); acks exactly 2 bytes, PINGREQ and
 *   DISCONNECT none.
 */
export type FrameReason = 'malformed' | 'too_large' | 'topic_too_long';

export interface FrameProblem {
  reason: FrameReason;
  detail: string;
}

export interface FrameLimits {
  maxPayload: number;
  maxTopicLength: number;
}

const CONNECT = 1;
const PUBLISH = 3;
const CONTROL_OVERHEAD = 8 * 1024;
const NAMES = ['reserved', 'CONNECT', 'CONNACK', 'PUBLISH', 'PUBACK', 'PUBREC', 'PUBREL', 'PUBCOMP', 'SUBSCRIBE',
  'SUBACK', 'UNSUBSCRIBE', 'UNSUBACK', 'PINGREQ', 'PINGRESP', 'DISCONNECT', 'AUTH'];
/** Flags that table 2.2 fixes, by type; undefined: PUBLISH (its flags carry DUP, QoS, RETAIN). */
const REQUIRED_FLAGS: Array<number | undefined> = [0, 0, 0, undefined, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0];
/** Packets a client sends whose remaining length is fixed. */
const FIXED_LENGTH: Record<number, number> = { 4: 2, 5: 2, 6: 2, 7: 2, 12: 0, 14: 0 };

const enum State { Header, Length, TopicHigh, TopicLow, Skip }

export class FrameGuard {
  readonly #maxPayload: number;
  readonly #maxTopicLength: number;
  readonly #maxControl: number;
  #state = State.Header;
  #first = true;
  #type = 0;
  #qos = 0;
  #remaining = 0;
  #multiplier = 1;
  #lengthBytes = 0;
  #topicLength = 0;
  #skip = 0;

  constructor(limits: FrameLimits) {
    this.#maxPayload = limits.maxPayload;
    this.#maxTopicLength = limits.maxTopicLength;
    this.#maxControl = limits.maxPayload + limits.maxTopicLength + CONTROL_OVERHEAD;
  }

  /** The largest packet (remaining length) that can pass: for WebSocket's message limit. */
  get maxPacket(): number {
    return Math.max(this.#maxControl, this.#maxPayload + this.#maxTopicLength + 4);
  }

  /** Feeds the next bytes of the stream; a problem means: close the connection, pass nothing on. */
  check(chunk: Uint8Array): FrameProblem | undefined {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      switch (this.#state) {
        case State.Header: {
          const byte = chunk[i++]!;
          const problem = this.#header(byte >> 4, byte & 0x0f);
          if (problem !== undefined) return problem;
          break;
        }
        case State.Length: {
          const byte = chunk[i++]!;
          this.#remaining += (byte & 0x7f) * this.#multiplier;
          this.#multiplier *= 128;
          this.#lengthBytes += 1;
          if ((byte & 0x80) !== 0) {
            if (this.#lengthBytes === 4) return malformed('remaining length longer than 4 bytes');
            break;
          }
          const problem = this.#length();
          if (problem !== undefined) return problem;
          break;
        }
        case State.TopicHigh:
          this.#topicLength = chunk[i++]! << 8;
          this.#state = State.TopicLow;
          break;
        case State.TopicLow: {
          this.#topicLength |= chunk[i++]!;
          const problem = this.#topic();
          if (problem !== undefined) return problem;
          this.#skipBody(this.#remaining - 2);
          break;
        }
        case State.Skip: {
          const take = Math.min(this.#skip, n - i);
          i += take;
          this.#skip -= take;
          if (this.#skip === 0) this.#state = State.Header;
          break;
        }
      }
    }
    return undefined;
  }

  #header(type: number, flags: number): FrameProblem | undefined {
    if (this.#first && type !== CONNECT) return malformed(`first packet is ${NAMES[type]}, not CONNECT`);
    this.#first = false;
    if (type === 0 || type === 15) return malformed(`packet type ${type} (${NAMES[type]}) is not MQTT 3.1.1`);
    const required = REQUIRED_FLAGS[type];
    if (required !== undefined && flags !== required) return malformed(`${NAMES[type]} with reserved flag bits ${flags}`);
    this.#type = type;
    this.#qos = (flags >> 1) & 3;
    if (type === PUBLISH && this.#qos === 3) return malformed('PUBLISH with QoS 3');
    this.#remaining = 0;
    this.#multiplier = 1;
    this.#lengthBytes = 0;
    this.#state = State.Length;
    return undefined;
  }

  #length(): FrameProblem | undefined {
    const type = this.#type;
    const remaining = this.#remaining;
    const fixed = FIXED_LENGTH[type];
    if (fixed !== undefined && remaining !== fixed) return malformed(`${NAMES[type]} of ${remaining} bytes (must be ${fixed})`);
    if (type === PUBLISH) {
      if (remaining > this.#maxPayload + this.#maxTopicLength + 4) {
        return { reason: 'too_large', detail: `PUBLISH of ${remaining} bytes; mqtt.maxPayload is ${this.#maxPayload}` };
      }
      if (remaining < 2) return malformed('PUBLISH without a topic');
      this.#state = State.TopicHigh;
      return undefined;
    }
    if (remaining > this.#maxControl) {
      return { reason: 'too_large', detail: `${NAMES[type]} of ${remaining} bytes; at most ${this.#maxControl}` };
    }
    this.#skipBody(remaining);
    return undefined;
  }

  #topic(): FrameProblem | undefined {
    const topicLength = this.#topicLength;
    if (topicLength > this.#maxTopicLength) {
      return { reason: 'topic_too_long', detail: `topic of ${topicLength} bytes; mqtt.maxTopicLength is ${this.#maxTopicLength}` };
    }
    const payload = this.#remaining - 2 - topicLength - (this.#qos > 0 ? 2 : 0);
    if (payload < 0) return malformed('PUBLISH shorter than its topic');
    if (payload > this.#maxPayload) {
      return { reason: 'too_large', detail: `payload of ${payload} bytes; mqtt.maxPayload is ${this.#maxPayload}` };
    }
    return undefined;
  }

  #skipBody(bytes: number): void {
    this.#skip = bytes;
    this.#state = bytes > 0 ? State.Skip : State.Header;
  }
}

function malformed(detail: string): FrameProblem {
  return { reason: 'malformed', detail };
}
