/**
 * Makes committed appends durable. With `durability: full`, SQLite commits without its own fsync
 * (synchronous=NORMAL) and the WAL is fsynced here, on libuv's thread pool, so the event loop keeps
 * serving devices during the fsync and the next group commit forms meanwhile. An fsync covers every
 * commit written before it. Settlements need none: losing one to a power cut only sends a reading
 * again, with the same message_id. fdatasync, as SQLite itself uses on Linux: it flushes the data
 * and the file size but not the timestamps (about half the time of fsync for a WAL overwrite here).
 *
 * Failure. After a failed fsync, a later one proves nothing about the pages of the earlier one: the
 * kernel may have dropped them and reports the error once per open file, to whichever fsync looks
 * first (PostgreSQL's "fsyncgate"). So syncs complete in the order they were asked for, and once
 * one fails, every later one fails too: nothing after it is ever reported durable. The failure is
 * reported (`onFailure`) when it happens, not when the syncs before it come back: on a dying SD
 * card an fsync may hang for a long time, and the spool must stop meanwhile.
 */
import { closeSync, fdatasync, openSync } from 'node:fs';
import type { GatewayError } from '../../core/errors.js';
import { translateSyncError } from './errors.js';

/** fs.fdatasync's shape; tests put a failing one in. */
export type SyncFn = (fd: number, callback: (err: NodeJS.ErrnoException | null) => void) => void;

export class WalDurability {
  readonly #file: string;
  readonly #enabled: boolean;
  readonly #sync: SyncFn;
  readonly #onFailure: (error: GatewayError) => void;
  #fd: number | undefined;
  /** The last sync asked for, in order: each one waits for the one before. */
  #last: Promise<void> = Promise.resolve();
  readonly #pending = new Set<Promise<unknown>>();
  #failure: GatewayError | undefined;

  constructor(options: { walFile: string; enabled: boolean; sync?: SyncFn; onFailure: (error: GatewayError) => void }) {
    this.#file = options.walFile;
    this.#enabled = options.enabled;
    this.#sync = options.sync ?? fdatasync;
    this.#onFailure = options.onFailure;
  }

  /** Set once a sync failed: the spool must stop. */
  get failure(): GatewayError | undefined {
    return this.#failure;
  }

  /** Resolves once everything committed so far is on disk; rejects (STORAGE_FAILED) for good after a failure. */
  durable(): Promise<void> {
    if (!this.#enabled) return Promise.resolve();
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    let fd: number;
    try {
      this.#fd ??= openSync(this.#file, 'r+');
      fd = this.#fd;
    } catch (err) {
      return Promise.reject(this.#fail(err));
    }
    const synced = new Promise<void>((resolve, reject) => this.#sync(fd, (err) => (err ? reject(this.#fail(err)) : resolve())));
    const previous = this.#last;
    // Also a sync that succeeded proves nothing once another failed: the kernel may have reported
    // the error of this one's pages to the other.
    const ordered = previous.then(() => synced).then(() => {
      if (this.#failure !== undefined) throw this.#failure;
    });
    // A failure of an earlier sync is reported by that sync's caller; this one only must not resolve.
    synced.catch(() => undefined);
    this.#last = ordered;
    this.#track(synced);
    return ordered;
  }

  /** Waits for the syncs in flight (the file is not closed under them), then closes it. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#pending]);
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #fail(err: unknown): GatewayError {
    if (this.#failure === undefined) {
      this.#failure = translateSyncError(err, this.#file);
      this.#onFailure(this.#failure);
    }
    return this.#failure;
  }

  #track(p: Promise<unknown>): void {
    this.#pending.add(p);
    const forget = (): void => { this.#pending.delete(p); };
    p.then(forget, forget);
  }
}
