/**
 * The in-flight book on its own (src/spool/sqlite/in-flight.ts): the transitions, and the
 * invariant that nothing queued is ever behind the cursor without being in redo.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InFlight } from '../../src/spool/sqlite/in-flight.js';

const T = 1;
const P = 4;
const flight = { target: T, priority: P, bytes: 10 };

/** Takes seqs as the lease scan would: in order, moving the cursor. */
function scan(book: InFlight, ...seqs: number[]): void {
  for (const seq of seqs) book.take(seq, flight);
}

describe('in-flight book', () => {
  test('take moves the cursor; release below the cursor goes to redo, in order, without duplicates', () => {
    const book = new InFlight();
    scan(book, 1, 2, 3, 4);
    assert.equal(book.cursor(T, P), 4);
    assert.equal(book.leased, 4);
    assert.ok(book.release(3));
    assert.ok(book.release(1));
    assert.equal(book.release(1), undefined, 'a second release of the same seq changes nothing');
    assert.deepEqual(book.redo(T, P), [1, 3]);
    assert.equal(book.leased, 2);
    // Taking from redo does not move the cursor.
    book.take(1, flight);
    assert.equal(book.cursor(T, P), 4);
    assert.deepEqual(book.redo(T, P), [3]);
  });

  test('settle: begin takes it out of the lease, commit removes it or requeues it, abort requeues it', () => {
    const book = new InFlight();
    scan(book, 1, 2, 3);
    assert.ok(book.beginSettle(2));
    assert.equal(book.beginSettle(2), undefined, 'settling twice is ignored');
    assert.equal(book.release(2), undefined, 'a settling reading cannot be released');
    assert.ok(book.busy(2));
    assert.equal(book.leased, 2);
    assert.equal(book.settling, 1);
    book.commitSettle(2, false);
    assert.equal(book.busy(2), false);
    assert.deepEqual(book.redo(T, P), []);
    assert.ok(book.beginSettle(3));
    book.commitSettle(3, true);
    assert.deepEqual(book.redo(T, P), [3]);
    assert.ok(book.beginSettle(1));
    book.abortSettle(1);
    assert.deepEqual(book.redo(T, P), [1, 3]);
    assert.equal(book.settling, 0);
  });

  test('a settlement committed after a reset does not move the cursor past the queue (the modify/disconnect race)', () => {
    const book = new InFlight();
    scan(book, 1, 2, 3, 4, 5);
    book.beginSettle(3);
    book.reset();
    assert.equal(book.leased, 0);
    assert.equal(book.settling, 1, 'a reset leaves settlements to their commits');
    assert.equal(book.cursor(T, P), 0);
    book.commitSettle(3, true);
    // 3 is above the (reset) cursor: the scan finds it at its place, so it must not be in redo.
    assert.deepEqual(book.redo(T, P), []);
    scan(book, 1, 2, 3, 4, 5);
    assert.equal(book.leased, 5);
  });

  test('a settlement undone after the scan went past it goes to redo', () => {
    const book = new InFlight();
    scan(book, 1, 2, 3);
    book.beginSettle(2);
    book.reset();
    book.take(1, flight);
    book.advance(T, P, 2); // the scan skipped 2, which was settling
    book.take(3, flight);
    book.abortSettle(2);
    assert.deepEqual(book.redo(T, P), [2]);
  });

  test('reset of one target leaves the others alone', () => {
    const book = new InFlight();
    book.take(1, flight);
    book.take(2, { ...flight, target: 2 });
    book.reset(T);
    assert.equal(book.leasedFor(T), 0);
    assert.equal(book.leasedFor(2), 1);
    assert.equal(book.cursor(2, P), 2);
  });

  test('taking a seq twice, or one behind the cursor that is not queued again, is a bug and throws', () => {
    const book = new InFlight();
    scan(book, 1, 2);
    assert.throws(() => book.take(2, flight), /leased twice/);
    assert.equal(book.commitSettle(1, false), undefined, 'a leased reading is not settling: nothing to commit');
    book.beginSettle(1);
    book.commitSettle(1, false);
    assert.throws(() => book.take(1, flight), /behind the cursor/);
  });
});
