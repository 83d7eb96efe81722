/** The version of uplink, from its package.json: for --version, logs, metrics and /status. */
import { createRequire } from 'node:module';

export const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
