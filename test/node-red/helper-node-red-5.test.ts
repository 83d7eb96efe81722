/**
 * node-red-node-test-helper on Node-RED 5: the nodes load, uplink out stores a reading (Complete
 * fires) with uplink status reporting it, and uplink in runs: it has its receiver and follows the
 * connection in its status. No broker: the upstream is a closed port.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import uplinkIn from '../../src/node-red/uplink-in.js';
import uplinkOut from '../../src/node-red/uplink-out.js';
import uplinkStatus from '../../src/node-red/uplink-status.js';
import uplinkUpstream from '../../src/node-red/uplink-upstream.js';
import { freePort } from '../peers/ports.js';
import { collect, testHelper, until, withHooks } from './helpers.js';

const helper = testHelper(5);

before(async () => { await helper.startServer(); });
after(async () => {
  await helper.unload();
  await helper.stopServer();
});

describe('the nodes in node-red-node-test-helper on Node-RED 5', () => {
  test('uplink out stores, uplink status reports, uplink in starts', async () => {
    assert.match((helper as unknown as { _RED: { version(): string } })._RED.version(), /^5\./);
    const port = await freePort();
    await helper.load(withHooks(5, uplinkUpstream, uplinkOut, uplinkIn, uplinkStatus), [
      { id: 'f1', type: 'tab' },
      { id: 'cfg', type: 'uplink-upstream', url: `amqp://127.0.0.1:${port}`, sasl: 'anonymous' },
      { id: 'out', type: 'uplink out', z: 'f1', upstream: 'cfg', wires: [] },
      { id: 'on-complete', type: 'complete', z: 'f1', scope: ['out'], uncaught: false, wires: [['stored']] },
      { id: 'stored', type: 'helper', z: 'f1' },
      { id: 'in', type: 'uplink in', z: 'f1', upstream: 'cfg', address: '/queue/commands', wires: [['cmd']] },
      { id: 'cmd', type: 'helper', z: 'f1' },
      { id: 'stats', type: 'uplink status', z: 'f1', upstream: 'cfg', wires: [['report']] },
      { id: 'report', type: 'helper', z: 'f1' },
    ]);
    const stored = collect(helper.getNode('stored'));
    const report = collect(helper.getNode('report'));
    helper.getNode('out').receive({ topic: 'sensor/x', payload: { v: 1 } });
    await until(() => stored.messages.length === 1, 'stored');
    helper.getNode('stats').receive({});
    await until(() => report.messages.length === 1, 'reported');
    assert.equal((report.messages[0]!.payload as { spool: { depth: number } }).spool.depth, 1);

    // uplink in started (no config or hooks problem) and made its receiver (the status reads it):
    // the status follows the connection, with its address and the reason, and shows no spool
    // depth (that is uplink out's).
    const spy = (helper as unknown as { _NodePrototype: { status: { getCalls(): Array<{ thisValue: { id: string }; args: Array<{ fill?: string; shape?: string; text?: string }> }> } } })
      ._NodePrototype.status;
    const statusOfIn = (): Array<{ fill?: string; shape?: string; text?: string }> =>
      spy.getCalls().filter((c) => c.thisValue.id === 'in').map((c) => c.args[0] ?? {});
    await until(() => statusOfIn().some((st) => st.text?.startsWith('disconnected · /queue/commands · ') === true), 'uplink in showing the connection');
    const shown = statusOfIn().find((st) => st.text?.startsWith('disconnected · /queue/commands · ') === true)!;
    assert.equal(shown.fill, 'red');
    assert.equal(shown.shape, 'ring');
    assert.match(shown.text!, /ECONNREFUSED/);
    assert.ok(statusOfIn().every((st) => !/spooled|RED\.hooks|required|must be/.test(st.text ?? '')), statusOfIn().map((st) => st.text).join(' | '));
  });
});
