/**
 * Counters by key with a bound on the keys: `{N}` address templates give one address per device,
 * and a map (or a metric label) per address would grow with the fleet. The first `max` keys get
 * their own count; every later key is summed under OTHER. Stable: a key that has its own count
 * keeps it, and one summed under OTHER stays there, so every count only grows.
 */
export const OTHER = '_other';

/** Default bound on the keys of a per-address count (the forwarder's stats, metric labels). */
export const MAX_KEYS = 100;

export class BoundedCounts {
  readonly #max: number;
  readonly #counts = new Map<string, number>();
  #other = 0;
  #overflowed = false;

  constructor(max = MAX_KEYS) {
    this.#max = max;
  }

  add(key: string, n = 1): void {
    const known = this.#counts.get(key);
    if (known !== undefined) {
      this.#counts.set(key, known + n);
    } else if (this.#counts.size < this.#max && key !== OTHER) {
      this.#counts.set(key, n);
    } else {
      this.#other += n;
      this.#overflowed = true;
    }
  }

  /** The counts, with OTHER once any key was summed there. */
  toRecord(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [key, n] of this.#counts) out[key] = n;
    if (this.#overflowed) out[OTHER] = this.#other;
    return out;
  }
}

/**
 * The same bound over counts read whole from elsewhere (a component's own per-key totals, read at
 * every scrape): the keys seen first keep their own series, the rest (and a source's own OTHER)
 * are summed under OTHER.
 */
export class BoundedKeys {
  readonly #max: number;
  readonly #shown = new Set<string>();
  #overflowed = false;

  constructor(max = MAX_KEYS) {
    this.#max = max;
  }

  apply(counts: Record<string, number>): Array<[key: string, n: number]> {
    const out: Array<[string, number]> = [];
    let other = 0;
    for (const [key, n] of Object.entries(counts)) {
      if (key !== OTHER && !this.#shown.has(key) && this.#shown.size < this.#max) this.#shown.add(key);
      if (this.#shown.has(key)) {
        out.push([key, n]);
      } else {
        other += n;
        this.#overflowed = true;
      }
    }
    if (this.#overflowed) out.push([OTHER, other]);
    return out;
  }
}
