/**
 * The real Forwarder between the real SqliteSpool (watched by the reference model) and the
 * scripted upstream: what every test of test/forward builds.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Forwarder } from '../../src/forward/forwarder.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../peers/memory-log.js';
import { spoolOptions } from '../spool/options.js';
import { ObservedSpool, Reference } from './reference.js';
import { ScriptedUpstream, type Transfer } from './scripted-upstream.js';
import type { Outcome } from '../../src/upstream/interface.js';

export interface HarnessOptions {
  maxAttempts?: number;
  /** Addresses sent presettled (at-most-once). */
  atMostOnce?: (address: string) => boolean;
  /**
   * The forwarder's waits after a release (base 100 ms, cap 400 ms, jitter from `random`), ended by
   * hand through `waits`. Off by default: a released reading goes again at once.
   */
  holds?: { random?: () => number };
}

/** Waits the forwarder asked for (holds.ts), in order; each ends only when the test says so. */
export class ManualWaits {
  readonly asked: number[] = [];
  readonly #queue: Array<{ run: () => void; cancelled: boolean }> = [];

  readonly schedule = (run: () => void, ms: number): (() => void) => {
    this.asked.push(ms);
    const wait = { run, cancelled: false };
    this.#queue.push(wait);
    return () => { wait.cancelled = true; };
  };

  pending(): number {
    return this.#queue.filter((w) => !w.cancelled).length;
  }

  /** Ends the oldest wait still pending; false when there is none. */
  end(): boolean {
    const next = this.#queue.findIndex((w) => !w.cancelled);
    if (next < 0) return false;
    const [wait] = this.#queue.splice(0, next + 1).slice(-1);
    wait!.run();
    return true;
  }
}

export class Harness {
  readonly dir: string;
  readonly raw: SqliteSpool;
  readonly model: Reference;
  readonly spool: ObservedSpool;
  readonly upstream: ScriptedUpstream;
  readonly forwarder: Forwarder;
  readonly lines: Array<Record<string, unknown>>;
  readonly waits = new ManualWaits();
  #stopped = false;

  constructor(options: HarnessOptions = {}) {
    const maxAttempts = options.maxAttempts ?? 1000;
    const { log, lines } = memoryLogger();
    this.lines = lines;
    this.dir = mkdtempSync(join(tmpdir(), 'uplink-forward-'));
    this.raw = new SqliteSpool(spoolOptions(this.dir, { durability: 'normal', maxAttempts, reserveBytes: 0, log: log.child({ component: 'spool' }) }));
    this.model = new Reference({ maxAttempts });
    this.spool = new ObservedSpool(this.raw, this.model);
    this.upstream = new ScriptedUpstream({
      onSend: (t) => this.model.sent(t),
      onOutcome: (t, outcome) => this.model.outcome(t, outcome),
    });
    const atMostOnce = options.atMostOnce ?? (() => false);
    this.forwarder = new Forwarder({
      spool: this.spool, upstream: this.upstream, log: log.child({ component: 'forward' }),
      route: (address) => ({ delivery: atMostOnce(address) ? 'at-most-once' : 'at-least-once' }),
      holdAfterRelease: options.holds === undefined ? { baseMs: 0, capMs: 0 }
        : { baseMs: 100, capMs: 400, schedule: this.waits.schedule, ...(options.holds.random ? { random: options.holds.random } : {}) },
    });
  }

  static async start(options: HarnessOptions = {}): Promise<Harness> {
    const h = new Harness(options);
    await h.spool.start();
    await h.upstream.start();
    await h.forwarder.start();
    return h;
  }

  /** Appends `n` new readings for `address` (one transaction) and waits for the commit. */
  async append(address: string, n = 1, priority = 4): Promise<string[]> {
    const readings = Array.from({ length: n }, () => this.model.reading(address, priority));
    await this.spool.append(readings);
    return readings.map((r) => r.payload.toString());
  }

  /**
   * Waits until the forwarder, the spool and its commits have nothing more to do: every
   * settlement and append resolved, and a full turn of the event loop with none started.
   */
  async quiet(): Promise<void> {
    for (let rounds = 0; ; rounds++) {
      if (rounds > 10_000) throw new Error('never quiet: something keeps the spool busy');
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.spool.pending === 0) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.spool.pending === 0) return;
      }
    }
  }

  /** Payloads of the transfers sent so far (all connections), in order; only those of `address` if given. */
  sent(address?: string): string[] {
    return this.upstream.transfers.filter((t) => address === undefined || t.link.address === address).map((t) => t.message.payload.toString());
  }

  /** Delivers `outcome` to every open transfer (of `address`), one by one in the order sent. */
  settleAll(outcome: Outcome, address?: string): Transfer[] {
    const open = this.upstream.open(address);
    for (const t of open) this.upstream.deliver(t, outcome);
    return open;
  }

  /** Payloads of the open transfer(s) of `address`. */
  open(address?: string): string[] {
    return this.upstream.open(address).map((t) => t.message.payload.toString());
  }

  violations(): string[] {
    return [...this.upstream.violations, ...this.model.violations];
  }

  /**
   * Sends everything left: connects if need be, reports what was held back as lost, grants
   * credit on every address with readings and accepts all, until the spool is empty. Then checks
   * that every reading was accepted (or dead-lettered) and nothing was lost.
   */
  async drainAll(): Promise<void> {
    await this.quiet();
    if (!this.upstream.connected) this.upstream.connect();
    for (const t of this.upstream.orphans()) this.upstream.deliver(t, { kind: 'lost' });
    // Generous: a link closed under waiting readings is asked for again only at the forwarder's next check.
    const deadline = performance.now() + 30_000;
    for (;;) {
      await this.quiet();
      while (this.waits.end()) await this.quiet();
      this.settleAll({ kind: 'accepted' });
      await this.quiet();
      const depth = this.raw.stats().depth;
      if (depth === 0) break;
      if (performance.now() > deadline) throw new Error(`the spool does not drain: depth ${depth}, ${JSON.stringify(this.raw.stats().byAddress)}`);
      for (const address of new Set([...this.model.refs.values()].map((r) => r.address))) {
        // The forwarder asks for the link when it pumps; an address it never pumped has none yet.
        if (this.upstream.current(address) !== undefined) this.upstream.grant(address, 8);
      }
    }
    for (const ref of this.model.refs.values()) {
      assert.ok(ref.state === 'acked' || ref.state === 'dead', `${ref.payload} ends ${ref.state}`);
      if (ref.state === 'acked') assert.ok(ref.everAccepted, `${ref.payload} acked, never accepted`);
    }
    assert.equal(this.raw.stats().inFlight, 0);
    assert.equal(this.raw.deadLetters.count(), this.model.count('dead'));
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.forwarder.stop();
    await this.upstream.stop();
    await this.spool.stop();
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 5 });
  }
}
