/**
 * The part of Node-RED's node API these nodes use (Node-RED 4 and 5 have the same shape here).
 * Node-RED ships no typings of its own; these are written from its runtime
 * (@node-red/registry lib/util.js createNodeApi, @node-red/runtime lib/nodes/Node.js).
 */

export interface NodeMessage {
  _msgid?: string;
  payload?: unknown;
  topic?: unknown;
  [key: string]: unknown;
}

export interface NodeStatus {
  fill?: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape?: 'ring' | 'dot';
  text?: string;
}

export type SendFn = (msg: NodeMessage | Array<NodeMessage | null> | null) => void;
export type DoneFn = (err?: Error) => void;

/** A node as the runtime makes it (`RED.nodes.createNode(this, def)`). */
export interface Node<Credentials = Record<string, string | undefined>> {
  readonly id: string;
  readonly type: string;
  readonly z?: string;
  name?: string;
  /** Wires of each output: node ids. */
  readonly wires?: string[][];
  credentials?: Partial<Credentials>;
  on(event: 'input', listener: (msg: NodeMessage, send: SendFn, done: DoneFn) => void): void;
  on(event: 'close', listener: (removed: boolean, done: () => void) => void): void;
  send(msg: NodeMessage | Array<NodeMessage | null> | null): void;
  status(status: NodeStatus | Record<string, never>): void;
  log(message: unknown): void;
  warn(message: unknown): void;
  /** With `msg`, the error goes to Catch nodes too. */
  error(message: unknown, msg?: NodeMessage): void;
  debug(message: unknown): void;
  trace(message: unknown): void;
}

/** The properties every node definition has, from the flow file. */
export interface NodeDef {
  id: string;
  type: string;
  name?: string;
  z?: string;
  wires?: string[][];
}

/** One message event of the messaging hooks (SendEvent, ReceiveEvent, CompleteEvent). */
export interface HookEvent {
  msg: NodeMessage;
  destination?: { id: string; node?: { type: string } };
  node?: { id: string; node?: { type: string } };
  error?: unknown;
}

/** RED.hooks (Node-RED 2.0 and later). A hook with one parameter runs synchronously. */
export interface Hooks {
  add(hookId: string, callback: (event: HookEvent) => void): void;
  remove(hookId: string): void;
}

export interface NodeAPI {
  nodes: {
    createNode(node: object, def: NodeDef): void;
    registerType(type: string, constructor: (this: never, def: never) => void,
      options?: { credentials?: Record<string, { type: 'text' | 'password' }> }): void;
    getNode(id: string): unknown;
  };
  settings: { userDir?: string; [key: string]: unknown };
  util: { generateId(): string };
  /** Missing from node-red-node-test-helper's runtime stand-in; present in every real runtime. */
  hooks?: Hooks;
}
