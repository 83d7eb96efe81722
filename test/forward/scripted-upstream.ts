/**
 * A scripted Upstream: it implements src/upstream/interface.ts to the letter, and nothing happens
 * on its own (no timers, no I/O). The test decides every event and its order: credit grants and
 * drain requests, each outcome and when it arrives, disconnects and reconnects, links closed (idle,
 * or to stay under a cap of open links) and links that wait for a place under the cap.
 *
 * The contract, as played here:
 * - a link starts with credit 0 (waiting to attach, or for a place under the cap) and calls its
 *   onCredit listeners when the test grants credit; credit goes down by one per send, and to 0
 *   on a disconnect (the links stay the same objects across reconnects, as AmqpUpstream's do);
 * - a closed link has credit 0 for ever and calls its listeners once more, a microtask after the
 *   close, and never again; `link(address)` then returns a new object;
 * - every transfer gets exactly one outcome. On a disconnect or a link close, the test says
 *   whether the unsettled ones are reported `lost` at once, or held back: an orphaned transfer,
 *   whose outcome the test may deliver later (late, from a connection that is gone).
 *
 * It also checks its caller: a send without credit or on a closed link throws, as the contract
 * says, and is recorded in `violations`.
 */
import type { Outcome, Upstream, UpstreamLink, UpstreamMessage, UpstreamReload, UpstreamState } from '../../src/upstream/interface.js';

export interface Transfer {
  readonly message: UpstreamMessage;
  readonly link: ScriptedLink;
  /** The connection it was sent on (1, 2, … one per connect). */
  readonly connection: number;
  /** Set once delivered to the sender. */
  outcome: Outcome | undefined;
  /** Its link or connection went away and its outcome was held back: what comes later is late. */
  orphaned: boolean;
  readonly report: (outcome: Outcome) => void;
}

export interface ScriptedUpstreamHooks {
  /** Called for every transfer, before send returns (and before a presettled outcome). */
  onSend?: (transfer: Transfer) => void;
  /** Called just before an outcome is handed to the sender's callback. */
  onOutcome?: (transfer: Transfer, outcome: Outcome) => void;
}

export type HeldOutcomes = 'lost' | 'lost-after-state' | 'withhold';

export class ScriptedLink implements UpstreamLink {
  readonly address: string;
  readonly mode: 'at-least-once' | 'at-most-once';
  #closed = false;
  #credit = 0;
  #draining = false;
  #attached = false;
  readonly #owner: ScriptedUpstream;
  readonly listeners = new Set<() => void>();
  /** How many times idle() gave drained credit back. */
  drained = 0;
  idles = 0;

  constructor(owner: ScriptedUpstream, address: string, mode: 'at-least-once' | 'at-most-once') {
    this.#owner = owner;
    this.address = address;
    this.mode = mode;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get attached(): boolean {
    return this.#attached;
  }

  get draining(): boolean {
    return this.#draining;
  }

  credit(): number {
    return this.#closed ? 0 : this.#credit;
  }

  send(message: UpstreamMessage, onOutcome: (outcome: Outcome) => void): void {
    if (this.#closed || this.#credit <= 0) {
      const problem = `send of ${message.id} to ${this.address} ${this.#closed ? 'on a closed link' : 'without credit'}`;
      this.#owner.violations.push(problem);
      throw new Error(`contract: ${problem}`);
    }
    this.#credit -= 1;
    this.#owner.record(this, message, onOutcome);
  }

  onCredit(listener: () => void): () => void {
    // A listener that is added twice is one listener; count the subscriptions as the caller sees them.
    const wrapped = (): void => listener();
    this.listeners.add(wrapped);
    return () => this.listeners.delete(wrapped);
  }

  idle(): void {
    this.idles += 1;
    if (!this.#draining) return;
    this.#draining = false;
    this.#credit = 0;
    this.drained += 1;
  }

  /** Script: the receiver grants `n` more (attaching the link if it waited). */
  grant(n: number, drain: boolean): void {
    if (this.#closed) throw new Error(`script: grant on the closed link to ${this.address}`);
    this.#attached = true;
    this.#credit += n;
    if (drain) this.#draining = true;
    this.notify();
  }

  /** Script: the connection went away (credit gone; the link stays this object). */
  detach(): void {
    this.#attached = false;
    this.#credit = 0;
    this.#draining = false;
  }

  /** Closed by the upstream: as the contract says, the listeners hear of it once, a microtask later. */
  close(): void {
    this.#closed = true;
    this.#credit = 0;
    this.#attached = false;
    // The set is kept: `subscriptions()` shows whether the caller let go of a closed link.
    const listeners = [...this.listeners];
    queueMicrotask(() => { for (const listener of listeners) if (this.listeners.has(listener)) listener(); });
  }

  notify(): void {
    if (this.#closed) return;
    for (const listener of [...this.listeners]) listener();
  }
}

export class ScriptedUpstream implements Upstream {
  readonly violations: string[] = [];
  /** Every transfer, in the order sent. */
  readonly transfers: Transfer[] = [];
  /** Every link object ever handed out, closed ones too. */
  readonly allLinks: ScriptedLink[] = [];
  readonly #links = new Map<string, ScriptedLink>();
  readonly #stateListeners = new Set<(state: UpstreamState) => void>();
  readonly #hooks: ScriptedUpstreamHooks;
  /** Transfers without an outcome, sent on the current connection on a link still open. */
  readonly #open = new Set<Transfer>();
  #connected = false;
  #connection = 0;
  #reconnects = 0;

  constructor(hooks: ScriptedUpstreamHooks = {}) {
    this.#hooks = hooks;
  }

  async start(): Promise<void> {}

  /** Like AmqpUpstream's: the connection goes, and what is unsettled is lost. */
  async stop(): Promise<void> {
    if (this.#connected) this.disconnect('lost');
  }

  link(address: string, mode: 'at-least-once' | 'at-most-once'): UpstreamLink {
    let link = this.#links.get(address);
    if (link === undefined) {
      link = new ScriptedLink(this, address, mode);
      this.#links.set(address, link);
      this.allLinks.push(link);
    }
    return link;
  }

  state(): UpstreamState {
    return { connected: this.#connected, url: 'scripted://upstream', reconnects: this.#reconnects };
  }

  credit(): number {
    let sum = 0;
    for (const link of this.#links.values()) sum += link.credit();
    return sum;
  }

  onState(listener: (state: UpstreamState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  async reload(): Promise<UpstreamReload> {
    return 'unchanged';
  }

  // ---- the script ----

  get connected(): boolean {
    return this.#connected;
  }

  get connection(): number {
    return this.#connection;
  }

  /** The current link object for `address`, if the sender asked for one. */
  current(address: string): ScriptedLink | undefined {
    return this.#links.get(address);
  }

  /** Transfers waiting for their outcome on the current connection, in the order sent. */
  open(address?: string): Transfer[] {
    return [...this.#open].filter((t) => address === undefined || t.link.address === address);
  }

  /** Transfers whose outcome was held back when their connection or link went away. */
  orphans(): Transfer[] {
    return this.transfers.filter((t) => t.orphaned && t.outcome === undefined);
  }

  connect(): void {
    if (this.#connected) throw new Error('script: connect while connected');
    if (this.#connection > 0) this.#reconnects += 1;
    this.#connection += 1;
    this.#connected = true;
    this.#emit();
  }

  /**
   * The connection drops. Unsettled transfers are reported `lost` before the state event (as
   * AmqpUpstream does), after it, or held back (`withhold`: orphans, for `deliver` later).
   */
  disconnect(held: HeldOutcomes): void {
    if (!this.#connected) throw new Error('script: disconnect while disconnected');
    const unsettled = [...this.#open];
    this.#open.clear();
    for (const link of this.#links.values()) link.detach();
    for (const t of unsettled) t.orphaned = true;
    if (held === 'lost') for (const t of unsettled) this.deliver(t, { kind: 'lost' });
    this.#connected = false;
    this.#emit();
    if (held === 'lost-after-state') for (const t of unsettled) this.deliver(t, { kind: 'lost' });
  }

  /** The receiver grants credit on the current link of `address` (and may ask it to drain). */
  grant(address: string, n: number, options: { drain?: boolean } = {}): ScriptedLink {
    if (!this.#connected) throw new Error('script: grant while disconnected');
    const link = this.#links.get(address);
    if (link === undefined) throw new Error(`script: no link to ${address} yet`);
    link.grant(n, options.drain === true);
    return link;
  }

  /**
   * The upstream drops the link of `address` (idle, or for the cap): it has no credit from now on,
   * and the next `link(address)` is a new object. Its unsettled transfers are lost, or held back.
   */
  closeLink(address: string, held: 'lost' | 'withhold' = 'lost'): ScriptedLink {
    const link = this.#links.get(address);
    if (link === undefined) throw new Error(`script: no link to ${address}`);
    this.#links.delete(address);
    link.close();
    const unsettled = [...this.#open].filter((t) => t.link === link);
    for (const t of unsettled) {
      this.#open.delete(t);
      t.orphaned = true;
    }
    if (held === 'lost') for (const t of unsettled) this.deliver(t, { kind: 'lost' });
    return link;
  }

  /** Hands a transfer its outcome: open, or orphaned (then it is late). */
  deliver(t: Transfer, outcome: Outcome): void {
    if (t.outcome !== undefined) throw new Error(`script: ${t.message.id} has its outcome already`);
    t.outcome = outcome;
    this.#open.delete(t);
    this.#hooks.onOutcome?.(t, outcome);
    t.report(outcome);
  }

  /** onCredit subscriptions held now: on all links, and on closed links only. */
  subscriptions(): { all: number; onClosed: number } {
    let all = 0;
    let onClosed = 0;
    for (const link of this.allLinks) {
      all += link.listeners.size;
      if (link.closed) onClosed += link.listeners.size;
    }
    return { all, onClosed };
  }

  /** Called by ScriptedLink.send once the credit was checked. */
  record(link: ScriptedLink, message: UpstreamMessage, onOutcome: (outcome: Outcome) => void): void {
    const t: Transfer = { message, link, connection: this.#connection, outcome: undefined, orphaned: false, report: onOutcome };
    this.transfers.push(t);
    this.#open.add(t);
    this.#hooks.onSend?.(t);
    // Presettled: the outcome is `accepted` at once, as the contract says.
    if (link.mode === 'at-most-once') this.deliver(t, { kind: 'accepted' });
  }

  #emit(): void {
    const state = this.state();
    for (const listener of [...this.#stateListeners]) listener(state);
  }
}
