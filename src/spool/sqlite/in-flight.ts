/**
 * What is in flight, in memory only (a restart returns everything to the queue): the one place
 * that decides which readings may be handed out. Pure: no SQL, no I/O, no time.
 *
 * Per target and priority, leasing scans the index forward from a cursor; a reading that comes back
 * (released, a settlement put back or undone) and lies at or below the cursor goes into `redo`,
 * which is leased before the scan goes on, so it keeps its place in the order.
 *
 * States of a seq: queued (not known here, or in redo), leased, settling (its ack, modify or reject
 * waits for the commit). Transitions:
 *   queued  --take-->         leased
 *   leased  --release-->      queued
 *   leased  --beginSettle-->  settling
 *   settling --commitSettle(requeue=false)--> gone (deleted or dead-lettered)
 *   settling --commitSettle(requeue=true)-->  queued (modify below the attempt cap)
 *   settling --abortSettle--> queued (the commit failed: the reading is still on disk)
 *   leased  --reset-->        queued (a disconnect); settling stays settling
 *
 * Invariant (what keeps a reading from being stranded): for every target and priority, every
 * queued reading with seq <= cursor is in redo. A reading above the cursor is found by the scan.
 * So a reading that comes back goes into redo only when it is at or below the cursor, and taking
 * one from redo never moves the cursor.
 */
export const PRIORITIES = 10;

export interface Flight {
  target: number;
  priority: number;
  bytes: number;
}

interface Entry extends Flight {
  settling: boolean;
}

class Book {
  readonly cursor: number[] = new Array<number>(PRIORITIES).fill(0);
  /** Per priority: seqs at or below the cursor that are queued again, ascending. */
  readonly redo: number[][] = Array.from({ length: PRIORITIES }, () => []);
  leased = 0;
}

export class InFlight {
  readonly #entries = new Map<number, Entry>();
  readonly #books = new Map<number, Book>();
  #leased = 0;
  #settling = 0;

  /** Readings leased and not settled. */
  get leased(): number {
    return this.#leased;
  }

  /** Readings whose settlement waits for its commit. */
  get settling(): number {
    return this.#settling;
  }

  leasedFor(target: number): number {
    return this.#books.get(target)?.leased ?? 0;
  }

  /** True while `seq` is leased or settling: it must not be handed out. */
  busy(seq: number): boolean {
    return this.#entries.has(seq);
  }

  /** The flight of a seq that is leased or settling. */
  get(seq: number): Flight | undefined {
    return this.#entries.get(seq);
  }

  cursor(target: number, priority: number): number {
    return this.#book(target).cursor[priority]!;
  }

  /** Queued seqs at or below the cursor, ascending: lease these before scanning on. */
  redo(target: number, priority: number): readonly number[] {
    return this.#book(target).redo[priority]!;
  }

  /** The scan went past `seq` without taking it (busy, or expired). */
  advance(target: number, priority: number, seq: number): void {
    const book = this.#book(target);
    if (seq > book.cursor[priority]!) book.cursor[priority] = seq;
  }

  /** Hands `seq` out: from redo, or from the scan (which moves the cursor to it). */
  take(seq: number, flight: Flight): void {
    if (this.#entries.has(seq)) throw new Error(`uplink bug: seq ${seq} leased twice`);
    const book = this.#book(flight.target);
    if (seq > book.cursor[flight.priority]!) {
      book.cursor[flight.priority] = seq;
    } else if (!removeSorted(book.redo[flight.priority]!, seq)) {
      throw new Error(`uplink bug: seq ${seq} is behind the cursor and not queued again`);
    }
    this.#entries.set(seq, { ...flight, settling: false });
    book.leased += 1;
    this.#leased += 1;
  }

  /** A queued reading in redo is gone from disk (evicted, expired): forget it. */
  discard(seq: number, target: number, priority: number): void {
    removeSorted(this.#book(target).redo[priority]!, seq);
  }

  /** A leased reading goes back to its place; undefined if it was not leased. */
  release(seq: number): Flight | undefined {
    const entry = this.#entries.get(seq);
    if (entry === undefined || entry.settling) return undefined;
    this.#unlease(seq, entry);
    this.#queue(seq, entry);
    return entry;
  }

  /** A leased reading's settlement starts; undefined if it was not leased (settled already, or reset). */
  beginSettle(seq: number): Flight | undefined {
    const entry = this.#entries.get(seq);
    if (entry === undefined || entry.settling) return undefined;
    this.#book(entry.target).leased -= 1;
    this.#leased -= 1;
    entry.settling = true;
    this.#settling += 1;
    return entry;
  }

  /** The settlement is on disk: the reading is gone, or (requeue) queued again at its place. */
  commitSettle(seq: number, requeue: boolean): Flight | undefined {
    const entry = this.#endSettle(seq);
    if (entry !== undefined && requeue) this.#queue(seq, entry);
    return entry;
  }

  /** The settlement's commit failed: the reading is still on disk and goes back to its place. */
  abortSettle(seq: number): Flight | undefined {
    const entry = this.#endSettle(seq);
    if (entry !== undefined) this.#queue(seq, entry);
    return entry;
  }

  /**
   * Everything leased (of `target`, or of all) goes back and the next scan starts at the front.
   * Settling readings stay settling: their commits decide where they go.
   */
  reset(target?: number): void {
    for (const [seq, entry] of this.#entries) {
      if (entry.settling || (target !== undefined && entry.target !== target)) continue;
      this.#entries.delete(seq);
      this.#leased -= 1;
    }
    for (const [id, book] of this.#books) {
      if (target !== undefined && id !== target) continue;
      book.cursor.fill(0);
      for (const list of book.redo) list.length = 0;
      book.leased = 0;
    }
  }

  /** A target with nothing on disk is forgotten (its id may be given to another address). */
  forget(target: number): void {
    this.#books.delete(target);
  }

  #endSettle(seq: number): Entry | undefined {
    const entry = this.#entries.get(seq);
    if (entry === undefined || !entry.settling) return undefined;
    this.#entries.delete(seq);
    this.#settling -= 1;
    return entry;
  }

  #unlease(seq: number, entry: Entry): void {
    this.#entries.delete(seq);
    this.#book(entry.target).leased -= 1;
    this.#leased -= 1;
  }

  /** Back to its place: into redo when the scan is past it, else the scan finds it. */
  #queue(seq: number, flight: Flight): void {
    const book = this.#book(flight.target);
    if (seq <= book.cursor[flight.priority]!) insertSorted(book.redo[flight.priority]!, seq);
  }

  #book(target: number): Book {
    let book = this.#books.get(target);
    if (book === undefined) {
      book = new Book();
      this.#books.set(target, book);
    }
    return book;
  }
}

/** Inserts into an ascending list (from the back: what comes back is mostly recent); no duplicates. */
function insertSorted(list: number[], seq: number): void {
  let i = list.length;
  while (i > 0 && list[i - 1]! > seq) i--;
  if (list[i - 1] !== seq) list.splice(i, 0, seq);
}

function removeSorted(list: number[], seq: number): boolean {
  if (list[0] === seq) {
    list.shift();
    return true;
  }
  const i = list.indexOf(seq);
  if (i < 0) return false;
  list.splice(i, 1);
  return true;
}
