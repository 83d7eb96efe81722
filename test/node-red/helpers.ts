/**
 * Test harness for the Node-RED nodes: node-red-node-test-helper on Node-RED 4 or 5, the core
 * nodes of that Node-RED, and a flow's uplink-upstream settings for a test broker.
 */
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeAPI } from '../../src/node-red/red-api.js';
import type { TestPki } from '../peers/certs.js';

const require = createRequire(import.meta.url);
/** The root of this repository. */
export const REPOSITORY = resolve(fileURLToPath(new URL('../..', import.meta.url)));

export type NodeRedVersion = 4 | 5;
/** Node-RED 5 is installed beside 4 under an npm alias. */
export const NODE_RED_PACKAGE: Record<NodeRedVersion, string> = { 4: 'node-red', 5: 'node-red-5' };

export type NodeModule = (RED: NodeAPI) => void | Promise<void>;

/** The parts of node-red-node-test-helper the tests use. */
export interface TestHelper {
  init(runtimePath: string, userSettings?: Record<string, unknown>): void;
  settings(userSettings: Record<string, unknown>): Record<string, unknown>;
  load(nodes: NodeModule | NodeModule[], flow: object[], credentials?: Record<string, Record<string, string>>): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): TestNode;
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
}

export interface TestNode {
  id: string;
  type: string;
  on(event: 'input', listener: (msg: Record<string, unknown>, send: (msg: unknown) => void, done: (err?: Error) => void) => void): void;
  on(event: string, listener: (...args: never[]) => void): void;
  receive(msg: Record<string, unknown>): void;
  [key: string]: unknown;
}

function runtimeRequire(version: NodeRedVersion): NodeJS.Require {
  const red = require.resolve(NODE_RED_PACKAGE[version]);
  return createRequire(require.resolve('@node-red/runtime/package.json', { paths: [dirname(red)] }));
}

/** node-red-node-test-helper, pointed at Node-RED `version`, with a fresh user directory. */
export function testHelper(version: NodeRedVersion = 4): TestHelper & { userDir: string } {
  const helper = require('node-red-node-test-helper') as TestHelper;
  helper.init(require.resolve(NODE_RED_PACKAGE[version]));
  const userDir = mkdtempSync(join(tmpdir(), 'uplink-nr-'));
  helper.settings({ userDir });
  return Object.assign(helper, { userDir });
}

/** The messaging hooks of Node-RED `version` (the same engine the helper's flows run on). */
export function runtimeHooks(version: NodeRedVersion): NonNullable<NodeAPI['hooks']> & { has(hookId: string): boolean } {
  return (runtimeRequire(version)('@node-red/util') as { hooks: NonNullable<NodeAPI['hooks']> & { has(hookId: string): boolean } }).hooks;
}

/**
 * Our node modules, given the runtime's RED.hooks: the helper's stand-in for the runtime has none
 * (every real runtime does), while its flows run on the runtime's own hooks engine.
 */
export function withHooks(version: NodeRedVersion, ...modules: NodeModule[]): NodeModule[] {
  const hooks = runtimeHooks(version);
  return modules.map((register) => (RED: NodeAPI) => {
    if (RED.hooks === undefined) RED.hooks = hooks;
    return register(RED);
  });
}

/** A core node of Node-RED `version`, e.g. `function/10-function.js`. */
export function coreNode(version: NodeRedVersion, file: string): NodeModule {
  const nodesDir = dirname(runtimeRequire(version).resolve('@node-red/nodes/package.json'));
  return require(join(nodesDir, 'core', file)) as NodeModule;
}

/** The settings of an uplink-upstream node for the broker at `port`, with the test PKI. */
export function upstreamSettings(pki: TestPki, port: number): Record<string, string> {
  return {
    url: `amqps://localhost:${port}`, sasl: 'external', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key,
  };
}

export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Collector {
  messages: Array<Record<string, unknown>>;
  /** done() of the messages held back (while `hold` is true). */
  held: Array<(err?: Error) => void>;
  hold: boolean;
}

/** Collects what a helper node gets; calls done() at once unless `hold` is set. */
export function collect(node: TestNode, hold = false): Collector {
  const collector: Collector = { messages: [], held: [], hold };
  node.on('input', (msg, _send, done) => {
    collector.messages.push(msg);
    if (collector.hold) collector.held.push(done);
    else done();
  });
  return collector;
}
