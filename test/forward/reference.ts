/**
 * The reference model of forwarding, checked as things happen. It watches the real spool through
 * a delegating wrapper (ObservedSpool: every call goes to the real SqliteSpool unchanged) and the
 * scripted upstream through its hooks, keeps the spool's view of each reading the way the
 * interface defines it, and records a violation the moment one happens:
 *
 * - nothing sent twice at once: a reading is never leased while a transfer of it waits for its
 *   outcome on the current connection;
 * - no late outcome settles a newer lease: the spool is never told to ack/release/modify/reject a
 *   reading while a transfer of it is still waiting for its outcome;
 * - nothing acknowledged lost: a reading is acked only after an `accepted`, and a reading accepted
 *   on the current connection is not handed to the upstream again (its ack reaches the spool
 *   before a disconnect's releaseAll);
 * - order per address: a reading is leased only when no reading before it (higher priority, or
 *   same priority and arrived earlier) waits, and sent in the order leased;
 * - each reading keeps its message id (and its attempt count);
 * - never beyond credit (the scripted link refuses, and says so).
 *
 * Readings are known by payload (`<address>/<n>`, unique), so a wrong id is seen.
 */
import type { RoutedReading } from '../../src/core/envelope.js';
import type { DeadLetterReason, Spool, SpooledReading, SpoolStats } from '../../src/spool/interface.js';
import type { Outcome } from '../../src/upstream/interface.js';
import type { Transfer } from './scripted-upstream.js';

type State = 'pending' | 'waiting' | 'leased' | 'sent' | 'settling' | 'acked' | 'dead';

export interface Ref {
  id: string;
  payload: string;
  address: string;
  priority: number;
  /** Arrival order. */
  order: number;
  seq?: number;
  state: State;
  settling?: 'ack' | 'modify' | 'reject';
  attempts: number;
  /** The transfer of its current lease, once sent. */
  transfer?: Transfer;
  /** Accepted on its current lease: it must not be sent again. */
  accepted: boolean;
  /** Accepted at least once (on any connection). */
  everAccepted: boolean;
  rejected?: DeadLetterReason;
}

/** The real spool, every call passed on unchanged, and reported to the model. */
export class ObservedSpool implements Spool {
  readonly #inner: Spool;
  readonly #model: Reference;
  /** Settlement and append promises not resolved yet. */
  pending = 0;

  constructor(inner: Spool, model: Reference) {
    this.#inner = inner;
    this.#model = model;
  }

  start(): Promise<void> {
    return this.#inner.start();
  }

  stop(): Promise<void> {
    return this.#inner.stop();
  }

  append(readings: readonly RoutedReading[], options?: { signal?: AbortSignal }): Promise<void> {
    this.#model.appending(readings);
    return this.#track(this.#inner.append(readings, options), () => this.#model.appended(readings));
  }

  lease(address: string, max: number): Promise<SpooledReading[]> {
    // The spool leases when called; its answer is seen a microtask later, after whatever else
    // ran meanwhile: the model judges it against the state at the call.
    const at = this.#model.leasing(address);
    return this.#inner.lease(address, max).then((readings) => {
      this.#model.leased(address, max, readings, at);
      return readings;
    });
  }

  ack(seqs: readonly number[]): Promise<void> {
    const taken = this.#model.settle('ack', seqs);
    return this.#track(this.#inner.ack(seqs), () => this.#model.committed('ack', taken));
  }

  release(seqs: readonly number[]): Promise<void> {
    this.#model.release(seqs);
    return this.#inner.release(seqs);
  }

  modify(seqs: readonly number[]): Promise<void> {
    const taken = this.#model.settle('modify', seqs);
    return this.#track(this.#inner.modify(seqs), () => this.#model.committed('modify', taken));
  }

  reject(seqs: readonly number[], reason: DeadLetterReason): Promise<void> {
    const taken = this.#model.settle('reject', seqs, reason);
    return this.#track(this.#inner.reject(seqs, reason), () => this.#model.committed('reject', taken));
  }

  releaseAll(address?: string): void {
    this.#model.releaseAll(address);
    this.#inner.releaseAll(address);
  }

  addresses(): string[] {
    return this.#inner.addresses();
  }

  stats(): SpoolStats {
    return this.#inner.stats();
  }

  onAvailable(listener: (address: string) => void): () => void {
    return this.#inner.onAvailable(listener);
  }

  #track(promise: Promise<void>, done: () => void): Promise<void> {
    this.pending += 1;
    return promise.then(() => {
      this.pending -= 1;
      done();
    }, (err: unknown) => {
      this.pending -= 1;
      this.#model.violations.push(`spool call failed: ${String(err)}`);
      throw err;
    });
  }
}

/** The model's state when a lease was asked for. */
export interface LeaseCall {
  /** Readings of the address waiting then, in the order they must leave. */
  waiting: Ref[];
  /** Those that could be handed out then (waiting, pending commit, or a modify whose commit may have landed). */
  eligible: Set<Ref>;
  releaseAlls: number;
}

export class Reference {
  readonly violations: string[] = [];
  readonly refs = new Map<string, Ref>();
  readonly #bySeq = new Map<number, Ref>();
  readonly #maxAttempts: number;
  #order = 0;
  #counter = 0;
  #releaseAlls = 0;

  constructor(options: { maxAttempts: number }) {
    this.#maxAttempts = options.maxAttempts;
  }

  /** A new reading for `address` (payload `<address>/<n>`, id `id-<n>`). */
  reading(address: string, priority = 4): RoutedReading {
    this.#counter += 1;
    return { id: `id-${this.#counter}`, topic: `t/${address}`, payload: Buffer.from(`${address}/${this.#counter}`), receivedAt: 1_000 + this.#counter, address, priority };
  }

  byPayload(payload: string): Ref | undefined {
    return this.refs.get(payload);
  }

  /** Readings of `address` in the order they must leave (priority, then arrival). */
  queueOf(address: string): Ref[] {
    return [...this.refs.values()].filter((r) => r.address === address).sort(before);
  }

  appending(readings: readonly RoutedReading[]): void {
    for (const r of readings) {
      const payload = r.payload.toString();
      this.refs.set(payload, {
        id: r.id, payload, address: r.address, priority: r.priority, order: this.#order++, state: 'pending', attempts: 0, accepted: false, everAccepted: false,
      });
    }
  }

  appended(readings: readonly RoutedReading[]): void {
    for (const r of readings) {
      const ref = this.refs.get(r.payload.toString())!;
      if (ref.state === 'pending') ref.state = 'waiting';
    }
  }

  leasing(address: string): LeaseCall {
    const mine = this.queueOf(address);
    return {
      waiting: mine.filter((r) => r.state === 'waiting'),
      eligible: new Set(mine.filter((r) => r.state === 'waiting' || r.state === 'pending' || (r.state === 'settling' && r.settling === 'modify'))),
      releaseAlls: this.#releaseAlls,
    };
  }

  leased(address: string, max: number, readings: SpooledReading[], at: LeaseCall): void {
    if (readings.length > max) this.violations.push(`lease of ${address} gave ${readings.length} readings for max ${max}`);
    const given = new Set<Ref>();
    for (const reading of readings) {
      const payload = reading.payload.toString();
      const ref = this.refs.get(payload);
      if (ref === undefined) {
        this.violations.push(`leased an unknown reading ${payload}`);
        continue;
      }
      const what = `${payload} (${ref.id})`;
      if (reading.id !== ref.id) this.violations.push(`${what} leased with id ${reading.id}`);
      if (reading.address !== address || ref.address !== address) this.violations.push(`${what} leased for ${address}`);
      if (ref.seq !== undefined && ref.seq !== reading.seq) this.violations.push(`${what} changed seq ${ref.seq} -> ${reading.seq}`);
      if (reading.attempts !== ref.attempts) this.violations.push(`${what} leased with attempts ${reading.attempts}, expected ${ref.attempts}`);
      ref.seq = reading.seq;
      this.#bySeq.set(reading.seq, ref);
      if (!at.eligible.has(ref)) this.violations.push(`${what} leased while ${ref.settling ?? ''}${ref.state}: leased twice at once, or after it was settled`);
      if (ref.transfer !== undefined && isOpen(ref.transfer)) this.violations.push(`${what} leased while a transfer of it waits for its outcome: sent twice at once`);
      if (ref.accepted) this.violations.push(`${what} leased again after the upstream accepted it`);
      const skipped = at.waiting.find((w) => w !== ref && !given.has(w) && before(w, ref) < 0);
      if (skipped !== undefined) this.violations.push(`${what} leased while ${skipped.payload} before it waits: out of order`);
      given.add(ref);
      if (at.releaseAlls !== this.#releaseAlls) continue; // a releaseAll after the call ended this lease already
      ref.state = 'leased';
      ref.settling = undefined;
      ref.transfer = undefined;
      ref.accepted = false;
    }
    if (readings.length < max) {
      const left = at.waiting.find((w) => !given.has(w));
      if (left !== undefined) this.violations.push(`lease of ${address} gave ${readings.length} for max ${max} and left ${left.payload} waiting: stranded`);
    }
  }

  /** The scripted upstream saw a transfer. */
  sent(t: Transfer): void {
    const payload = t.message.payload.toString();
    const ref = this.refs.get(payload);
    if (ref === undefined) {
      this.violations.push(`sent an unknown reading ${payload}`);
      return;
    }
    const what = `${payload} (${ref.id})`;
    if (t.message.id !== ref.id) this.violations.push(`${what} sent with message id ${t.message.id}`);
    if (t.link.address !== ref.address) this.violations.push(`${what} sent to ${t.link.address}`);
    if (ref.state !== 'leased') this.violations.push(`${what} sent while ${ref.state}, not leased`);
    for (const other of this.refs.values()) {
      if (other !== ref && other.address === ref.address && other.state === 'leased' && before(other, ref) < 0) {
        this.violations.push(`${what} sent before ${other.payload}, leased before it: out of order`);
        break;
      }
    }
    ref.state = 'sent';
    ref.transfer = t;
  }

  /** The scripted upstream hands an outcome to the sender. */
  outcome(t: Transfer, outcome: Outcome): void {
    const ref = this.refs.get(t.message.payload.toString());
    // Current when it is the transfer of the reading's lease (a releaseAll ended the leases of a
    // connection that is gone; a link closed under it does not end the lease).
    if (ref === undefined || ref.transfer !== t) return;
    if (outcome.kind === 'accepted') {
      ref.accepted = true;
      ref.everAccepted = true;
    }
  }

  release(seqs: readonly number[]): void {
    for (const seq of seqs) {
      const ref = this.#settled(seq, 'release');
      if (ref === undefined || (ref.state !== 'leased' && ref.state !== 'sent')) continue;
      if (ref.accepted) this.violations.push(`${ref.payload} released after the upstream accepted it`);
      this.#requeue(ref);
    }
  }

  /** ack/modify/reject asked for: the seqs the spool takes out of flight (others it ignores). */
  settle(kind: 'ack' | 'modify' | 'reject', seqs: readonly number[], reason?: DeadLetterReason): Ref[] {
    const taken: Ref[] = [];
    for (const seq of seqs) {
      const ref = this.#settled(seq, kind);
      if (ref === undefined || (ref.state !== 'leased' && ref.state !== 'sent')) continue;
      if (kind === 'ack' && !ref.accepted) this.violations.push(`${ref.payload} acked without an accepted outcome on its lease`);
      if (kind === 'modify') ref.attempts += 1;
      if (kind === 'reject') ref.rejected = reason!;
      ref.state = 'settling';
      ref.settling = kind;
      taken.push(ref);
    }
    return taken;
  }

  committed(kind: 'ack' | 'modify' | 'reject', refs: Ref[]): void {
    for (const ref of refs) {
      if (ref.state !== 'settling' || ref.settling !== kind) continue;
      ref.settling = undefined;
      ref.transfer = undefined;
      if (kind === 'ack') ref.state = 'acked';
      else if (kind === 'reject') ref.state = 'dead';
      else ref.state = ref.attempts >= this.#maxAttempts ? 'dead' : 'waiting';
    }
  }

  releaseAll(address?: string): void {
    this.#releaseAlls += 1;
    for (const ref of this.refs.values()) {
      if (address !== undefined && ref.address !== address) continue;
      if (ref.state !== 'leased' && ref.state !== 'sent') continue;
      if (ref.accepted) this.violations.push(`${ref.payload} accepted, but its ack had not reached the spool when releaseAll returned it to the queue: it will be sent again`);
      this.#requeue(ref);
    }
  }

  /** Counts by state. */
  count(state: State): number {
    let n = 0;
    for (const ref of this.refs.values()) if (ref.state === state) n += 1;
    return n;
  }

  #settled(seq: number, kind: string): Ref | undefined {
    const ref = this.#bySeq.get(seq);
    if (ref === undefined) {
      this.violations.push(`${kind} of seq ${seq}, never leased`);
      return undefined;
    }
    if (ref.transfer !== undefined && isOpen(ref.transfer)) {
      this.violations.push(`${kind} of ${ref.payload} while its transfer on connection ${ref.transfer.connection} waits for its outcome (a late outcome settled a newer lease?)`);
    }
    return ref;
  }

  #requeue(ref: Ref): void {
    ref.state = 'waiting';
    ref.transfer = undefined;
    ref.accepted = false;
  }
}

function isOpen(t: Transfer): boolean {
  return t.outcome === undefined && !t.orphaned;
}

/** Negative when `a` must leave before `b`. */
function before(a: Ref, b: Ref): number {
  return b.priority - a.priority || a.order - b.order;
}
