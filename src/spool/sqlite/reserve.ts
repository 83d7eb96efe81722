/**
 * A few megabytes kept aside in `spool.reserve` for the day the disk fills. On a full disk SQLite
 * can write nothing at all, not even a DELETE: the WAL cannot grow and a checkpoint cannot grow
 * the database file. Then the acks of readings the broker already accepted could never be
 * committed, nothing would ever leave the spool, and a spool that filled its own disk would stay
 * stuck for good. Giving the reserve back lets the settlements and a checkpoint go through; the
 * reserve is made again once the disk has room.
 *
 * It must be larger than what the WAL holds before its automatic checkpoint (1000 pages, 4 MiB):
 * the checkpoint copies those pages into the database file, which needs that much room. The
 * default is 8 MiB (the reserveBytes option, context.ts); with 1 MiB the spool stays stuck.
 *
 * Written once (not at every start): SD cards have few writes to spare. Written in the background;
 * `stop()` gives up a reserve still being written (it is made at the next start) and resolves only
 * once its file is closed and removed, so that nothing writes into the directory after the spool
 * stopped.
 */
import { existsSync, rmSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { freeBytes } from './free-space.js';

const CHUNK = 1024 * 1024;

export class DiskReserve {
  readonly #file: string;
  readonly #bytes: number;
  #making: Promise<void> | undefined;
  #stopped = false;

  constructor(dataDir: string, bytes: number) {
    this.#file = join(dataDir, 'spool.reserve');
    this.#bytes = bytes;
  }

  get present(): boolean {
    return this.#bytes > 0 && existsSync(this.#file);
  }

  /** Gives the space back; true if there was a reserve to give. */
  release(): boolean {
    if (!this.present) return false;
    rmSync(this.#file, { force: true });
    return true;
  }

  /**
   * Makes the reserve if it is missing and the disk has room for it twice over; never fails (a
   * reserve that cannot be made leaves the spool as it would be without one).
   */
  ensure(): Promise<void> {
    if (this.#making !== undefined) return this.#making;
    if (this.#stopped || this.#bytes <= 0 || existsSync(this.#file)) return Promise.resolve();
    if (freeBytes(dirname(this.#file)) < 2 * this.#bytes) return Promise.resolve();
    this.#making = this.#make().finally(() => { this.#making = undefined; });
    return this.#making;
  }

  /** No reserve is made any more; one being written is given up, its file closed and removed. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#making;
  }

  async #make(): Promise<void> {
    const partial = `${this.#file}.new`;
    try {
      const handle = await open(partial, 'w');
      try {
        // Real blocks, not a sparse file: only written bytes hold space.
        const zeros = Buffer.alloc(Math.min(CHUNK, this.#bytes));
        for (let written = 0; written < this.#bytes && !this.#stopped; written += zeros.length) {
          await handle.write(zeros, 0, Math.min(zeros.length, this.#bytes - written));
        }
      } finally {
        await handle.close();
      }
      if (this.#stopped) rmSync(partial, { force: true });
      else await rename(partial, this.#file);
    } catch {
      rmSync(partial, { force: true });
    }
  }
}
