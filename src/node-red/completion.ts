/**
 * Tells a source node when the flow has finished with a message it sent.
 *
 * Node-RED (1.0+) tells the runtime, not the sender, that a node is done with a message: the
 * node calls `done()`, the runtime fires the `onComplete` messaging hook and wakes the Complete
 * nodes scoped to that node. A source node (here `uplink in`) is not told anything, so it follows
 * its message through the runtime's messaging hooks (RED.hooks, Node-RED 2.0 and later, the same in
 * 4 and 5) by its `_msgid`, which the runtime keeps when it clones a message for a second wire:
 *
 * - `preDeliver` (a copy is on its way to a node) counts one more holder;
 * - `onReceive` of a copy that did not come through `preDeliver` (link nodes, Catch, Complete and
 *   Status nodes call `receive` directly) counts one more holder too;
 * - `onComplete` (a holder called `done()`) counts one less. With an error (`done(err)`) the
 *   message has failed, at once. When no holder is left, the message is complete.
 *
 * Nodes send before they call done(), so the count reaches zero only after the last node is done.
 * Limits, documented in the node's help: a node that never calls done() (a node written before
 * Node-RED 1.0 whose input handler takes no `done`) holds the message forever, so `uplink in` has
 * an optional timeout; subflow instance nodes never call done() themselves, so they are not
 * counted (the nodes inside the subflow are); a node that calls done() before it sends (rare)
 * completes the message early.
 */
import type { HookEvent, Hooks } from './red-api.js';

interface Tracked {
  holders: number;
  /** Copies on their way to a node, by destination node id. */
  transit: Map<string, number>;
  finish: (error?: unknown) => void;
}

export class CompletionTracker {
  readonly #hooks: Hooks;
  readonly #label: string;
  readonly #tracked = new Map<string, Tracked>();
  #started = false;

  /** `label` must be unique in the runtime (hooks are global): the node id, say. */
  constructor(hooks: Hooks, label: string) {
    this.#hooks = hooks;
    this.#label = label.replace(/[^A-Za-z0-9_-]/g, '_');
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    // One-parameter hooks run synchronously, in the runtime's own call.
    this.#hooks.add(`preDeliver.${this.#label}`, (event: HookEvent) => this.#delivering(event));
    this.#hooks.add(`onReceive.${this.#label}`, (event: HookEvent) => this.#received(event));
    this.#hooks.add(`onComplete.${this.#label}`, (event: HookEvent) => this.#completed(event));
  }

  /** Removes the hooks; what is still tracked is forgotten (its callbacks never run). */
  stop(): void {
    if (!this.#started) return;
    this.#started = false;
    this.#hooks.remove(`*.${this.#label}`);
    this.#tracked.clear();
  }

  /**
   * Follows the message with this id; call it before sending. `finish` runs once: without an
   * argument when every node that got the message is done, with the error of the first `done(err)`.
   */
  track(msgId: string, finish: (error?: unknown) => void): void {
    this.#tracked.set(msgId, { holders: 0, transit: new Map(), finish });
  }

  /** Stops following a message (it timed out, say); its `finish` will not run. */
  forget(msgId: string): boolean {
    return this.#tracked.delete(msgId);
  }

  /** Messages sent and not complete yet. */
  get pending(): number {
    return this.#tracked.size;
  }

  #delivering(event: HookEvent): void {
    const tracked = this.#find(event);
    const id = event.destination?.id;
    if (tracked === undefined || id === undefined) return;
    tracked.transit.set(id, (tracked.transit.get(id) ?? 0) + 1);
    if (!isSubflowInstance(event.destination?.node?.type)) tracked.holders += 1;
  }

  #received(event: HookEvent): void {
    const tracked = this.#find(event);
    const id = event.destination?.id;
    if (tracked === undefined || id === undefined) return;
    const inTransit = tracked.transit.get(id) ?? 0;
    if (inTransit > 0) {
      if (inTransit === 1) tracked.transit.delete(id);
      else tracked.transit.set(id, inTransit - 1);
    } else if (!isSubflowInstance(event.destination?.node?.type)) {
      tracked.holders += 1;
    }
  }

  #completed(event: HookEvent): void {
    const msgId = event.msg?._msgid;
    const tracked = this.#find(event);
    if (tracked === undefined || msgId === undefined) return;
    if (event.error !== undefined && event.error !== null) {
      this.#tracked.delete(msgId);
      tracked.finish(event.error);
      return;
    }
    tracked.holders -= 1;
    if (tracked.holders <= 0 && tracked.transit.size === 0) {
      this.#tracked.delete(msgId);
      tracked.finish();
    }
  }

  #find(event: HookEvent): Tracked | undefined {
    const msgId = event.msg?._msgid;
    return typeof msgId === 'string' ? this.#tracked.get(msgId) : undefined;
  }
}

function isSubflowInstance(type: string | undefined): boolean {
  return type !== undefined && type.startsWith('subflow:');
}
