/**
 * Commands published on the embedded broker to the devices that subscribed to their topic, and
 * whether the devices confirmed them: at QoS 1 their PUBACK, at QoS 2 their PUBCOMP.
 *
 * aedes tells which packet a PUBACK acknowledges only for clients with a persistent session (its
 * 'ack' event carries the stored packet; for clean sessions nothing is stored). So the command is
 * delivered to each subscriber on its own (`client.publish`), its packet id is taken from the
 * client's own sequence when aedes asks `authorizeForward` about it (QoSPacket keeps an id the
 * packet already has), and acknowledgements are seen where aedes clears an outgoing packet id,
 * which it does for every PUBACK and PUBCOMP (not PUBREC), clean session or not. Checked against
 * aedes 1.2 by test/ingest/mqtt/commands.test.ts.
 *
 * A command is done when every subscriber it went to confirmed it (QoS 0: once written to them).
 * `unavailable` (the command can be tried again later): no subscriber connected, one that leaves
 * first, the timeout, and a QoS 1 or 2 command to a subscriber granted QoS 0, which cannot
 * confirm it (nothing is sent then: "accepted" must mean that every device confirmed; who is
 * subscribed how can change by the next try). A command not confirmed is also taken out of a
 * persistent session, or aedes would send it again when the device comes back, after the command
 * was released and maybe overtaken by a newer one. A topic that is not a valid publish topic:
 * `refused`.
 */
import type { Aedes, Client, PublishPacket } from 'aedes';
import { topicMatches } from '../../route/topic-filter.js';

export interface MqttCommand {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  /** How long to wait for the confirmations. */
  timeoutMs: number;
}

export type MqttCommandResult =
  | { status: 'done'; result: { subscribers: number } }
  | { status: 'unavailable'; reason: string }
  | { status: 'refused'; code: string; reason: string };

interface Delivery {
  /** Called with the client and the packet id aedes will send the command with. */
  assigned: (client: Client, messageId: number) => void;
  /** The confirmations it waits for, to forget them when it is over (and whether each came). */
  awaited: Array<{ client: Client; messageId: number; confirmed: boolean }>;
}

type ClientInternals = Client & { _nextId: number; subscriptions: Record<string, { qos: number }>; closed: boolean; clean: boolean };
type Persistence = { outgoingClearMessageId: (client: Client, packet: { messageId?: number }) => Promise<unknown> };

export class CommandPublisher {
  /** Commands being delivered, by the identity of their payload buffer (aedes passes it along unchanged). */
  readonly #deliveries = new Map<Buffer, Delivery>();
  /** Confirmations awaited: client → packet id → what to call. */
  readonly #awaiting = new Map<Client, Map<number, (confirmed: boolean) => void>>();
  #broker: Aedes | undefined;
  /** aedes' own outgoingClearMessageId, without the hook. */
  #clear: Persistence['outgoingClearMessageId'] | undefined;

  /** Hooks into a new broker: sees every PUBACK and PUBCOMP, and every client that leaves. */
  attach(broker: Aedes): void {
    this.#broker = broker;
    const persistence = (broker as unknown as { persistence: Persistence }).persistence;
    const clear = persistence.outgoingClearMessageId.bind(persistence);
    this.#clear = clear;
    persistence.outgoingClearMessageId = (client, packet) => {
      if (packet.messageId !== undefined) this.#confirm(client, packet.messageId, true);
      return clear(client, packet);
    };
    broker.on('clientDisconnect', (client) => this.#gone(client));
  }

  detach(): void {
    this.#broker = undefined;
    for (const client of [...this.#awaiting.keys()]) this.#gone(client);
  }

  /** For aedes' authorizeForward: gives a command packet its id from the client's sequence. */
  forward<P extends PublishPacket>(client: Client, packet: P): P {
    const delivery = this.#deliveries.get(packet.payload as Buffer);
    if (delivery === undefined || packet.qos === 0) return packet;
    const internals = client as ClientInternals;
    // As aedes' QoSPacket numbers packets: 1 to 65535, then 1 again.
    const messageId = internals._nextId;
    internals._nextId = messageId >= 65535 ? 1 : messageId + 1;
    packet.messageId = messageId;
    delivery.assigned(client, messageId);
    return packet;
  }

  async publish(command: MqttCommand): Promise<MqttCommandResult> {
    const broker = this.#broker;
    if (broker === undefined) return { status: 'unavailable', reason: 'the MQTT broker is not running' };
    // A buffer of its own: its identity marks this command's packets in forward().
    const payload = Buffer.from(command.payload);
    const clients = Object.values((broker as unknown as { clients: Record<string, ClientInternals> }).clients);
    const recipients: Array<{ client: ClientInternals; qos: 0 | 1 | 2 }> = [];
    for (const client of clients) {
      if (client.closed) continue;
      let granted = -1;
      for (const [filter, subscription] of Object.entries(client.subscriptions ?? {})) {
        if (topicMatches(filter, command.topic)) granted = Math.max(granted, subscription.qos);
      }
      if (granted === 0 && command.qos > 0) {
        return {
          status: 'unavailable',
          reason: `a subscriber of ${command.topic} was granted QoS 0 (${client.id}): it cannot confirm a QoS ${command.qos} command; send it with qos 0, or subscribe with QoS 1`,
        };
      }
      if (granted >= 0) recipients.push({ client, qos: Math.min(granted, command.qos) as 0 | 1 | 2 });
    }
    if (recipients.length === 0) return { status: 'unavailable', reason: `no device is subscribed to ${command.topic}` };

    const confirmations: Array<Promise<boolean>> = [];
    const delivery: Delivery = {
      awaited: [],
      assigned: (client, messageId) => {
        const awaited = { client, messageId, confirmed: false };
        delivery.awaited.push(awaited);
        confirmations.push(new Promise<boolean>((resolve) => {
          let awaiting = this.#awaiting.get(client);
          if (awaiting === undefined) this.#awaiting.set(client, awaiting = new Map());
          awaiting.set(messageId, (confirmed) => {
            awaited.confirmed = confirmed;
            resolve(confirmed);
          });
        }));
      },
    };
    this.#deliveries.set(payload, delivery);
    let timer: NodeJS.Timeout | undefined;
    try {
      const written = recipients.map(({ client, qos }) => new Promise<boolean>((resolve) => {
        client.publish({ cmd: 'publish', topic: command.topic, payload, qos, retain: false, dup: false } as PublishPacket,
          (err?: Error) => resolve(err === undefined || err === null));
      }));
      const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), command.timeoutMs); });
      const outcome = await Promise.race([
        (async () => {
          const writes = await Promise.all(written);
          if (writes.some((ok) => !ok)) return 'unwritten' as const;
          return (await Promise.all(confirmations)).every(Boolean) ? 'confirmed' as const : 'left' as const;
        })(),
        timedOut,
      ]);
      switch (outcome) {
        case 'confirmed':
          return { status: 'done', result: { subscribers: recipients.length } };
        case 'timeout':
          return { status: 'unavailable', reason: `not confirmed by every subscriber of ${command.topic} within ${command.timeoutMs} ms` };
        case 'unwritten':
          return { status: 'unavailable', reason: `could not be written to every subscriber of ${command.topic}` };
        case 'left':
        default:
          return { status: 'unavailable', reason: `a subscriber of ${command.topic} disconnected before it confirmed` };
      }
    } finally {
      clearTimeout(timer);
      this.#deliveries.delete(payload);
      // A confirmation that did not come in time is not waited for any more, and a persistent
      // session does not keep the command to send it again later.
      for (const { client, messageId } of delivery.awaited) this.#confirm(client, messageId, false);
      for (const { client, messageId, confirmed } of delivery.awaited) {
        if (!confirmed && !(client as ClientInternals).clean) void this.#clear?.(client, { messageId }).catch(() => {});
      }
    }
  }

  #confirm(client: Client, messageId: number, confirmed: boolean): void {
    const awaiting = this.#awaiting.get(client);
    const resolve = awaiting?.get(messageId);
    if (resolve === undefined) return;
    awaiting!.delete(messageId);
    if (awaiting!.size === 0) this.#awaiting.delete(client);
    resolve(confirmed);
  }

  #gone(client: Client): void {
    const awaiting = this.#awaiting.get(client);
    if (awaiting === undefined) return;
    this.#awaiting.delete(client);
    for (const resolve of awaiting.values()) resolve(false);
  }
}
