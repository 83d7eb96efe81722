/**
 * Replies to commands, sent to each command's reply_to address on the upstream connection, within
 * the credit of that address's link. A reply is best effort: not spooled; one that finds no credit
 * within `waitMs` (no connection, a broker that grants none) or is not accepted is counted and
 * logged, and the command's outcome stands.
 */
import type { Logger } from '../core/logger.js';
import type { Outcome, Upstream, UpstreamLink, UpstreamMessage } from '../upstream/interface.js';

interface Waiting {
  message: UpstreamMessage;
  timer: NodeJS.Timeout;
}

interface Queue {
  waiting: Waiting[];
  link: UpstreamLink | undefined;
  unsubscribe: (() => void) | undefined;
}

export class ReplySender {
  readonly #upstream: Pick<Upstream, 'link'>;
  readonly #log: Logger;
  readonly #waitMs: number;
  readonly #queues = new Map<string, Queue>();
  sent = 0;
  failed = 0;

  constructor(options: { upstream: Pick<Upstream, 'link'>; log: Logger; waitMs?: number }) {
    this.#upstream = options.upstream;
    this.#log = options.log;
    this.#waitMs = options.waitMs ?? 30_000;
  }

  send(address: string, message: UpstreamMessage): void {
    let queue = this.#queues.get(address);
    if (queue === undefined) this.#queues.set(address, queue = { waiting: [], link: undefined, unsubscribe: undefined });
    const waiting: Waiting = {
      message,
      timer: setTimeout(() => {
        const i = queue.waiting.indexOf(waiting);
        if (i < 0) return;
        queue.waiting.splice(i, 1);
        this.#failed(address, message, `no credit to send it within ${this.#waitMs} ms`);
      }, this.#waitMs),
    };
    queue.waiting.push(waiting);
    this.#pump(address, queue);
  }

  stop(): void {
    for (const [address, queue] of this.#queues) {
      queue.unsubscribe?.();
      for (const waiting of queue.waiting.splice(0)) {
        clearTimeout(waiting.timer);
        this.#failed(address, waiting.message, 'the gateway stopped first');
      }
    }
    this.#queues.clear();
  }

  #pump(address: string, queue: Queue): void {
    // The upstream may have closed an idle link and made a new one: follow it.
    if (queue.link === undefined || queue.link.closed) {
      queue.unsubscribe?.();
      queue.link = this.#upstream.link(address, 'at-least-once');
      queue.unsubscribe = queue.link.onCredit(() => this.#pump(address, queue));
    }
    const link = queue.link;
    while (queue.waiting.length > 0 && link.credit() > 0) {
      const { message, timer } = queue.waiting.shift()!;
      clearTimeout(timer);
      link.send(message, (outcome) => this.#outcome(address, message, outcome));
    }
    if (queue.waiting.length === 0) {
      link.idle();
      queue.unsubscribe?.();
      this.#queues.delete(address);
    }
  }

  #outcome(address: string, message: UpstreamMessage, outcome: Outcome): void {
    if (outcome.kind === 'accepted') {
      this.sent += 1;
      return;
    }
    this.#failed(address, message, outcome.kind === 'rejected' ? `rejected: ${outcome.condition} ${outcome.description ?? ''}`.trim() : outcome.kind);
  }

  #failed(address: string, message: UpstreamMessage, why: string): void {
    this.failed += 1;
    const id = message.correlationId;
    this.#log.warn({ replyTo: address, correlationId: Buffer.isBuffer(id) ? id.toString('hex') : id, reason: why }, 'downlink: reply not delivered');
  }
}
