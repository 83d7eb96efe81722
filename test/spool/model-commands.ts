/**
 * The commands of the model-based spool test, as fast-check arbitraries. Each runs against the real
 * spool (model-world.ts), records what the client learnt in the reference model
 * (model-reference.ts), and checks after every step what must hold at any moment:
 * - a failed fsync or an I/O error inside a commit stops the spool at once (onFatal, one fatal line);
 * - the readings in flight are exactly those the client holds (stats().inFlight);
 * - whatever became leasable in the step was announced (onAvailable) for its address, since the
 *   forwarder leases only when told;
 * - the outcomes that arrived in the step were allowed (see append/settle below).
 * Picks (which seq to settle, which fsync to complete) are indices taken modulo what exists when
 * the command runs, so any subsequence of a failing run is still a valid run (shrinking).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { RoutedReading } from '../../src/core/envelope.js';
import type { GatewayError } from '../../src/core/errors.js';
import { type ModelReading, ReferenceModel, type SettleKind } from './model-reference.js';
import { type CommitFault, drainMicrotasks, type World } from './model-world.js';

export const ADDRESSES = ['a', 'b', 'c'] as const;
type Address = (typeof ADDRESSES)[number];

/** How often the runs reached the situations that matter (printed by the test, to show they are reached). */
export const coverage: Record<string, number> = {};
function saw(what: string, yes = true): void {
  if (yes) coverage[what] = (coverage[what] ?? 0) + 1;
}

/** Failures seen in promise callbacks; the step that let them run throws the first. */
const problems: unknown[] = [];

function guard(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    problems.push(err);
  }
}

/** What holds at the end of every step, and before a restart forgets the instance that stopped. */
async function checkMoment(world: World): Promise<void> {
  await drainMicrotasks();
  if (problems.length > 0) throw problems[0];
  if (world.fatalThrown) {
    assert.ok(world.failed, 'an I/O error inside a commit did not stop the spool');
    world.fatalThrown = false;
  }
  assert.equal(world.fatalLines, world.failed ? 1 : 0, 'one fatal line per storage failure');
}

let serial = 0;

abstract class Step implements fc.AsyncCommand<ReferenceModel, World> {
  check(): boolean {
    return true;
  }

  async run(model: ReferenceModel, world: World): Promise<void> {
    problems.length = 0;
    const leasable = (): Set<ModelReading> => new Set([...model.readings.values()].filter((m) => model.certainlyLeasable(m, world.now)));
    const before = leasable();
    const emits = new Map(world.emits);
    await this.act(model, world);
    await checkMoment(world);
    assert.equal(world.spool.stats().inFlight, model.leased().length, 'readings in flight: the spool and the client disagree');
    if (this.restarts || world.failed) return;
    for (const m of leasable()) {
      if (before.has(m)) continue;
      const address = m.input.address;
      assert.ok((world.emits.get(address) ?? 0) > (emits.get(address) ?? 0), `${m.input.id} became leasable and ${address} was not announced`);
    }
  }

  get restarts(): boolean {
    return false;
  }

  abstract act(model: ReferenceModel, world: World): Promise<void>;
  abstract toString(): string;
}

interface NewReading {
  address: Address;
  priority: number;
  ttl: number | null;
}

class Append extends Step {
  constructor(readonly batch: NewReading[], readonly abortable: boolean) {
    super();
  }

  async act(model: ReferenceModel, world: World): Promise<void> {
    const inputs: RoutedReading[] = this.batch.map((r) => {
      serial += 1;
      const input: RoutedReading = {
        id: `r${serial}`, topic: `t/${r.address}`, payload: Buffer.from(`p${serial}`), receivedAt: world.now, address: r.address, priority: r.priority,
      };
      if (r.ttl !== null) input.expiresAt = world.now + r.ttl;
      return input;
    });
    const wasFailed = world.failed;
    const entries = inputs.map((input) => model.appended(input, world.syncs));
    const controller = this.abortable ? new AbortController() : undefined;
    if (controller !== undefined) world.abortable.push(controller);
    const done = (): void => {
      const i = controller === undefined ? -1 : world.abortable.indexOf(controller);
      if (i >= 0) world.abortable.splice(i, 1);
    };
    world.spool.append(inputs, controller === undefined ? {} : { signal: controller.signal }).finally(done).then(() => guard(() => {
      assert.ok(!world.failed, `${inputs[0]!.id}: an append was acknowledged after the storage failed`);
      saw('append acknowledged');
      for (const m of entries) {
        assert.ok(world.maxSyncedOk >= m.syncsBefore, `${m.input.id}: acknowledged before an fsync after it succeeded`);
        m.append = 'stored';
      }
    }), (err: GatewayError) => guard(() => {
      if (wasFailed || world.failed) assert.equal(err.code, 'STORAGE_FAILED', 'after a storage failure, appends are refused with it');
      saw(`append refused (${err.code})`);
      for (const m of entries) {
        if (err.code === 'STORAGE_FAILED') {
          m.append = 'unknown';
        } else {
          assert.ok(err.retryable, `append failed with ${err.code}: ${err.message}`);
          assert.ok(!m.seen, `${m.input.id}: reported not stored (${err.code}), yet it was leased: a device would send it again`);
          m.append = 'refused';
        }
      }
    }));
  }

  toString(): string {
    return `append(${this.batch.map((r) => `${r.address}/p${r.priority}${r.ttl === null ? '' : `/ttl${r.ttl}`}`).join(' ')}${this.abortable ? ', signal' : ''})`;
  }
}

/** A device gives up waiting: the k-th append still outstanding with a signal is aborted. */
class Abort extends Step {
  constructor(readonly index: number) {
    super();
  }

  async act(_model: ReferenceModel, world: World): Promise<void> {
    if (world.abortable.length === 0) return;
    saw('abort of an append still outstanding');
    world.abortable[this.index % world.abortable.length]!.abort();
  }

  toString(): string {
    return `abort#${this.index}`;
  }
}

class Lease extends Step {
  constructor(readonly address: Address, readonly max: number) {
    super();
  }

  async act(model: ReferenceModel, world: World): Promise<void> {
    const failed = world.failed;
    saw('lease while a settlement of its address waits for its commit',
      [...model.readings.values()].some((m) => m.flight === 'settling' && m.input.address === this.address));
    const result = await world.spool.lease(this.address, this.max);
    saw('lease that returned readings', result.length > 0);
    saw('lease that returned a reading settled before (modify, failed commit)', result.some((r) => model.readings.get(r.id)?.seq !== undefined));
    if (failed) assert.deepEqual(result, [], 'nothing is handed out after the storage failed');
    // Removing expired readings during the lease may fail the storage: what it found until then is out.
    else model.leasedNow(this.address, this.max, result, world.now, !world.failed);
  }

  toString(): string {
    return `lease(${this.address}, ${this.max})`;
  }
}

/** A seq to settle: one the client holds now, or (stale) any it ever held. */
interface Pick {
  stale: boolean;
  index: number;
}

function pickSeqs(model: ReferenceModel, picks: Pick[]): number[] {
  const leased = model.leased().map((m) => m.seq!);
  const known = model.knownSeqs();
  const out: number[] = [];
  for (const p of picks) {
    const from = p.stale || leased.length === 0 ? known : leased;
    if (from.length > 0) out.push(from[p.index % from.length]!);
  }
  return out;
}

class Settle extends Step {
  constructor(readonly kind: SettleKind, readonly picks: Pick[]) {
    super();
  }

  async act(model: ReferenceModel, world: World): Promise<void> {
    const seqs = pickSeqs(model, this.picks);
    if (seqs.length === 0) return;
    const failed = world.failed;
    const owned = [...new Set(seqs)].map((seq) => model.bySeq(seq)!).filter((m) => m.flight === 'leased' && !failed);
    for (const m of owned) m.flight = 'settling';
    const kind = this.kind;
    const call = kind === 'reject' ? world.spool.reject(seqs, { condition: 'amqp:not-allowed' }) : world.spool[kind](seqs);
    call.then(() => guard(() => {
      assert.ok(!failed, `${kind} after the storage failed was reported done`);
      saw(`${kind} committed`, owned.length > 0);
      saw('modify at the attempt cap committed', kind === 'modify' && owned.some((m) => m.attempts.min + 1 >= model.limits.maxAttempts));
      for (const m of owned) model.settled(m, kind);
    }), (err: GatewayError) => guard(() => {
      if (failed || world.failed) assert.equal(err.code, 'STORAGE_FAILED', `after a storage failure, ${kind} is refused with it`);
      const fatal = err.code === 'STORAGE_FAILED';
      assert.ok(fatal || err.retryable, `${kind} failed with ${err.code}: ${err.message}`);
      saw(`${kind} refused (${err.code})`);
      for (const m of owned) model.settleRefused(m, kind, fatal);
    }));
  }

  toString(): string {
    return `${this.kind}(${this.picks.map((p) => `${p.stale ? 'any' : 'held'}#${p.index}`).join(' ')})`;
  }
}

class Release extends Step {
  constructor(readonly picks: Pick[]) {
    super();
  }

  async act(model: ReferenceModel, world: World): Promise<void> {
    const seqs = pickSeqs(model, this.picks);
    await world.spool.release(seqs);
    for (const seq of seqs) model.released(model.bySeq(seq)!);
  }

  toString(): string {
    return `release(${this.picks.map((p) => `${p.stale ? 'any' : 'held'}#${p.index}`).join(' ')})`;
  }
}

class ReleaseAll extends Step {
  constructor(readonly address: Address | null) {
    super();
  }

  async act(model: ReferenceModel, world: World): Promise<void> {
    saw('releaseAll between a settlement and its commit', [...model.readings.values()].some((m) => m.flight === 'settling'));
    world.spool.releaseAll(this.address ?? undefined);
    for (const m of model.leased()) if (this.address === null || m.input.address === this.address) model.released(m);
  }

  toString(): string {
    return `releaseAll(${this.address ?? ''})`;
  }
}

class Tick extends Step {
  constructor(readonly turns: number) {
    super();
  }

  async act(_model: ReferenceModel, world: World): Promise<void> {
    for (let i = 0; i < this.turns; i++) await world.tick();
    const stats = world.spool.stats();
    saw('disk full (appends wait)', stats.diskFull);
    saw('quota full (appends wait)', stats.blocked && !stats.diskFull);
  }

  toString(): string {
    return `tick(${this.turns})`;
  }
}

class FailCommits extends Step {
  constructor(readonly code: CommitFault, readonly count: number) {
    super();
  }

  async act(_model: ReferenceModel, world: World): Promise<void> {
    for (let i = 0; i < this.count; i++) world.plan.push(this.code);
  }

  toString(): string {
    return `failCommits(${this.code} x${this.count})`;
  }
}

class Sync extends Step {
  constructor(readonly index: number, readonly ok: boolean) {
    super();
  }

  async act(_model: ReferenceModel, world: World): Promise<void> {
    saw('fsync completed out of order', world.held.length > 1 && this.index % world.held.length !== 0);
    if (!world.completeSync(this.index, this.ok) || this.ok) return;
    await drainMicrotasks();
    assert.ok(world.failed, 'an fsync failed and the spool did not stop');
  }

  toString(): string {
    return `fsync#${this.index} ${this.ok ? 'ok' : 'EIO'}`;
  }
}

class FailSyncAtOnce extends Step {
  async act(_model: ReferenceModel, world: World): Promise<void> {
    world.failNextSyncAtOnce = true;
  }

  toString(): string {
    return 'next fsync fails at once';
  }
}

class AdvanceClock extends Step {
  constructor(readonly ms: number) {
    super();
  }

  async act(_model: ReferenceModel, world: World): Promise<void> {
    world.now += this.ms;
  }

  toString(): string {
    return `clock+${this.ms}`;
  }
}

class Restart extends Step {
  constructor(readonly syncsOk: boolean) {
    super();
  }

  override get restarts(): boolean {
    return true;
  }

  async act(model: ReferenceModel, world: World): Promise<void> {
    saw('restart after a storage failure', world.failed);
    saw('restart');
    await world.stop(this.syncsOk);
    await checkMoment(world);
    model.restarted();
    await world.start();
  }

  toString(): string {
    return `restart(fsyncs ${this.syncsOk ? 'ok' : 'EIO'})`;
  }
}

const address = fc.constantFrom(...ADDRESSES);
// Few distinct priorities make ties (arrival order) common; any of 0-9 is possible.
const priority = fc.oneof({ arbitrary: fc.constantFrom(4, 4, 9), weight: 2 }, { arbitrary: fc.integer({ min: 0, max: 9 }), weight: 1 });
const reading = fc.record({ address, priority, ttl: fc.option(fc.constantFrom(500, 2000, 10_000), { freq: 3 }) });
const picks = fc.array(fc.record({ stale: fc.oneof({ arbitrary: fc.constant(false), weight: 5 }, { arbitrary: fc.constant(true), weight: 1 }), index: fc.nat(50) }),
  { minLength: 1, maxLength: 3 });

export const commands = fc.oneof(
  { arbitrary: fc.tuple(fc.array(reading, { minLength: 1, maxLength: 3 }), fc.boolean()).map(([batch, signal]) => new Append(batch, signal)), weight: 6 },
  { arbitrary: fc.nat(8).map((k) => new Abort(k)), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 2 }).map((n) => new Tick(n)), weight: 6 },
  { arbitrary: fc.tuple(address, fc.integer({ min: 1, max: 6 })).map(([a, n]) => new Lease(a, n)), weight: 5 },
  { arbitrary: picks.map((p) => new Settle('ack', p)), weight: 3 },
  { arbitrary: picks.map((p) => new Settle('modify', p)), weight: 2 },
  { arbitrary: picks.map((p) => new Settle('reject', p)), weight: 1 },
  { arbitrary: picks.map((p) => new Release(p)), weight: 2 },
  { arbitrary: fc.option(address, { freq: 2 }).map((a) => new ReleaseAll(a)), weight: 2 },
  // A fatal failure ends what a run can do until it restarts: rarer than the retryable ones.
  { arbitrary: fc.tuple(fc.constantFrom<CommitFault>('SQLITE_BUSY', 'SQLITE_BUSY', 'SQLITE_FULL', 'SQLITE_FULL', 'SQLITE_IOERR_WRITE'),
    fc.integer({ min: 1, max: 2 })).map(([code, n]) => new FailCommits(code, n)), weight: 2 },
  { arbitrary: fc.tuple(fc.nat(8), fc.oneof({ arbitrary: fc.constant(true), weight: 29 }, { arbitrary: fc.constant(false), weight: 1 }))
    .map(([k, ok]) => new Sync(k, ok)), weight: 4 },
  { arbitrary: fc.constant(null).map(() => new FailSyncAtOnce()), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 3000 }).map((ms) => new AdvanceClock(ms)), weight: 1 },
  { arbitrary: fc.oneof({ arbitrary: fc.constant(true), weight: 4 }, { arbitrary: fc.constant(false), weight: 1 }).map((ok) => new Restart(ok)), weight: 1 },
);

/**
 * The end of every run: the spool stops and opens again, and everything is leased: nothing
 * acknowledged is lost, in order, and the dead-letter store holds exactly what may be dead.
 */
export async function finalCheck(model: ReferenceModel, world: World): Promise<void> {
  world.plan.length = 0;
  await new Restart(true).run(model, world);
  const present = new Set<string>();
  for (const a of ADDRESSES) {
    const all = await world.spool.lease(a, 1_000_000);
    model.leasedNow(a, 1_000_000, all, world.now);
    for (const r of all) present.add(r.id);
  }
  const dead = new Set(world.spool.deadLetters.list({ limit: 1_000_000 }).map((d) => d.id));
  model.checkFinal(present, dead, world.now);
  saw('expired reading dropped or dead-lettered', [...model.readings.values()].some((m) => model.isExpired(m, world.now) && !present.has(m.input.id)));
  const stats = world.spool.stats();
  assert.equal(stats.depth, present.size, 'stats().depth counts what is there');
  assert.equal(stats.deadLetters, dead.size, 'stats().deadLetters counts the dead-letter store');
}
