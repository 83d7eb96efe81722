/**
 * The write queue and the group commit. Appends and settlements (ack, modify, reject) are queued
 * and committed together, one transaction per round, at the end of the event-loop turn or at most
 * `groupCommitMs` after the first of them. A caller's promise resolves only after the transaction
 * that holds its change committed; an append's only once that commit is also durable. What a round
 * does, and when its commit fails, is commit-round.ts; what may be admitted under the quota,
 * admission.ts; how each write changes the rows, transaction.ts.
 */
import type { RoutedReading } from '../../core/envelope.js';
import { GatewayError } from '../../core/errors.js';
import type { DeadLetterReason } from '../interface.js';
import type { Checkpoints } from './checkpoints.js';
import { CommitRound } from './commit-round.js';
import type { SpoolContext } from './context.js';
import type { WalDurability } from './durability.js';
import type { DiskReserve } from './reserve.js';
import type { AckOp, AppendOp, Settle, WriteOp } from './write-ops.js';

export class WriteQueue {
  readonly #ctx: SpoolContext;
  readonly #round: CommitRound;
  #queue: WriteOp[] = [];
  /** The ack op still waiting in the queue, which later acks join. */
  #pendingAck: { op: AckOp; done: Promise<void> } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;

  constructor(ctx: SpoolContext, durability: WalDurability, reserve: DiskReserve, checkpoints: Checkpoints) {
    this.#ctx = ctx;
    this.#round = new CommitRound(ctx, durability, reserve, checkpoints);
  }

  get blocked(): boolean {
    return this.#round.blocked;
  }

  get diskFull(): boolean {
    return this.#round.diskFull;
  }

  append(readings: readonly RoutedReading[], bytes: number, signal?: AbortSignal): Promise<void> {
    return this.#enqueue((settle) => {
      if (signal === undefined) return { kind: 'append', readings, bytes, ...settle };
      const onAbort = (): void => {
        const i = this.#queue.indexOf(op);
        if (i < 0) return;
        this.#queue.splice(i, 1);
        op.reject(new GatewayError('SPOOL_FULL', 'spool: append abandoned before it was committed (nothing stored)', { retryable: true }));
      };
      // The listener goes when the append settles: a signal shared by many appends must not collect them.
      const op: AppendOp = {
        kind: 'append', readings, bytes,
        resolve: () => { signal.removeEventListener('abort', onAbort); settle.resolve(); },
        reject: (err) => { signal.removeEventListener('abort', onAbort); settle.reject(err); },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      return op;
    });
  }

  /** Acks come one delivery at a time; those before the next commit share one op (and promise). */
  ack(seqs: number[]): Promise<void> {
    const pending = this.#pendingAck;
    if (pending !== undefined) {
      for (const seq of seqs) pending.op.seqs.push(seq);
      return pending.done;
    }
    let op!: AckOp;
    const done = this.#enqueue((settle) => {
      op = { kind: 'ack', seqs, ...settle };
      return op;
    });
    this.#pendingAck = { op, done };
    return done;
  }

  modify(seqs: number[]): Promise<void> {
    return this.#enqueue((settle) => ({ kind: 'modify', seqs, ...settle }));
  }

  reject(seqs: number[], reason: DeadLetterReason): Promise<void> {
    return this.#enqueue((settle) => ({ kind: 'reject', seqs, reason, ...settle }));
  }

  /** Room may have come from elsewhere (expiry, a purge by `uplink dlq`): let waiting writes try. */
  retry(): void {
    if (this.#queue.length > 0) this.#schedule(0);
  }

  /**
   * Commits what can be committed now; everything still waiting fails as retryable, or with the
   * storage failure if that commit (or an earlier one) failed so.
   */
  stop(): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    if (this.#ctx.failure === undefined) this.#flush();
    this.#failAll(this.#ctx.failure ?? new GatewayError('SPOOL_FULL', 'spool stopped before there was room', { retryable: true }));
  }

  /** The storage failed: nothing waiting will be committed. */
  failAll(error: GatewayError): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#immediate);
    this.#failAll(error);
  }

  #failAll(error: GatewayError): void {
    const ops = this.#queue;
    this.#queue = [];
    this.#pendingAck = undefined;
    for (const op of ops) {
      if (op.kind !== 'append') for (const seq of op.seqs) this.#ctx.inFlight.abortSettle(seq);
      op.reject(error);
    }
  }

  #enqueue(make: (settle: Settle) => WriteOp): Promise<void> {
    const failure = this.#ctx.failure;
    if (failure !== undefined) return Promise.reject(failure);
    return new Promise<void>((resolve, reject) => {
      this.#queue.push(make({ resolve, reject }));
      this.#schedule(this.#ctx.options.groupCommitMs);
    });
  }

  /**
   * Commits at the end of this turn of the event loop (delay 0), so a lone reading waits for
   * nothing while everything that arrived in the same turn shares the commit; or after `delayMs`.
   */
  #schedule(delayMs: number): void {
    if (this.#timer !== undefined || this.#immediate !== undefined) return;
    const run = (): void => {
      this.#timer = undefined;
      this.#immediate = undefined;
      this.#flush();
    };
    if (delayMs <= 0) this.#immediate = setImmediate(run);
    else this.#timer = setTimeout(run, delayMs);
  }

  #flush(): void {
    if (this.#ctx.failure !== undefined || this.#queue.length === 0) return;
    const ops = this.#queue;
    this.#queue = [];
    this.#pendingAck = undefined;
    const result = this.#round.run(ops);
    // What did not commit waits, in its order, before anything queued meanwhile.
    this.#queue = [...result.keep, ...this.#queue];
    // The storage failed: its writes are in the queue again, for ctx.fail to refuse.
    if (result.fatal !== undefined) this.#ctx.fail(result.fatal);
    // It may also have failed during the round (an fsync that failed at once), after ctx.fail
    // refused what was queued then and before what waits was put back.
    const failure = this.#ctx.failure;
    if (failure !== undefined) this.failAll(failure);
    else if (result.retryMs !== undefined) this.#schedule(result.retryMs);
  }
}
