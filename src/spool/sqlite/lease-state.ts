/**
 * What is in flight for one address, kept in memory only (a restart returns everything to the
 * queue). Leasing scans the index forward from a cursor per priority; a released reading goes
 * into `redo`, which is leased before anything past the cursor, so released readings keep their
 * original place in the order.
 */
export const PRIORITIES = 10;

export class LeaseState {
  /** seq → priority of every reading in flight. */
  readonly inFlight = new Map<number, number>();
  /** Per priority: the last seq handed out by the forward scan. */
  readonly cursor: number[] = new Array<number>(PRIORITIES).fill(0);
  /** Per priority: released seqs (all below the cursor), ascending. */
  readonly redo: number[][] = Array.from({ length: PRIORITIES }, () => []);

  take(seq: number, priority: number): void {
    this.inFlight.set(seq, priority);
    if (seq > this.cursor[priority]!) this.cursor[priority] = seq;
  }

  /** Removes `seq` from flight; true if it was in flight. */
  settle(seq: number): boolean {
    return this.inFlight.delete(seq);
  }

  /** Returns an in-flight reading to its place in the queue; false if it was not in flight. */
  release(seq: number): boolean {
    const priority = this.inFlight.get(seq);
    if (priority === undefined) return false;
    this.inFlight.delete(seq);
    this.requeue(seq, priority);
    return true;
  }

  /** Puts a reading that is no longer in flight back at its place in the queue. */
  requeue(seq: number, priority: number): void {
    const list = this.redo[priority]!;
    let i = list.length;
    while (i > 0 && list[i - 1]! > seq) i--;
    if (list[i - 1] !== seq) list.splice(i, 0, seq);
  }

  /** Everything in flight goes back; the next scan starts from the front of the queue. */
  reset(): void {
    this.inFlight.clear();
    this.cursor.fill(0);
    for (const list of this.redo) list.length = 0;
  }

  redoCount(): number {
    return this.redo.reduce((sum, list) => sum + list.length, 0);
  }
}
