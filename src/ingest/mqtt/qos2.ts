/**
 * QoS 2 retransmissions of one connection. A device that got no PUBREC sends the PUBLISH again,
 * with DUP set and the same packet id; its reading must be stored once (exactly once is what QoS 2
 * promises), and acknowledged again. A retransmission is stored again only if the first one was
 * not:
 *
 * - while the append of the first is under way, the retransmission waits for it: nothing more to
 *   store once it commits; stored afresh if it failed (the device got no PUBREC for it);
 * - once it committed, aedes holds the packet until PUBREL (its incomingStorePacket, after our
 *   authorizePublish): a retransmission found there is stored already;
 * - otherwise (after PUBREL, or sent to an earlier run of the gateway) it is new.
 *
 * A publish without DUP is always new: it is tracked, for the retransmissions that may follow.
 */

/** aedes' callback of one publish. */
export type Done = (error: Error | null) => void;

export class Qos2Window {
  /** Packet id → the append of its publish, until that settles. */
  readonly #pending = new Map<number, Promise<void>>();

  /** Appends under way (for tests). */
  get size(): number {
    return this.#pending.size;
  }

  /**
   * For a retransmission (DUP): resolves to true when it must be stored, false when it is stored
   * already. Bound now to the append in flight now: by the time the check runs, the
   * retransmission's own append is tracked under the same id, and waiting for that would wait for
   * ever. `heldByBroker` resolves when aedes' store holds the packet id, rejects when not.
   */
  check(messageId: number, heldByBroker: () => Promise<unknown>): () => Promise<boolean> {
    const pending = this.#pending.get(messageId);
    if (pending !== undefined) return () => pending.then(() => false, () => true);
    return () => heldByBroker().then(() => false, () => true);
  }

  /** `done`, wrapped: until it is called, the publish with `messageId` counts as under way. */
  track(messageId: number, done: Done): Done {
    let settle!: (error: Error | null) => void;
    const appended = new Promise<void>((resolve, reject) => {
      settle = (error) => (error === null ? resolve() : reject(error));
    });
    this.#pending.set(messageId, appended);
    appended.catch(() => undefined).finally(() => {
      if (this.#pending.get(messageId) === appended) this.#pending.delete(messageId);
    });
    return (error) => {
      settle(error);
      done(error);
    };
  }
}
