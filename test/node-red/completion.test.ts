/**
 * CompletionTracker in a real Node-RED 4 runtime (node-red-node-test-helper): a test source node
 * sends a tracked message into flows of core nodes, and the test holds and releases done() of
 * the helper nodes at the ends, checking when the tracker calls the message complete.
 */
import assert from 'node:assert/strict';
import { afterEach, before, after, describe, test } from 'node:test';
import { CompletionTracker } from '../../src/node-red/completion.js';
import type { Node, NodeAPI, NodeDef } from '../../src/node-red/red-api.js';
import { collect, coreNode, runtimeHooks, testHelper, until, withHooks, type TestNode } from './helpers.js';

const helper = testHelper(4);
const hooks = runtimeHooks(4);

interface SourceNode extends Node {
  emitTracked(payload: unknown): { result: Promise<unknown>; finished: () => boolean };
  tracker: CompletionTracker;
}

/** A source node that sends tracked messages on demand. */
function sourceNode(RED: NodeAPI): void {
  function TestSource(this: SourceNode, def: NodeDef): void {
    RED.nodes.createNode(this, def);
    this.tracker = new CompletionTracker(RED.hooks!, `test-${this.id}`);
    this.tracker.start();
    this.emitTracked = (payload) => {
      const msgId = RED.util.generateId();
      let finished = false;
      const result = new Promise<unknown>((resolve) => this.tracker.track(msgId, (error) => {
        finished = true;
        resolve(error);
      }));
      this.send({ _msgid: msgId, payload });
      return { result, finished: () => finished };
    };
    this.on('close', (_removed, done) => {
      this.tracker.stop();
      done();
    });
  }
  RED.nodes.registerType('test source', TestSource);
}

const nodes = withHooks(4, sourceNode, coreNode(4, 'function/10-function.js'), coreNode(4, 'common/60-link.js'));

before(async () => { await helper.startServer(); });
afterEach(async () => { await helper.unload(); });
after(async () => { await helper.stopServer(); });

const source = (): SourceNode => helper.getNode('src') as unknown as SourceNode;
const node = (id: string): TestNode => helper.getNode(id);

describe('message completion of a source node', () => {
  test('complete only when the last node of a chain calls done()', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'src', type: 'test source', z: 'f1', wires: [['fn']] },
      { id: 'fn', type: 'function', z: 'f1', func: 'msg.payload += 1; return msg;', outputs: 1, wires: [['end']] },
      { id: 'end', type: 'helper', z: 'f1' },
    ]);
    const end = collect(node('end'), true);
    const sent = source().emitTracked(1);
    await until(() => end.held.length === 1, 'the message at the end');
    // The function node is done already; the end node holds the message.
    assert.equal(end.messages[0]!.payload, 2);
    assert.equal(sent.finished(), false);
    assert.equal(source().tracker.pending, 1);
    end.held[0]!();
    assert.equal(await sent.result, undefined);
    assert.equal(source().tracker.pending, 0);
  });

  test('a message on two wires is complete when both copies are done', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'src', type: 'test source', z: 'f1', wires: [['a', 'b']] },
      { id: 'a', type: 'helper', z: 'f1' },
      { id: 'b', type: 'helper', z: 'f1' },
    ]);
    const a = collect(node('a'), true);
    const b = collect(node('b'), true);
    const sent = source().emitTracked('x');
    await until(() => a.held.length === 1 && b.held.length === 1, 'both copies');
    a.held[0]!();
    // Completion hooks run synchronously inside done(): the state is settled here.
    assert.equal(sent.finished(), false);
    b.held[0]!();
    assert.equal(await sent.result, undefined);
  });

  test('through link out → link in, which call receive() directly', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'f2', type: 'tab' },
      { id: 'src', type: 'test source', z: 'f1', wires: [['lo']] },
      { id: 'lo', type: 'link out', z: 'f1', mode: 'link', links: ['li'], wires: [] },
      { id: 'li', type: 'link in', z: 'f2', links: ['lo'], wires: [['end']] },
      { id: 'end', type: 'helper', z: 'f2' },
    ]);
    const end = collect(node('end'), true);
    const sent = source().emitTracked('linked');
    await until(() => end.held.length === 1, 'the message behind the link');
    assert.equal(sent.finished(), false);
    end.held[0]!();
    assert.equal(await sent.result, undefined);
  });

  test('done(err) anywhere fails the message at once, with that error', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'src', type: 'test source', z: 'f1', wires: [['ok', 'bad']] },
      { id: 'ok', type: 'helper', z: 'f1' },
      { id: 'bad', type: 'function', z: 'f1', func: 'throw new Error("cannot run this command")', outputs: 1, wires: [[]] },
    ]);
    const ok = collect(node('ok'), true);
    const sent = source().emitTracked('cmd');
    const error = await sent.result;
    assert.match(String((error as Error).message ?? error), /cannot run this command/);
    assert.equal(ok.held.length, 1, 'the other copy is still held: the error did not wait for it');
    ok.held[0]!();
    assert.equal(source().tracker.pending, 0);
  });

  test('stop() removes the hooks: nothing is tracked after close', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'src', type: 'test source', z: 'f1', wires: [['end']] },
      { id: 'end', type: 'helper', z: 'f1' },
    ]);
    const end = collect(node('end'), true);
    const sent = source().emitTracked('late');
    await until(() => end.held.length === 1, 'held');
    const ours = ['preDeliver', 'onReceive', 'onComplete'].map((hook) => `${hook}.test-src`);
    assert.deepEqual(ours.map((id) => hooks.has(id)), [true, true, true]);
    source().tracker.stop();
    // Hooks are global to the runtime: left behind, they would run for every message of every flow.
    assert.deepEqual(ours.map((id) => hooks.has(id)), [false, false, false]);
    end.held[0]!();
    assert.equal(sent.finished(), false);
    assert.equal(source().tracker.pending, 0);
  });

  test('a message no node receives is complete on the next turn of the event loop', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'src', type: 'test source', z: 'f1', wires: [['off', 'gone']] },
      // Disabled: the runtime does not create it, so the copy for it goes nowhere.
      { id: 'off', type: 'helper', z: 'f1', d: true },
    ]);
    const sent = source().emitTracked('to nobody');
    assert.equal(sent.finished(), false, 'not within send()');
    assert.equal(await sent.result, undefined);
    assert.equal(source().tracker.pending, 0);
  });

  test('a message a hook drops before routing is complete; one on its way is not', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'src', type: 'test source', z: 'f1', wires: [['end']] },
      { id: 'end', type: 'helper', z: 'f1' },
    ]);
    const end = collect(node('end'), true);
    hooks.add('onSend.uplinkTestDrop', ((events: Array<{ msg: { payload?: unknown } }>) => (events[0]?.msg.payload === 'drop me' ? false : undefined)) as never);
    try {
      const dropped = source().emitTracked('drop me');
      const kept = source().emitTracked('keep me');
      assert.equal(await dropped.result, undefined);
      await until(() => end.held.length === 1, 'the kept one at the end node');
      assert.equal(end.messages[0]!.payload, 'keep me');
      // Several turns of the event loop later, the kept one is still held by the end node.
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      assert.equal(kept.finished(), false);
      end.held[0]!();
      assert.equal(await kept.result, undefined);
    } finally {
      hooks.remove('*.uplinkTestDrop');
    }
  });
});
