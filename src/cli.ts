#!/usr/bin/env node
/**
 * The `uplink` command. Exit codes: 0 success, 1 failure (invalid config, a component that cannot
 * start), 2 wrong usage (unknown command or flag); `run` also 70 (a bug: an uncaught exception or
 * unhandled rejection) and 74 (the spool's storage failed: an I/O error or a failed fsync).
 *
 * Each command loads its modules when it runs (dynamic import): `uplink run` does not load the
 * demo (and its simulated sensor), the dead-letter tools or `uplink status`, and the tools do
 * not load the gateway.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { defaultConfig, loadConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';
import { GatewayError, messageOf } from './core/errors.js';
import type { Gateway } from './gateway.js';
import { VERSION } from './version.js';

const HELP = `uplink ${VERSION}: edge gateway for factory sensors (MQTT and serial in, durable spool, AMQP 1.0 out)

Usage:
  uplink run [--config FILE]           run the gateway (without --config: on the defaults,
                                       MQTT on 127.0.0.1:1883, spool in ./data, no upstream)
  uplink check-config --config FILE    validate FILE; print every error as "path: message"
  uplink status [--config FILE] [--json]
                                       how the running gateway does: spool depth, age of the
                                       oldest reading, upstream, rates ('uplink status --help')
  uplink dlq list|show|replay|purge    the dead-letter store ('uplink dlq --help')
  uplink passwd [--user NAME]          print the hash of a device password, for mqtt.users
                                       (or a "NAME:hash" line for mqtt.usersFile); reads the
                                       password from stdin, or --password P
  uplink demo [--quick]                the whole path on one machine: a simulated sensor, the
                                       gateway, an AMQP receiver, an outage and the recovery
  uplink --help                        this text
  uplink --version                     the version

Options:
  -c, --config FILE   the config file (YAML); see README.md for every key and its default

Exit codes: 0 ok, 1 failure (e.g. invalid config), 2 wrong usage; run also 70 (an uncaught
error, a bug) and 74 (the spool's storage failed: I/O error or failed fsync; restart to recover).
`;

class UsageError extends Error {}

/** sysexits.h: EX_SOFTWARE, EX_IOERR. */
const EXIT_BUG = 70;
const EXIT_STORAGE = 74;

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  run: runCommand,
  'check-config': checkConfigCommand,
  dlq: async (args) => {
    const { DLQ_HELP, dlqCommand, DlqUsageError } = await import('./cli/dlq.js');
    if (args.length === 0 || args.includes('--help') || args.includes('-h')) {
      process.stdout.write(DLQ_HELP);
      return args.length === 0 ? 2 : 0;
    }
    try {
      return await dlqCommand(args, loadForTool, (text) => process.stdout.write(text));
    } catch (err) {
      if (err instanceof DlqUsageError) throw new UsageError(err.message);
      if (err instanceof GatewayError) return reportFailure(err);
      throw err;
    }
  },
  status: async (args) => {
    const { STATUS_HELP, statusCommand } = await import('./cli/status.js');
    if (args.includes('--help') || args.includes('-h')) {
      process.stdout.write(STATUS_HELP);
      return 0;
    }
    try {
      return await statusCommand(args, (text) => process.stdout.write(text));
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'USAGE') throw new UsageError(err.message);
      return reportFailure(err);
    }
  },
  passwd: async (args) => {
    const { PASSWD_HELP, passwdCommand } = await import('./cli/passwd.js');
    if (args.includes('--help') || args.includes('-h')) {
      process.stdout.write(PASSWD_HELP);
      return 0;
    }
    try {
      return await passwdCommand(args, (text) => process.stdout.write(text));
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'USAGE') throw new UsageError(err.message);
      throw err;
    }
  },
  demo: async (args) => {
    let quick = false;
    try {
      quick = parseArgs({ args, options: { quick: { type: 'boolean' } }, strict: true }).values.quick === true;
    } catch (err) {
      throw new UsageError(`demo: ${messageOf(err)}`);
    }
    const { runDemo } = await import('./demo/demo.js');
    return runDemo({ phaseMs: quick ? 1500 : 5000, out: (line) => process.stdout.write(`${line}\n`) });
  },
  help: async () => { process.stdout.write(HELP); return 0; },
  version: async () => { process.stdout.write(`${VERSION}\n`); return 0; },
};

const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } satisfies ParseArgsConfig['options'];

function parseConfigFlag(args: string[], command: string): string | undefined {
  try {
    const { values } = parseArgs({ args, options: CONFIG_OPTION, strict: true, allowPositionals: false });
    return values.config;
  } catch (err) {
    throw new UsageError(`${command}: ${messageOf(err)}`);
  }
}

async function checkConfigCommand(args: string[]): Promise<number> {
  const file = parseConfigFlag(args, 'check-config');
  if (file === undefined) throw new UsageError('check-config: --config FILE is required');
  try {
    await loadConfigFile(file);
  } catch (err) {
    return reportFailure(err);
  }
  process.stdout.write(`${file}: ok\n`);
  return 0;
}

/** The config for a tool command: the file given, else the defaults (spool in ./data). */
async function loadForTool(file: string | undefined): Promise<Config> {
  return file === undefined ? defaultConfig() : loadConfigFile(file);
}

function reportFailure(err: unknown): number {
  if (err instanceof GatewayError) {
    process.stderr.write(`${err.message}\n`);
    return 1;
  }
  throw err;
}

async function runCommand(args: string[]): Promise<number> {
  const file = parseConfigFlag(args, 'run');
  let config: Config;
  try {
    config = file === undefined ? defaultConfig() : await loadConfigFile(file);
  } catch (err) {
    return reportFailure(err);
  }
  // Exits at once, from inside the spool's failure: no acknowledgement can be written after it.
  // The spool has logged why; SQLite recovers the journal when systemd starts us again.
  const onFatal = (): never => process.exit(EXIT_STORAGE);
  const { Gateway } = await import('./gateway.js');
  const gateway = new Gateway(config, undefined, { env: process.env, tty: process.stdout.isTTY === true, onFatal });
  const log = gateway.log;
  // A bug must still end with a log line (JSON for journald), not a stack trace on stderr alone.
  const crash = (kind: string) => (err: unknown): void => {
    log.fatal({ err }, `${kind}: ${messageOf(err)}; exiting`);
    process.exit(EXIT_BUG);
  };
  process.on('uncaughtException', crash('uncaught exception'));
  process.on('unhandledRejection', crash('unhandled promise rejection'));
  log.info({ version: VERSION, config: file ?? '(defaults)' }, 'starting');

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // The line is written before exit: the log's destination writes synchronously.
        log.warn({ signal }, 'second signal while stopping: exiting now');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, 'stopping');
      gateway.stop().then(() => {
        log.info('stopped');
        resolve(0);
      }, (err: unknown) => {
        log.error({ err }, 'error while stopping');
        resolve(1);
      });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    process.on('SIGHUP', () => {
      reload(gateway, file).catch((err: unknown) => log.error({ err }, 'SIGHUP: reload failed'));
    });
    gateway.start().catch((err: unknown) => {
      if (stopping) {
        // A signal came during the start; the stop decides the exit code once it is done.
        log.warn({ err: messageOf(err) }, 'start failed while stopping');
        return;
      }
      const code = err instanceof GatewayError ? err.code : undefined;
      log.fatal({ err, code }, `cannot start: ${messageOf(err)}`);
      // A medium that fails at open is the same fault as one that fails later: restart to recover.
      resolve(code === 'STORAGE_FAILED' ? EXIT_STORAGE : 1);
    });
  });
}

/**
 * SIGHUP: reads the config file again, applies what can change while running (the log level),
 * re-reads the upstream certificates, and names everything else that changed as needing a
 * restart: other keys, and new contents of the MQTT TLS files or of mqtt.usersFile. An invalid
 * file changes no key, and says why. The rules: src/ops/reload.ts.
 */
async function reload(gateway: Gateway, file: string | undefined): Promise<void> {
  const log = gateway.log;
  log.info({ config: file ?? '(defaults)' }, 'SIGHUP: reloading (the log level and the upstream certificates; other changes need a restart)');
  let next: Config | undefined;
  if (file !== undefined) {
    try {
      next = await loadConfigFile(file);
    } catch (err) {
      log.error({ config: file, error: messageOf(err) }, 'SIGHUP: the config file is not valid; keeping the running config (certificates are still read again)');
    }
  }
  const { applied, unchanged, failed, restartNeeded } = await gateway.reload(next);
  log.info({ applied, unchanged }, `SIGHUP: reloaded ${applied.length === 0 ? 'nothing' : applied.join(', ')}` +
    `${unchanged.length === 0 ? '' : ` (${unchanged.join(', ')}: unchanged)`}`);
  if (failed.length > 0) {
    log.error({ failed }, `SIGHUP: could not read again: ${failed.join(', ')}; the running ones stay (the log above says why)`);
  }
  if (restartNeeded.length > 0) {
    log.warn({ restartNeeded, config: file }, `SIGHUP: changes that need a restart to take effect: ${restartNeeded.join(', ')} (systemctl restart uplink)`);
  }
}

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h') {
    process.stdout.write(HELP);
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === '-V' || first === '-v') return COMMANDS.version!([]);
  const command = COMMANDS[first];
  try {
    if (command === undefined) throw new UsageError(`unknown command '${first}'`);
    if (first !== 'dlq' && first !== 'passwd' && first !== 'status' && (rest.includes('--help') || rest.includes('-h'))) {
      process.stdout.write(HELP);
      return 0;
    }
    return await command(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`uplink: ${err.message}\nRun 'uplink --help' for usage.\n`);
      return 2;
    }
    process.stderr.write(`uplink: ${messageOf(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
