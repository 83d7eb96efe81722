/** appendInOrder (shared by serial and Modbus ingest) against a scripted spool: one module, its rules. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RoutedReading } from '../../src/core/envelope.js';
import { GatewayError } from '../../src/core/errors.js';
import { appendInOrder } from '../../src/ingest/append-in-order.js';

function readings(n: number): RoutedReading[] {
  return Array.from({ length: n }, (_, i) => ({ id: `r${i}`, topic: 't', payload: Buffer.from(String(i)), receivedAt: i, address: '/q', priority: 4 }) as RoutedReading);
}

/** A spool whose appends answer from `script` in turn (undefined: stored), recording each batch. */
function scripted(script: Array<Error | undefined>): { spool: { append(batch: readonly RoutedReading[]): Promise<void> }; batches: string[][] } {
  const batches: string[][] = [];
  return {
    batches,
    spool: {
      append: (batch) => {
        batches.push(batch.map((r) => r.id));
        const outcome = script.shift();
        return outcome === undefined ? Promise.resolve() : Promise.reject(outcome);
      },
    },
  };
}

describe('appendInOrder', () => {
  test('in order, in batches of the limit; a batch that can never fit lowers the limit for good; a retryable failure is tried again; another drops the batch', async () => {
    const { spool, batches } = scripted([
      new GatewayError('PAYLOAD_TOO_LARGE', 'too big'), undefined, new GatewayError('IO', 'busy', { retryable: true }), undefined,
      new GatewayError('BAD_INPUT', 'no'), undefined,
    ]);
    const queue = readings(8);
    const stored: string[] = [];
    const failed: string[] = [];
    let retries = 0;
    let settled = 0;
    const batch = { limit: 4 };
    await appendInOrder(queue, {
      spool, signal: new AbortController().signal, batch, retryMs: 1,
      stored: (b) => stored.push(...b.map((r) => r.id)),
      retrying: () => { retries += 1; },
      failed: (b) => failed.push(...b.map((r) => r.id)),
      settled: () => { settled += 1; },
    });
    assert.deepEqual(batches, [['r0', 'r1', 'r2', 'r3'], ['r0', 'r1'], ['r2', 'r3'], ['r2', 'r3'], ['r4', 'r5'], ['r6', 'r7']]);
    assert.deepEqual([stored, failed, retries, settled, batch.limit, queue.length], [['r0', 'r1', 'r2', 'r3', 'r6', 'r7'], ['r4', 'r5'], 1, 5, 2, 0]);
  });

  test('an abort (a stop that gave up) puts the batch in hand back at the front and returns', async () => {
    const abort = new AbortController();
    const queue = readings(3);
    const spool = {
      append: (_batch: readonly RoutedReading[], options?: { signal?: AbortSignal }) => new Promise<void>((_, reject) => {
        options?.signal?.addEventListener('abort', () => reject(new GatewayError('IO', 'stopped')));
      }),
    };
    const done = appendInOrder(queue, { spool, signal: abort.signal, batch: { limit: 2 }, stored: () => {}, retrying: () => {}, failed: () => {} });
    abort.abort();
    await done;
    assert.deepEqual(queue.map((r) => r.id), ['r0', 'r1', 'r2']);
  });
});
