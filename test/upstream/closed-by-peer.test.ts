/**
 * A receiver that closes the connection with a close frame (RabbitMQ 4 does when it stops, or when
 * an operator closes the connection). rhea answers the close but raises no 'disconnected' for a
 * connection it closed itself: the upstream must notice from the close, report the readings in
 * flight lost, and reconnect, so that they are sent again on the new connection.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startScriptedReceiver, type ScriptedReceiver } from '../peers/rhea-receiver.js';
import { readings, startPipeline, until, type Pipeline } from './pipeline.js';

const peers: ScriptedReceiver[] = [];
const pipes: Pipeline[] = [];

after(async () => {
  for (const pipe of pipes) await pipe.stop();
  for (const peer of peers) await peer.stop();
});

const closes = [
  { what: 'with amqp:internal-error (RabbitMQ 4 stopping)', error: { condition: 'amqp:internal-error', description: 'broker shutting down' } },
  { what: 'without an error', error: undefined },
];

describe('the receiver closes the connection', () => {
  for (const { what, error } of closes) {
    test(`a close frame ${what}: the upstream disconnects, reconnects, and sends what was in flight again`, async () => {
      const peer = await startScriptedReceiver({ linkCredit: 100, sessionWindow: 1000, holdOutcomes: true });
      peers.push(peer);
      const pipe = await startPipeline({ url: peer.url });
      pipes.push(pipe);
      const address = '/queue/closed';
      const sent = readings(5, address, 'c');
      await pipe.spool.append(sent);
      await peer.until(() => peer.transfers().length === 5, 'the five readings to arrive, unsettled');
      assert.equal(pipe.spool.stats().inFlight, 5);

      peer.closeConnections(error);
      await until(() => pipe.upstream.state().reconnects === 1 && pipe.upstream.state().connected, 'the upstream to reconnect');
      if (error !== undefined) assert.equal(pipe.upstream.state().lastError?.condition, error.condition);
      await peer.until(() => peer.transfers().length === 10, 'the five readings sent again on the new connection');
      assert.deepEqual(peer.transfers().slice(5).map((t) => t.messageId), sent.map((r) => r.id), 'sent again, in order, same ids');
      assert.equal(pipe.forwarder.stats().outcomes.lost, 5);
      peer.settle();
      await until(() => pipe.spool.stats().depth === 0, 'the spool to drain');
    });
  }
});
