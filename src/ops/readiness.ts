/**
 * Readiness as a set of named conditions (upstream, spool, listeners…). Components report their
 * own condition; /readyz is ready only when every condition is.
 */
export interface Condition {
  ready: boolean;
  /** Why it is not ready, in words for the person reading /readyz. */
  reason?: string;
}

export class Readiness {
  readonly #conditions = new Map<string, Condition>();

  set(name: string, condition: Condition): void {
    this.#conditions.set(name, condition);
  }

  delete(name: string): void {
    this.#conditions.delete(name);
  }

  snapshot(): { ready: boolean; conditions: Record<string, Condition> } {
    const conditions = Object.fromEntries(this.#conditions);
    return { ready: [...this.#conditions.values()].every((c) => c.ready), conditions };
  }
}

/** Addresses named in one reason at most: a template may give one refused address per device. */
const NAMED = 5;

/**
 * The condition for addresses the upstream refuses while connected (a queue that does not exist):
 * each named with the broker's reason, so the person reading /readyz knows what to create.
 */
export function refusedAddresses(refused: ReadonlyArray<{ address: string; condition?: string; message: string }>): Condition {
  if (refused.length === 0) return { ready: true };
  const named = refused.slice(0, NAMED).map((r) => `${r.address} (${r.message})`);
  const more = refused.length > NAMED ? `, and ${refused.length - NAMED} more` : '';
  const count = refused.length === 1 ? 'an address; its readings wait' : `${refused.length} addresses; their readings wait`;
  return { ready: false, reason: `the upstream refuses ${count} in the spool: ${named.join('; ')}${more}` };
}
