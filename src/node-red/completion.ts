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
 * A message that no node receives (the source has no wires, or only wires to disabled nodes, or
 * a hook dropped it) would never get there: the runtime routes a message synchronously inside
 * `send` (its one-parameter hooks run in that call, and preDeliver fires before the delivery is
 * queued on setImmediate), so a message that has no holder and no copy on its way by the next
 * turn of the event loop after `send` is complete.
 *
 * Limits, documented in the node's help:
 * - a node that never calls done() (a node written before Node-RED 1.0 whose input handler takes
 *   no `done`, or one that reports a failure with node.error(err, msg) only) holds the message
 *   until the caller's timeout;
 * - subflow instance nodes never call done() themselves, so they are not counted (the nodes
 *   inside the subflow are);
 * - a node that calls done() before it sends (rare) completes the message early;
 * - a preDeliver hook of another plugin that drops a copy after this one counted it leaves the
 *   message held until the timeout;
 * - asynchronous hooks of other plugins (an onSend, preRoute or preDeliver hook that takes a
 *   callback or returns a promise) let the runtime route a copy later than `send`: if that is
 *   after the next turn of the event loop, or after the sending node called done(), the count
 *   reaches zero while the copy is still on its way, and the message completes early.
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
   * Follows the message with this id; call it just before sending, in the same turn of the event
   * loop. `finish` runs once: without an argument when every node that got the message is done
   * (or no node got it), with the error of the first `done(err)`.
   */
  track(msgId: string, finish: (error?: unknown) => void): void {
    const tracked: Tracked = { holders: 0, transit: new Map(), finish };
    this.#tracked.set(msgId, tracked);
    // Queued before the send, so it runs before the runtime's own delivery (also on setImmediate).
    setImmediate(() => {
      if (this.#tracked.get(msgId) !== tracked || tracked.holders > 0 || tracked.transit.size > 0) return;
      // Nothing received it and nothing is about to: the flow is done with it.
      this.#tracked.delete(msgId);
      tracked.finish();
    });
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
