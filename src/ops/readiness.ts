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
