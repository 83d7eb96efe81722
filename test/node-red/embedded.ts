/**
 * A real Node-RED runtime in the test process (RED.init + RED.start, as an application embeds
 * it): headless (no browser; the admin API, and the editor if asked for, on a free loopback port), a temporary user directory
 * with this package installed in its node_modules (a link to the repository, as `npm install
 * <folder>` makes), and a flow file written before the start. The nodes load from dist/, so run
 * `npm run build` first (npm test does).
 *
 * Node-RED is a singleton: one runtime per process, which is one per test file here.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../peers/ports.js';
import type { Hooks } from '../../src/node-red/red-api.js';
import { NODE_RED_PACKAGE, REPOSITORY, type NodeRedVersion } from './helpers.js';

const require = createRequire(import.meta.url);
export { REPOSITORY };

export type FlowNode = Record<string, unknown> & { id: string; type: string };

/** The parts of the embedded RED the tests use. */
interface Red {
  init(server: Server, settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  version(): string;
  hooks: Hooks;
  httpAdmin: (req: IncomingMessage, res: ServerResponse) => void;
  nodes: {
    getNode(id: string): unknown;
    getModuleInfo(module: string): { nodes: Array<{ name: string; types: string[]; enabled: boolean; err?: unknown }> } | null;
  };
}

export interface EmbeddedNodeRed {
  red: Red;
  userDir: string;
  /** The admin API: http://127.0.0.1:PORT */
  adminUrl: string;
  /** Presses an inject node's button, as the editor does. */
  inject(id: string): Promise<void>;
  node<T>(id: string): T;
  stop(): Promise<void>;
}

/** A flow from flows/, parsed. */
export async function exampleFlow(name: string): Promise<FlowNode[]> {
  return JSON.parse(await readFile(join(REPOSITORY, 'flows', name), 'utf8')) as FlowNode[];
}

/** `editor`: serve the editor too (no browser needed); Node-RED reads the nodes' HTML only then. */
export async function startNodeRed(version: NodeRedVersion, flows: FlowNode[], options: { editor?: boolean } = {}): Promise<EmbeddedNodeRed> {
  if (!existsSync(join(REPOSITORY, 'dist', 'node-red', 'uplink-out.js'))) {
    throw new Error('dist/node-red is missing: run `npm run build` first');
  }
  const userDir = await mkdtemp(join(tmpdir(), `uplink-nr${version}-`));
  await mkdir(join(userDir, 'node_modules'));
  await symlink(REPOSITORY, join(userDir, 'node_modules', 'uplink'), 'dir');
  await writeFile(join(userDir, 'flows.json'), JSON.stringify(flows, null, 2));
  const red = require(NODE_RED_PACKAGE[version]) as Red;
  const port = await freePort();
  // An embedding application serves RED.httpAdmin itself (it exists once RED.init has run).
  const server = createServer((req, res) => red.httpAdmin(req, res));
  red.init(server, {
    userDir,
    flowFile: 'flows.json',
    credentialSecret: false,
    uiHost: '127.0.0.1',
    uiPort: port,
    httpAdminRoot: '/',
    httpNodeRoot: false,
    disableEditor: options.editor !== true,
    // The palette manager would look for npm; nothing is installed at run time here.
    externalModules: { palette: { allowInstall: false } },
    logging: { console: { level: process.env.UPLINK_TEST_NR_LOG ?? 'warn', metrics: false, audit: false } },
    contextStorage: { default: { module: 'memory' } },
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok());
  });
  await red.start();
  const adminUrl = `http://127.0.0.1:${port}`;
  return {
    red, userDir, adminUrl,
    async inject(id) {
      const res = await fetch(`${adminUrl}/inject/${id}`, { method: 'POST' });
      if (res.status !== 200) throw new Error(`inject ${id}: HTTP ${res.status} ${await res.text()}`);
    },
    node<T>(id: string): T {
      const node = red.nodes.getNode(id);
      if (node === null || node === undefined) throw new Error(`no node ${id} in the running flows`);
      return node as T;
    },
    async stop() {
      await red.stop();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

/** Polls until the runtime has started the node `id` (RED.start resolves before the flows run). */
export async function nodeStarted(nr: EmbeddedNodeRed, id: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (nr.red.nodes.getNode(id) === null || nr.red.nodes.getNode(id) === undefined) {
    if (Date.now() > end) throw new Error(`node ${id} did not start`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
