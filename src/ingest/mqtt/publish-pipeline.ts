/**
 * The publishes of one connection on their way into the spool, in the order they arrived.
 *
 * - Publishes submitted in the same turn (aedes hands over every packet of one socket read
 *   synchronously) go to the spool as one `append` of several readings: one commit and one
 *   multi-row insert for the lot, instead of one of each per reading.
 * - Appends are issued in arrival order (the spool commits in issue order, so readings keep the
 *   order the device sent them in), with at most `maxInFlight` readings uncommitted; the rest wait
 *   here, and aedes reads no further from the socket until this read is done, so the device waits
 *   in its TCP window.
 * - Each publish is completed (its callback: the PUBACK/PUBREC, or for QoS 0 the next read) only
 *   after its own append committed AND every earlier publish was completed: PUBACKs go out in
 *   the order the PUBLISHes came in (MQTT-4.6.0-2), even when one of them had nothing to store.
 * - An entry may first have to find out whether it needs storing at all (`check`, e.g. a QoS 2
 *   retransmission); later entries wait for the answer, so the order holds there too.
 * - close(): appends of QoS 1/2 publishes still waiting for room are abandoned (the device got no
 *   acknowledgement and sends them again); QoS 0 appends carry on, since nothing else would bring
 *   those readings back. So QoS 0 and QoS 1/2 readings never share an append.
 */
import type { RoutedReading } from '../../core/envelope.js';
import { GatewayError } from '../../core/errors.js';

export type Append = (readings: RoutedReading[], signal: AbortSignal | undefined) => Promise<void>;

export interface PipelineJob {
  /** What to store; undefined: nothing (acknowledged without storing, e.g. unrouted under drop). */
  reading: RoutedReading | undefined;
  qos: 0 | 1 | 2;
  /** Resolves to false when the reading turns out to be stored already. */
  check?: () => Promise<boolean>;
}

interface Entry extends PipelineJob {
  done: (err?: Error) => void;
  settled: boolean;
  error?: Error;
  checking: boolean;
}

export class PublishPipeline {
  readonly #append: Append;
  readonly #maxInFlight: number;
  /** One per append of QoS 1/2 readings that has not settled. */
  readonly #aborts = new Set<AbortController>();
  readonly #entries: Entry[] = [];
  #nextToIssue = 0;
  #inFlight = 0;
  #scheduled = false;
  #closed = false;

  constructor(options: { append: Append; maxInFlight: number }) {
    this.#append = options.append;
    this.#maxInFlight = options.maxInFlight;
  }

  /** Readings whose append has not committed yet. */
  get inFlight(): number {
    return this.#inFlight;
  }

  submit(job: PipelineJob, done: (err?: Error) => void): void {
    const entry: Entry = { reading: job.reading, qos: job.qos, done, settled: false, checking: false };
    if (job.check !== undefined) entry.check = job.check;
    this.#entries.push(entry);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const controller of this.#aborts) controller.abort();
    this.#aborts.clear();
    this.#pump();
  }

  #pump(): void {
    let batch: Entry[] = [];
    let abortable = false;
    while (this.#nextToIssue < this.#entries.length && this.#inFlight + batch.length < this.#maxInFlight) {
      const entry = this.#entries[this.#nextToIssue]!;
      if (entry.check !== undefined) {
        if (!entry.checking) this.#runCheck(entry);
        break;
      }
      this.#nextToIssue += 1;
      if (entry.reading === undefined) {
        entry.settled = true;
        continue;
      }
      if (this.#closed && entry.qos > 0) {
        entry.settled = true;
        entry.error = new GatewayError('SPOOL_FULL', 'connection closed before the reading was stored', { retryable: true });
        continue;
      }
      if (batch.length > 0 && abortable !== (entry.qos > 0)) {
        this.#issue(batch, abortable);
        batch = [];
      }
      abortable = entry.qos > 0;
      batch.push(entry);
    }
    if (batch.length > 0) this.#issue(batch, abortable);
    this.#complete();
  }

  #runCheck(entry: Entry): void {
    entry.checking = true;
    entry.check!().then((needed) => {
      if (!needed) entry.reading = undefined;
    }, (err: unknown) => {
      entry.reading = undefined;
      entry.error = err instanceof Error ? err : new Error(String(err));
    }).finally(() => {
      entry.check = undefined;
      this.#pump();
    });
  }

  #issue(batch: Entry[], abortable: boolean): void {
    this.#inFlight += batch.length;
    const controller = abortable ? new AbortController() : undefined;
    if (controller !== undefined) this.#aborts.add(controller);
    const settle = (error: Error | undefined): void => {
      for (const entry of batch) {
        entry.settled = true;
        if (error !== undefined) entry.error = error;
      }
      if (controller !== undefined) this.#aborts.delete(controller);
      this.#inFlight -= batch.length;
      this.#pump();
    };
    this.#append(batch.map((entry) => entry.reading!), controller?.signal).then(
      () => settle(undefined),
      (err: unknown) => settle(err instanceof Error ? err : new Error(String(err))));
  }

  /** Completes settled entries from the front, in order. */
  #complete(): void {
    const entries = this.#entries;
    let count = 0;
    while (count < entries.length && entries[count]!.settled) count += 1;
    if (count === 0) return;
    const completed = entries.splice(0, count);
    this.#nextToIssue -= count;
    for (const entry of completed) entry.done(entry.error);
  }
}
