/**
 * The reference model of the model-based spool test (model.test.ts): what a client of the spool
 * may conclude from the outcomes it saw, reading by reading, and the checks of what the real spool
 * hands out against it.
 *
 * The model does not re-implement the spool. It only knows what the contract lets a client know:
 * an append that resolved is stored; one refused with a retryable error is not; one refused with
 * STORAGE_FAILED may be either. A settlement that resolved happened; a retryable refusal means it
 * did not; a fatal one, either. A lease is evidence too: what it returns is on disk (and never
 * what a pending append wrote: a reading is handed out only once its fsync came back). From that, a
 * reading is "certainly leasable" when it is certainly stored, not removed, not in flight and not
 * expired, and every lease must return such readings in order, skipping none of them.
 */
import assert from 'node:assert/strict';
import type { RoutedReading } from '../../src/core/envelope.js';
import type { SpooledReading } from '../../src/spool/interface.js';

export type AppendState = 'pending' | 'stored' | 'refused' | 'unknown';
export type FlightState = 'queued' | 'leased' | 'settling';
export type Maybe = 'no' | 'maybe' | 'yes';
export type SettleKind = 'ack' | 'modify' | 'reject';

export interface ModelReading {
  input: RoutedReading;
  /** Issue order of the appends: the arrival order the spool must keep. */
  order: number;
  append: AppendState;
  /** Seen in a lease: certainly on disk. */
  seen: boolean;
  seq?: number;
  flight: FlightState;
  removed: Maybe;
  dead: Maybe;
  attempts: { min: number; max: number };
  /** How many fsyncs had been asked for when its append was issued. */
  syncsBefore: number;
}

export interface Limits {
  maxAttempts: number;
}

export class ReferenceModel {
  readonly readings = new Map<string, ModelReading>();
  readonly #bySeq = new Map<number, ModelReading>();
  readonly limits: Limits;
  #order = 0;

  constructor(limits: Limits) {
    this.limits = limits;
  }

  appended(input: RoutedReading, syncsBefore: number): ModelReading {
    const m: ModelReading = {
      input, order: this.#order++, append: 'pending', seen: false, flight: 'queued', removed: 'no', dead: 'no',
      attempts: { min: 0, max: 0 }, syncsBefore,
    };
    this.readings.set(input.id, m);
    return m;
  }

  bySeq(seq: number): ModelReading | undefined {
    return this.#bySeq.get(seq);
  }

  /** Seqs the client could hold now or held once (stale ones make settlements that must be ignored). */
  knownSeqs(): number[] {
    return [...this.#bySeq.keys()];
  }

  leased(): ModelReading[] {
    return [...this.readings.values()].filter((m) => m.flight === 'leased');
  }

  isExpired(m: ModelReading, now: number): boolean {
    return m.input.expiresAt !== undefined && m.input.expiresAt <= now;
  }

  certainlyStored(m: ModelReading): boolean {
    return (m.append === 'stored' || m.seen) && m.removed === 'no';
  }

  /** What every lease of its address must hand out before anything behind it. */
  certainlyLeasable(m: ModelReading, now: number): boolean {
    return this.certainlyStored(m) && m.flight === 'queued' && !this.isExpired(m, now);
  }

  /**
   * Checks one lease's result and records it: nothing handed out twice at once, nothing unknown,
   * refused, removed or expired, ids and times as appended, the order per address (priority, then
   * arrival), and nothing certainly leasable skipped or stranded (`complete`: the lease was not
   * cut short by a storage failure during it, which leaves the rest to the restart).
   */
  leasedNow(address: string, max: number, result: readonly SpooledReading[], now: number, complete = true): void {
    const ids = new Set<string>();
    for (const r of result) {
      assert.ok(!ids.has(r.id), `lease returned ${r.id} twice`);
      ids.add(r.id);
      const m = this.readings.get(r.id);
      assert.ok(m !== undefined, `lease returned ${r.id}, never appended`);
      const input = m.input;
      assert.equal(r.address, address, `${r.id}: leased from ${address}, appended to ${input.address}`);
      assert.equal(r.topic, input.topic, `${r.id}: topic`);
      assert.ok(r.payload.equals(input.payload), `${r.id}: payload`);
      assert.equal(r.priority, input.priority, `${r.id}: priority`);
      assert.equal(r.receivedAt, input.receivedAt, `${r.id}: receivedAt changed (appended ${input.receivedAt})`);
      assert.equal(r.expiresAt, input.expiresAt, `${r.id}: expiresAt changed`);
      assert.notEqual(m.append, 'refused', `${r.id}: its append was refused (reported not stored), yet it is on disk`);
      // Sent while its fsync is out, a power cut could take it back; the device, not acknowledged, sends it again under a new id.
      assert.notEqual(m.append, 'pending', `${r.id}: leased before its append was acknowledged (its fsync not back)`);
      assert.notEqual(m.removed, 'yes', `${r.id}: acked or dead-lettered, yet leased again`);
      assert.notEqual(m.flight, 'leased', `${r.id}: leased twice at once`);
      assert.notEqual(m.flight, 'settling', `${r.id}: leased while its settlement waits for its commit`);
      assert.ok(!this.isExpired(m, now), `${r.id}: leased after it expired (${input.expiresAt} <= ${now})`);
      assert.ok(r.attempts >= m.attempts.min && r.attempts <= m.attempts.max,
        `${r.id}: attempts ${r.attempts}, expected ${m.attempts.min}..${m.attempts.max}`);
      if (m.seq !== undefined) assert.equal(r.seq, m.seq, `${r.id}: seq changed from ${m.seq} to ${r.seq}`);
      const owner = this.#bySeq.get(r.seq);
      assert.ok(owner === undefined || owner === m, `seq ${r.seq} is ${r.id} now and was ${owner?.input.id}`);
    }
    const key = (m: ModelReading): [number, number] => [-m.input.priority, m.order];
    const before = (a: ModelReading, b: ModelReading): boolean => {
      const [ka, kb] = [key(a), key(b)];
      return ka[0] < kb[0] || (ka[0] === kb[0] && ka[1] < kb[1]);
    };
    const got = result.map((r) => this.readings.get(r.id)!);
    for (let i = 1; i < got.length; i++) {
      assert.ok(before(got[i - 1]!, got[i]!), `lease out of order: ${got[i - 1]!.input.id} (p${got[i - 1]!.input.priority}) before ` +
        `${got[i]!.input.id} (p${got[i]!.input.priority})`);
    }
    const last = got.at(-1);
    for (const m of this.readings.values()) {
      if (!complete) break;
      if (m.input.address !== address || ids.has(m.input.id) || !this.certainlyLeasable(m, now)) continue;
      if (result.length < max) assert.fail(`${m.input.id} (p${m.input.priority}) is leasable but a lease of ${max} left it out: stranded`);
      assert.ok(last !== undefined && before(last, m), `${m.input.id} (p${m.input.priority}) was skipped: ${last?.input.id} came after it`);
    }
    for (const r of result) this.#seen(this.readings.get(r.id)!, r);
  }

  /** A reading observed on disk: its uncertainties collapse. */
  #seen(m: ModelReading, r: SpooledReading): void {
    if (m.seq === undefined) {
      for (const other of this.#bySeq.values()) {
        assert.equal(other.seq! < r.seq, other.order < m.order,
          `seqs out of arrival order: ${other.input.id} has ${other.seq}, ${m.input.id} has ${r.seq}`);
      }
      m.seq = r.seq;
      this.#bySeq.set(r.seq, m);
    }
    m.seen = true;
    m.flight = 'leased';
    m.attempts = { min: r.attempts, max: r.attempts };
    if (m.removed === 'maybe') m.removed = 'no';
    if (m.dead === 'maybe') m.dead = 'no';
  }

  released(m: ModelReading): void {
    if (m.flight === 'leased') m.flight = 'queued';
  }

  /** Settlement outcomes, per reading whose settlement took effect (it was leased when issued). */
  settled(m: ModelReading, kind: SettleKind): void {
    m.flight = 'queued';
    if (kind === 'modify') {
      m.attempts = { min: m.attempts.min + 1, max: m.attempts.max + 1 };
      if (m.attempts.min >= this.limits.maxAttempts) this.#gone(m, 'yes', 'yes');
      return;
    }
    this.#gone(m, 'yes', kind === 'reject' ? 'yes' : 'no');
  }

  settleRefused(m: ModelReading, kind: SettleKind, fatal: boolean): void {
    m.flight = 'queued';
    if (!fatal) return;
    // A settlement refused because the storage failed may or may not have reached the disk.
    if (kind === 'modify') {
      m.attempts = { min: m.attempts.min, max: m.attempts.max + 1 };
      if (m.attempts.max >= this.limits.maxAttempts) this.#gone(m, 'maybe', 'maybe');
      return;
    }
    this.#gone(m, 'maybe', kind === 'reject' ? 'maybe' : 'no');
  }

  #gone(m: ModelReading, removed: Maybe, dead: Maybe): void {
    if (m.removed !== 'yes') m.removed = removed;
    if (m.dead !== 'yes') m.dead = dead;
  }

  /** A restart: nothing is in flight any more; every call must have had its outcome by then. */
  restarted(): void {
    for (const m of this.readings.values()) {
      assert.notEqual(m.append, 'pending', `${m.input.id}: its append neither resolved nor failed when the spool stopped`);
      assert.notEqual(m.flight, 'settling', `${m.input.id}: its settlement neither resolved nor failed when the spool stopped`);
      m.flight = 'queued';
    }
  }

  /**
   * After a restart and a lease of everything: every reading certainly stored and not expired is
   * there, nothing refused or removed is; the dead-letter store holds exactly what may be dead.
   */
  checkFinal(present: ReadonlySet<string>, deadLetterIds: ReadonlySet<string>, now: number): void {
    for (const m of this.readings.values()) {
      const id = m.input.id;
      if (this.certainlyStored(m) && !this.isExpired(m, now)) assert.ok(present.has(id), `${id} was acknowledged as stored and is lost`);
      if (m.dead === 'yes') assert.ok(deadLetterIds.has(id), `${id} was dead-lettered and is not in the dead-letter store`);
      if (m.append === 'refused') assert.ok(!deadLetterIds.has(id), `${id}: its append was refused, yet it is in the dead-letter store`);
      if (deadLetterIds.has(id)) assert.ok(m.dead !== 'no' || this.isExpired(m, now), `${id} is in the dead-letter store for no reason`);
    }
    for (const id of deadLetterIds) assert.ok(this.readings.has(id), `dead letter ${id} was never appended`);
  }
}
