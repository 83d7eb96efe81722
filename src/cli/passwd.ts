/**
 * `uplink passwd [--user NAME] [--password PASSWORD]`: prints an scrypt hash for `mqtt.users` (or,
 * with --user, a "NAME:hash" line for `mqtt.usersFile`). Without --password the password is read
 * from standard input: typed at a prompt (not echoed) on a terminal, else the first line piped in
 * (`--password` leaves the password in the shell history and the process list).
 */
import { parseArgs } from 'node:util';
import { GatewayError } from '../core/errors.js';
import { hashPassword } from '../core/password.js';

export const PASSWD_HELP = `uplink passwd: hash a device password for mqtt.users or mqtt.usersFile (auth: password)

  uplink passwd [--user NAME] [--password PASSWORD]

  --user NAME           print "NAME:hash", a line for mqtt.usersFile
  --password PASSWORD   the password (else read from standard input: a prompt on a terminal,
                        or the first line piped in, e.g. printf '%s' "$PW" | uplink passwd)
`;

const OPTIONS = {
  user: { type: 'string', short: 'u' },
  password: { type: 'string', short: 'p' },
} as const;

/** Reads the password; `input` is process.stdin unless a test passes its own. */
export async function passwdCommand(args: string[], out: (text: string) => void,
  input: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin): Promise<number> {
  let values: { user?: string; password?: string };
  try {
    ({ values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new GatewayError('USAGE', `passwd: ${(err as Error).message}`);
  }
  if (values.user !== undefined && (values.user === '' || values.user.includes(':') || /\s/.test(values.user))) {
    throw new GatewayError('USAGE', 'passwd: --user must be a name without ":" or spaces');
  }
  const password = values.password ?? (input.isTTY ? await promptHidden(input) : await firstLine(input));
  if (password.length === 0) throw new GatewayError('USAGE', 'passwd: the password is empty');
  const hash = await hashPassword(password);
  out(values.user === undefined ? `${hash}\n` : `${values.user}:${hash}\n`);
  return 0;
}

/** The first line of a piped input (without its line ending), or all of it when it has none. */
async function firstLine(input: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of input) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    const newline = text.search(/\r?\n/);
    if (newline >= 0) return text.slice(0, newline);
  }
  return text;
}

/** Asks on stderr and reads one line from a terminal without echoing it. */
function promptHidden(input: NodeJS.ReadableStream & { setRawMode?: (raw: boolean) => unknown }): Promise<string> {
  return new Promise((resolve, reject) => {
    process.stderr.write('Password: ');
    input.setRawMode?.(true);
    input.resume();
    let typed = '';
    const finish = (error?: Error): void => {
      input.setRawMode?.(false);
      input.pause();
      input.off('data', onData);
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(typed);
    };
    const onData = (chunk: Buffer | string): void => {
      for (const ch of chunk.toString()) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') return finish(new GatewayError('USAGE', 'passwd: cancelled'));
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else typed += ch;
      }
    };
    input.on('data', onData);
  });
}
