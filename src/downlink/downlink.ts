/**
 * Commands down to devices, in the gateway: received from one AMQP 1.0 source address within a
 * credit window (at most `credit` commands in progress; the broker sends no more until one is
 * settled), each carried out by its target and settled by what the device said:
 *
 *   done (MQTT PUBACK/PUBCOMP of every subscriber; the Modbus write response)  → accepted
 *   unavailable (no subscriber, device offline or busy, no confirmation in time) → released,
 *       after a wait that doubles per message id (core/release-backoff.ts): the broker hands it
 *       out again, and it is tried again
 *   refused (unknown point, read-only, out of range, an exception from the device, a message
 *       that is not a command)                                                   → rejected, with
 *       the reason as the AMQP error (condition and description)
 *
 * Then, when the message has a reply_to, a reply goes there with the command's correlation_id
 * (its message_id when it has none): {"ok": true, "result": …} or {"ok": false, "error": {"code",
 * "message"}}. A released command gets no reply: it is not over.
 *
 * Commands run one after another per target device (a bus runs one request at a time anyway;
 * MQTT commands to one topic keep their order); delivery is at least once, so a command can run
 * twice (a write whose confirmation was lost is released and tried again): commands should set
 * states, not toggle them.
 */
import { messageOf } from '../core/errors.js';
import { newReadingId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { ReleaseBackoff, type ReleaseBackoffOptions } from '../core/release-backoff.js';
import type { DownlinkDelivery, DownlinkOutcome, DownlinkSource, UpstreamReceiver } from '../upstream/downlink.js';
import type { Upstream } from '../upstream/interface.js';
import { describeCommand, isProblem, parseCommand, type Command } from './command.js';
import { ReplySender } from './replies.js';

/** What a target says about a command. */
export type TargetResult =
  | { status: 'done'; result?: unknown }
  | { status: 'unavailable'; reason: string }
  | { status: 'refused'; code: string; reason: string };

export interface CommandTargets {
  mqtt?: { publishCommand(command: { topic: string; payload: Buffer; qos: 0 | 1 | 2; timeoutMs: number }): Promise<TargetResult> };
  modbus?: { writePoint(command: { bus: string; device: string; point: string; value: unknown }): Promise<TargetResult> };
}

export interface DownlinkOptions {
  source: DownlinkSource;
  /** Where replies are sent; undefined: no replies. */
  replies: Pick<Upstream, 'link'> | undefined;
  address: string;
  credit: number;
  /** How long an MQTT command waits for its subscribers' confirmations. */
  mqttTimeoutMs: number;
  targets: CommandTargets;
  log: Logger;
  releaseBackoff?: ReleaseBackoffOptions;
  /** How long stop() lets commands in progress finish (default 15 s). */
  stopGraceMs?: number;
  now?: () => number;
}

export interface DownlinkStats {
  received: number;
  outcomes: Record<'accepted' | 'rejected' | 'released', number>;
  inProgress: number;
  replies: { sent: number; failed: number };
  attached: boolean;
}

/** The AMQP error condition a refusal is rejected with. */
const CONDITIONS: Record<string, string> = {
  invalid_command: 'amqp:decode-error',
  unknown_target: 'amqp:not-implemented',
  unknown_point: 'amqp:not-found',
  read_only: 'amqp:not-allowed',
  out_of_range: 'amqp:invalid-field',
  invalid_value: 'amqp:invalid-field',
  invalid_topic: 'amqp:invalid-field',
  device_exception: 'amqp:precondition-failed',
};

export class Downlink {
  readonly name = 'downlink';
  readonly #options: DownlinkOptions;
  readonly #log: Logger;
  readonly #backoff: ReleaseBackoff;
  readonly #replies: ReplySender | undefined;
  readonly #now: () => number;
  #receiver: UpstreamReceiver | undefined;
  #stopping = false;
  /** Commands being carried out. */
  readonly #running = new Set<Promise<void>>();
  /** Releases waiting for their backoff, to be done at once on stop. */
  readonly #releases = new Map<NodeJS.Timeout, () => void>();
  /** The last command of each target device, so the next one waits for it. */
  readonly #lanes = new Map<string, Promise<void>>();
  #received = 0;
  readonly #outcomes = { accepted: 0, rejected: 0, released: 0 };

  constructor(options: DownlinkOptions) {
    this.#options = options;
    this.#log = options.log.child({ address: options.address });
    this.#backoff = new ReleaseBackoff(options.releaseBackoff);
    this.#now = options.now ?? Date.now;
    this.#replies = options.replies === undefined ? undefined : new ReplySender({ upstream: options.replies, log: this.#log });
  }

  async start(): Promise<void> {
    this.#stopping = false;
    this.#receiver = this.#options.source.receiver({
      address: this.#options.address, credit: this.#options.credit,
      onDelivery: (delivery) => this.#onDelivery(delivery),
    });
    this.#log.info({ credit: this.#options.credit, targets: Object.keys(this.#options.targets) }, 'downlink: receiving commands');
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    for (const [timer, release] of this.#releases) {
      clearTimeout(timer);
      release();
    }
    this.#releases.clear();
    const grace = this.#options.stopGraceMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.#running),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, grace); }),
    ]);
    clearTimeout(timer);
    if (this.#running.size > 0) this.#log.warn({ commands: this.#running.size, graceMs: grace }, 'downlink: commands still in progress at stop go back to the broker');
    // Outcomes decided are written first; what is unsettled goes back to the broker.
    await this.#receiver?.close();
    this.#receiver = undefined;
    this.#replies?.stop();
  }

  stats(): DownlinkStats {
    return {
      received: this.#received, outcomes: { ...this.#outcomes }, inProgress: this.#running.size,
      replies: { sent: this.#replies?.sent ?? 0, failed: this.#replies?.failed ?? 0 }, attached: this.#receiver?.attached ?? false,
    };
  }

  #onDelivery(delivery: DownlinkDelivery): void {
    this.#received += 1;
    if (this.#stopping) {
      delivery.settle({ kind: 'release' });
      return;
    }
    const parsed = parseCommand(delivery.message.body);
    if (isProblem(parsed)) {
      this.#finish(delivery, undefined, { status: 'refused', code: 'invalid_command', reason: parsed.problem });
      return;
    }
    const lane = laneOf(parsed);
    const previous = this.#lanes.get(lane) ?? Promise.resolve();
    const run: Promise<void> = previous.then(() => this.#carryOut(parsed)).then(
      (result) => this.#finish(delivery, parsed, result),
      (err: unknown) => {
        this.#log.error({ ...describeCommand(parsed), err: messageOf(err) }, 'downlink: command failed unexpectedly');
        this.#finish(delivery, parsed, { status: 'unavailable', reason: `failed unexpectedly: ${messageOf(err)}` });
      },
    ).finally(() => {
      this.#running.delete(run);
      if (this.#lanes.get(lane) === run) this.#lanes.delete(lane);
    });
    this.#running.add(run);
    this.#lanes.set(lane, run);
  }

  async #carryOut(command: Command): Promise<TargetResult> {
    const { targets } = this.#options;
    if (command.target === 'mqtt') {
      if (targets.mqtt === undefined) return { status: 'refused', code: 'unknown_target', reason: 'this gateway has no MQTT broker' };
      return targets.mqtt.publishCommand({ topic: command.topic, payload: command.payload, qos: command.qos, timeoutMs: this.#options.mqttTimeoutMs });
    }
    if (targets.modbus === undefined) return { status: 'refused', code: 'unknown_target', reason: 'this gateway polls no Modbus devices' };
    return targets.modbus.writePoint({ bus: command.bus, device: command.device, point: command.point, value: command.value });
  }

  #finish(delivery: DownlinkDelivery, command: Command | undefined, result: TargetResult): void {
    const message = delivery.message;
    const fields = { messageId: message.id, correlationId: message.correlationId, ...(command === undefined ? {} : describeCommand(command)) };
    if (result.status === 'unavailable') {
      const wait = this.#stopping ? 0 : this.#backoff.next(message.id);
      this.#log.warn({ ...fields, reason: result.reason, releaseInMs: wait }, 'downlink: command not carried out now; released to be tried again');
      const release = (): void => {
        this.#outcomes.released += 1;
        delivery.settle({ kind: 'release' });
      };
      if (wait === 0) {
        release();
        return;
      }
      // It keeps its place in the credit window meanwhile: a device that is away slows commands down.
      const timer = setTimeout(() => {
        this.#releases.delete(timer);
        release();
      }, wait);
      this.#releases.set(timer, release);
      return;
    }
    this.#backoff.forget(message.id);
    let outcome: DownlinkOutcome;
    let reply: Record<string, unknown>;
    if (result.status === 'done') {
      this.#outcomes.accepted += 1;
      outcome = { kind: 'accept' };
      reply = { ok: true, ...(result.result === undefined ? {} : { result: result.result }) };
      this.#log.info(fields, 'downlink: command carried out; accepted');
    } else {
      this.#outcomes.rejected += 1;
      outcome = { kind: 'reject', condition: CONDITIONS[result.code] ?? 'amqp:precondition-failed', description: `${result.code}: ${result.reason}`.slice(0, 1000) };
      reply = { ok: false, error: { code: result.code, message: result.reason } };
      this.#log.warn({ ...fields, code: result.code, reason: result.reason }, 'downlink: command cannot be carried out; rejected');
    }
    delivery.settle(outcome);
    this.#reply(delivery, reply);
  }

  #reply(delivery: DownlinkDelivery, body: Record<string, unknown>): void {
    const message = delivery.message;
    if (this.#replies === undefined || message.replyTo === undefined) return;
    const now = this.#now();
    // In its own AMQP type: a requester matching replies by a ulong or binary id finds this one.
    const correlationId = message.correlationIdValue ?? message.idValue;
    this.#replies.send(message.replyTo, {
      id: newReadingId(now), topic: message.subject ?? this.#options.address, payload: Buffer.from(JSON.stringify(body)),
      receivedAt: now, priority: 4, properties: { ok: body.ok === true },
      ...(correlationId === undefined ? {} : { correlationId }),
    });
  }
}

/** Commands to one device (one bus and unit, one MQTT topic) are carried out one after another. */
function laneOf(command: Command): string {
  return command.target === 'mqtt' ? `mqtt:${command.topic}` : `modbus:${command.bus}:${command.device}`;
}
