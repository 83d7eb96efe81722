/**
 * Model-based test of the forwarder: random sequences (fast-check commands, shrunk on failure) of
 * appends, credit grants and drain requests, outcomes of every kind, disconnects (outcomes lost
 * before or after the state event, or held back and delivered late), reconnects, links closed
 * (lost or held back), the end of an address's wait after a release, and turns of the event loop, against the real SqliteSpool and the real
 * Forwarder, with the scripted upstream. The reference model (reference.ts) checks every event as
 * it happens; each sequence ends by draining everything: every reading accepted or dead-lettered,
 * nothing lost, and stop() leaves no subscription behind.
 *
 * The seed is printed on failure; UPLINK_FORWARD_SEED=<seed> replays it (UPLINK_FORWARD_PATH=<path>
 * goes straight to the shrunk case). UPLINK_FORWARD_RUNS sets the number of sequences.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Outcome } from '../../src/upstream/interface.js';
import { Harness } from './harness.js';
import type { HeldOutcomes } from './scripted-upstream.js';

const ADDRESSES = ['a', 'b', 'c'];
/** `c` is sent presettled. */
const atMostOnce = (address: string): boolean => address === 'c';
const MAX_ATTEMPTS = 3;

type Model = Record<string, never>;
type Cmd = fc.AsyncCommand<Model, Harness>;

function checked(h: Harness, what: string): void {
  const violations = h.violations();
  if (violations.length > 0) throw new Error(`after ${what}:\n  ${violations.join('\n  ')}`);
}

/** A command that always applies; `act` does nothing when the state does not allow it. */
function command(name: string, act: (h: Harness) => void | Promise<void>): Cmd {
  return {
    check: () => true,
    run: async (_model, h) => {
      await act(h);
      checked(h, name);
    },
    toString: () => name,
  };
}

const outcomeArb: fc.Arbitrary<Outcome> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Outcome>({ kind: 'accepted' }) },
  { weight: 2, arbitrary: fc.constant<Outcome>({ kind: 'released' }) },
  { weight: 1, arbitrary: fc.constant<Outcome>({ kind: 'lost' }) },
  { weight: 2, arbitrary: fc.boolean().map<Outcome>((deliveryFailed) => ({ kind: 'modified', deliveryFailed })) },
  { weight: 1, arbitrary: fc.constant<Outcome>({ kind: 'rejected', condition: 'amqp:precondition-failed' }) },
);
const address = fc.constantFrom(...ADDRESSES);
const show = (o: Outcome): string => (o.kind === 'modified' ? `modified(${o.deliveryFailed ? 'failed' : 'ok'})` : o.kind);

const append = fc.record({ address, priority: fc.constantFrom(2, 7), n: fc.integer({ min: 1, max: 4 }) }).map(({ address: a, priority, n }) =>
  command(`append(${a}, p${priority}, ${n})`, async (h) => { await h.append(a, n, priority); }));
const grant = fc.record({ address, n: fc.integer({ min: 1, max: 5 }), drain: fc.boolean() }).map(({ address: a, n, drain }) =>
  command(`grant(${a}, ${n}${drain ? ', drain' : ''})`, (h) => {
    if (h.upstream.connected && h.upstream.current(a) !== undefined) h.upstream.grant(a, n, { drain });
  }));
const outcome = fc.record({ pick: fc.nat(), outcome: outcomeArb, burst: fc.integer({ min: 1, max: 3 }) }).map(({ pick, outcome: o, burst }) =>
  command(`outcome(#${pick}, ${show(o)} x${burst})`, (h) => {
    // A burst: one disposition frame settling several transfers in one go.
    for (let i = 0; i < burst; i++) {
      const open = h.upstream.open();
      if (open.length > 0) h.upstream.deliver(open[(pick + i) % open.length]!, o);
    }
  }));
/** A disposition frame, then the socket closes before the next turn of the event loop. */
const outcomeThenDisconnect = fc.record({ pick: fc.nat(), outcome: outcomeArb, burst: fc.integer({ min: 1, max: 3 }) }).map(({ pick, outcome: o, burst }) =>
  command(`outcome(#${pick}, ${show(o)} x${burst}) + disconnect(lost)`, (h) => {
    if (!h.upstream.connected) return;
    for (let i = 0; i < burst; i++) {
      const open = h.upstream.open();
      if (open.length > 0) h.upstream.deliver(open[(pick + i) % open.length]!, o);
    }
    h.upstream.disconnect('lost');
  }));
const disconnect = fc.constantFrom<HeldOutcomes>('lost', 'lost-after-state', 'withhold').map((held) =>
  command(`disconnect(${held})`, (h) => { if (h.upstream.connected) h.upstream.disconnect(held); }));
const connect = fc.constant(command('connect', (h) => { if (!h.upstream.connected) h.upstream.connect(); }));
const closeLink = fc.record({ address, held: fc.constantFrom<'lost' | 'withhold'>('lost', 'withhold') }).map(({ address: a, held }) =>
  command(`closeLink(${a}, ${held})`, (h) => { if (h.upstream.current(a) !== undefined) h.upstream.closeLink(a, held); }));
const late = fc.record({ pick: fc.nat(), outcome: outcomeArb }).map(({ pick, outcome: o }) =>
  command(`late(#${pick}, ${show(o)})`, (h) => {
    const orphans = h.upstream.orphans();
    if (orphans.length > 0) h.upstream.deliver(orphans[pick % orphans.length]!, o);
  }));
/** The oldest wait of an address after a release ends (the forwarder's holds, ended by hand). */
const endWait = fc.constant(command('endWait', (h) => { h.waits.end(); }));
const tick = fc.constant(command('tick', () => new Promise<void>((resolve) => setImmediate(resolve))));
const quiet = fc.constant(command('quiet', (h) => h.quiet()));

/** fc.commands picks uniformly among its arbitraries: the common events are listed more than once. */
const commands = [append, append, grant, grant, grant, outcome, outcome, outcome, outcomeThenDisconnect, disconnect, connect, connect, closeLink, late,
  endWait, tick, quiet];

const seed = process.env.UPLINK_FORWARD_SEED === undefined ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0 : Number(process.env.UPLINK_FORWARD_SEED);
const path = process.env.UPLINK_FORWARD_PATH;
const runs = Number(process.env.UPLINK_FORWARD_RUNS ?? 400);

test(`forwarder model: ${runs} random sequences against the reference (UPLINK_FORWARD_SEED=${seed})`, async () => {
  const property = fc.asyncProperty(fc.commands(commands, { maxCommands: 60, size: 'max' }), async (cmds) => {
    const h = await Harness.start({ maxAttempts: MAX_ATTEMPTS, atMostOnce, holds: {} });
    try {
      await fc.asyncModelRun(() => ({ model: {} as Model, real: h }), cmds);
      await h.drainAll();
      checked(h, 'draining everything');
      await h.forwarder.stop();
      assert.equal(h.upstream.subscriptions().all, 0, 'stop() leaves no credit subscription');
    } finally {
      await h.stop();
    }
  });
  try {
    await fc.assert(property, { seed, numRuns: runs, ...(path === undefined ? {} : { path }) });
  } catch (err) {
    // fast-check's report names the seed and the path of the shrunk case: both replay it.
    console.error(`forwarder model failed: replay with UPLINK_FORWARD_SEED=${seed}`);
    throw err;
  }
});
