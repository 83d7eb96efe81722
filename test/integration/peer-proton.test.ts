// Proves the Qpid Proton test peer can be trusted as the judge of credit and outcomes: it sees every transfer
// of a sender that keeps to its credit, it catches a sender that does not, it answers with exactly the
// outcomes it was told to, and it refuses a client certificate from a foreign CA.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import rhea, { type Connection, type ConnectionOptions, type EventContext, type Sender, type SenderOptions } from 'rhea';
import { makeTestPki, type CertPair, type TestPki } from '../peers/certs.js';
import { startProtonReceiver, type Outcome, type ProtonPeer } from '../peers/proton.js';

/** rhea's own flow-control state of a sender; both are plain fields missing from rhea's typings. */
interface SenderFlowState {
  credit: number;
  /** Transfers rhea has actually written to the wire on this link. */
  delivery_count: number;
}

let pki: TestPki;
const peers: ProtonPeer[] = [];
const connections: Connection[] = [];

before(async () => {
  pki = await makeTestPki();
});

after(async () => {
  for (const connection of connections) {
    try {
      connection.close();
    } catch {
      // already closed by the test itself
    }
  }
  await Promise.all(peers.map((peer) => peer.stop()));
  for (const peer of peers) {
    assert.throws(() => process.kill(peer.pid, 0), 'the Proton peer must not outlive the tests');
  }
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

async function peer(options: Parameters<typeof startProtonReceiver>[0]): Promise<ProtonPeer> {
  const started = await startProtonReceiver({ pki, ...options });
  peers.push(started);
  return started;
}

function connect(target: ProtonPeer, client: CertPair): Connection {
  const options = {
    transport: 'tls',
    host: '127.0.0.1',
    port: target.port,
    servername: 'localhost',
    ca: readFileSync(pki.ca.cert),
    cert: readFileSync(client.cert),
    key: readFileSync(client.key),
    // SASL EXTERNAL needs the top-level cert and this flag, which rhea's typings lack.
    enable_sasl_external: true,
    reconnect: false,
  };
  const connection = rhea.create_container({ id: 'peer-proton-test' }).connect(options as unknown as ConnectionOptions);
  connections.push(connection);
  return connection;
}

function within<T>(ms: number, what: string, run: (resolve: (value: T) => void, reject: (err: Error) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    run((value) => { clearTimeout(timer); resolve(value); }, (err) => { clearTimeout(timer); reject(err); });
  });
}

function failOnConnectionErrors(connection: Connection, reject: (err: Error) => void): void {
  connection.on('connection_error', (ctx: EventContext) =>
    reject(new Error(`connection error: ${JSON.stringify(ctx.connection.error ?? String(ctx.error))}`)));
  connection.on('disconnected', (ctx: EventContext) => reject(new Error(`disconnected: ${String(ctx.error ?? 'no error')}`)));
  connection.on('sender_error', (ctx: EventContext) => reject(new Error(`sender error: ${JSON.stringify(ctx.sender?.error)}`)));
}

describe('Qpid Proton receiver test peer', { timeout: 45_000 }, () => {
  it('records every transfer of a sender that keeps to its credit, none over credit', async () => {
    const total = 50;
    const window = 5;
    const receiver = await peer({ credit: { mode: 'window', n: window } });
    const connection = connect(receiver, pki.client);
    let maxCredit = 0;

    await within<void>(15_000, `${total} accepted`, (resolve, reject) => {
      failOnConnectionErrors(connection, reject);
      const sender = connection.open_sender({ name: 'well-behaved', target: { address: '/queue/telemetry' } });
      let sent = 0;
      let accepted = 0;
      sender.on('sendable', (ctx: EventContext) => {
        const link = ctx.sender as Sender & SenderFlowState;
        maxCredit = Math.max(maxCredit, link.credit);
        // rhea lowers `credit` only when it writes a transfer, a tick after send(): messages handed to
        // send() but not yet written (sent - delivery_count) still use up credit.
        while (sent < total && link.credit - (sent - link.delivery_count) > 0) {
          link.send({ message_id: `good-${sent}`, durable: true, body: `reading ${sent}` });
          sent += 1;
        }
      });
      sender.on('accepted', () => {
        accepted += 1;
        if (accepted === total) resolve();
      });
      sender.on('rejected', () => reject(new Error('unexpected rejection')));
    });

    const transfers = await receiver.waitForTransfers(total, 5_000);
    assert.equal(transfers.length, total);
    assert.deepEqual(transfers.map((t) => t.message_id), Array.from({ length: total }, (_, i) => `good-${i}`));
    assert.equal(receiver.overCredit(), 0);
    for (const transfer of transfers) {
      assert.ok(transfer.credit >= 1 && transfer.credit <= window, `transfer ${transfer.index} credit ${transfer.credit}`);
      assert.equal(transfer.address, '/queue/telemetry');
      assert.equal(transfer.body_size, `reading ${transfer.index - 1}`.length);
    }
    // The sender's view agrees: the grants never let it have more than the window.
    assert.equal(maxCredit, window, 'the most credit the sender ever held');
    const flows = receiver.events().filter((e) => e.event === 'flow');
    assert.ok(flows.every((f) => f.credit === window), 'every grant tops up to the window');
    const opened = receiver.events().find((e) => e.event === 'connection');
    assert.match(String(opened?.user), /line1-gw/, 'SASL EXTERNAL authenticated the client cert');
    connection.close();
  });

  it('catches a sender that puts transfers on the wire beyond its credit', async () => {
    const granted = 5;
    const beyond = 10;
    // One batch of 5 and nothing after it: every later transfer is unambiguously over credit.
    const receiver = await peer({ credit: { mode: 'batch', n: granted, total: granted } });
    const connection = connect(receiver, pki.client);

    await within<void>(10_000, 'first credit', (resolve, reject) => {
      failOnConnectionErrors(connection, reject);
      const sender = connection.open_sender({ name: 'misbehaving', target: { address: '/queue/telemetry' } });
      let done = false;
      sender.on('sendable', (ctx: EventContext) => {
        if (done) return;
        done = true;
        const link = ctx.sender as Sender & SenderFlowState;
        if (link.credit !== granted) {
          reject(new Error(`expected one batch of ${granted} credits, got ${link.credit}`));
          return;
        }
        for (let i = 0; i < granted; i += 1) link.send({ message_id: `in-credit-${i}`, body: 'ok' });
        // rhea's session writes a queued transfer whenever `link.credit > 0` and then lowers it
        // (Outgoing.process in session.js); `credit` is a plain field that only an incoming flow frame
        // recomputes. Raising it by hand makes rhea write 10 transfers the receiver never granted, and
        // the peer sends no flow that would reset it, because its total is capped at 5.
        link.credit += beyond;
        for (let i = 0; i < beyond; i += 1) link.send({ message_id: `beyond-${i}`, body: 'too many' });
        resolve();
      });
    });

    const transfers = await receiver.waitForTransfers(granted + beyond, 10_000);
    assert.equal(receiver.overCredit(), beyond, 'every transfer beyond the granted 5 is flagged');
    assert.ok(receiver.overCredit() > 0);
    assert.deepEqual(transfers.slice(0, granted).map((t) => t.over_credit), Array(granted).fill(false));
    assert.deepEqual(transfers.slice(granted).map((t) => t.message_id), Array.from({ length: beyond }, (_, i) => `beyond-${i}`));
    assert.deepEqual(transfers.map((t) => t.credit), Array.from({ length: granted + beyond }, (_, i) => granted - i));
    assert.equal(receiver.events().filter((e) => e.event === 'flow').length, 1, 'exactly one grant');
    connection.close();
  });

  it('settles each transfer with the outcome its rule or application property names', async () => {
    const receiver = await peer({
      credit: { mode: 'window', n: 3 },
      outcomes: [
        { outcome: 'release', at: [2, 10] },
        { outcome: 'modify', at: [3, 7] },
        { outcome: 'reject', every: 4 },
      ],
    });
    // The application property beats the rules: 6 is rejected by it, 10 accepted despite `release:at=10`.
    const byProperty: Record<number, Outcome> = { 6: 'reject', 10: 'accept' };
    const expected: Record<string, string> = {
      1: 'accepted', 2: 'released', 3: 'modified', 4: 'rejected', 5: 'accepted',
      6: 'rejected', 7: 'modified', 8: 'rejected', 9: 'accepted', 10: 'accepted',
    };
    const count = Object.keys(expected).length;
    const connection = connect(receiver, pki.client);
    const seen: Record<string, string[]> = {};
    const rejections: Record<string, unknown> = {};
    const modifications: Record<string, unknown> = {};

    await within<void>(10_000, `${count} settled`, (resolve, reject) => {
      failOnConnectionErrors(connection, reject);
      // So that `modified` is reported as itself, not also as `released`.
      const sender = connection.open_sender({ name: 'outcomes', target: { address: '/queue/outcomes' },
        treat_modified_as_released: false } as SenderOptions);
      let sent = 0;
      let settled = 0;
      sender.on('sendable', (ctx: EventContext) => {
        const link = ctx.sender as Sender & SenderFlowState;
        while (sent < count && link.credit - (sent - link.delivery_count) > 0) {
          sent += 1;
          const outcome = byProperty[sent];
          link.send({ message_id: `m${sent}`, body: `n=${sent}`, ...(outcome ? { application_properties: { outcome } } : {}) });
        }
      });
      for (const name of ['accepted', 'rejected', 'released', 'modified'] as const) {
        sender.on(name, (ctx: EventContext) => {
          const id = String(ctx.delivery?.tag ?? '');
          (seen[id] ??= []).push(name);
          if (name === 'rejected') rejections[id] = (ctx.delivery?.remote_state as { error?: unknown } | undefined)?.error;
          if (name === 'modified') modifications[id] = ctx.delivery?.remote_state;
        });
      }
      sender.on('settled', () => {
        settled += 1;
        if (settled === count) resolve();
      });
    });

    // rhea tags deliveries "0", "1", ... in send order; message n has tag n-1.
    const observed = Object.fromEntries(Object.entries(seen).map(([tag, names]) => [String(Number(tag) + 1), names.join('+')]));
    assert.deepEqual(observed, expected);
    const rejection = rejections['3'] as { condition?: string; description?: string } | undefined;
    assert.equal(rejection?.condition, 'amqp:precondition-failed');
    assert.match(String(rejection?.description), /rule reject:every=4/);
    assert.match(String((rejections['5'] as { description?: string } | undefined)?.description), /application property outcome=reject/);
    assert.equal((modifications['2'] as { delivery_failed?: boolean } | undefined)?.delivery_failed, true);
    // The peer's stdout can trail the sender's events; wait for its records rather than read them early.
    const recorded = (await receiver.waitForTransfers(count, 5_000)).map((t) => t.outcome);
    assert.deepEqual(recorded, ['accept', 'release', 'modify', 'reject', 'accept', 'reject', 'modify', 'reject', 'accept', 'accept']);
    connection.close();
  });

  it('refuses a client certificate from a foreign CA and accepts ours', async () => {
    const receiver = await peer({ credit: { mode: 'window', n: 5 } });

    const foreign = connect(receiver, pki.foreignClient);
    const refusal = await within<string>(10_000, 'the foreign client to be refused', (resolve, reject) => {
      foreign.on('connection_open', () => reject(new Error('the foreign client got an AMQP connection')));
      foreign.on('connection_error', (ctx: EventContext) => resolve(`connection_error ${JSON.stringify(ctx.connection.error)}`));
      foreign.on('disconnected', (ctx: EventContext) => resolve(`disconnected ${String(ctx.error ?? '')}`));
    });
    assert.match(refusal, /^(disconnected|connection_error)/);
    assert.equal(foreign.is_open(), false);

    // Same peer, our CA: the refusal above was about the certificate, not a peer that refuses everyone.
    const ours = connect(receiver, pki.client);
    await within<void>(10_000, 'our client to connect', (resolve, reject) => {
      ours.on('connection_open', () => resolve());
      failOnConnectionErrors(ours, reject);
    });
    await receiver.waitForEvent((e) => e.event === 'connection', 5_000);
    const opened = receiver.events().filter((e) => e.event === 'connection');
    assert.equal(opened.length, 1, 'only our client got an AMQP connection');
    assert.match(String(opened[0]?.user), /line1-gw/);
    const failure = receiver.events().find((e) => e.event === 'transport_error');
    assert.match(String(failure?.description), /certificate verify failed/, 'refused by TLS client-cert verification');
    ours.close();
  });
});
