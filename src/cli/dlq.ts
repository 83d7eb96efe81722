/**
 * `uplink dlq list|show|replay|purge`: the dead-letter store, whether the gateway runs or not
 * (SQLite's WAL lets this process and the gateway use the file at once; the gateway notices
 * replayed readings within a second).
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isUtf8 } from 'node:buffer';
import type { Config } from '../config/schema.js';
import { GatewayError } from '../core/errors.js';
import { silentLogger } from '../core/logger.js';
import type { DeadLetter } from '../spool/interface.js';
import { openSpoolDatabase, spoolFile } from '../spool/sqlite/database.js';
import { SqliteDeadLetterStore } from '../spool/sqlite/dead-letters.js';

export const DLQ_HELP = `uplink dlq: the dead-letter store (readings the upstream rejected, or that expired or hit the attempt cap)

  uplink dlq list    [--config FILE] [--limit N] [--after SEQ] [--json]
  uplink dlq show    [--config FILE] SEQ [--json]
  uplink dlq replay  [--config FILE] (SEQ... | --all)    back into the spool, at the end of their queue
  uplink dlq purge   [--config FILE] (SEQ... | --all)    delete for good
`;

export class DlqUsageError extends Error {}

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  limit: { type: 'string' },
  after: { type: 'string' },
  json: { type: 'boolean' },
  all: { type: 'boolean' },
} as const;

export async function dlqCommand(args: string[], loadConfig: (file: string | undefined) => Promise<Config>,
  out: (text: string) => void): Promise<number> {
  const [action, ...rest] = args;
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    throw new DlqUsageError(`dlq: ${(err as Error).message}`);
  }
  const { values, positionals } = parsed;
  const seqs = positionals.map((p) => {
    if (!/^\d+$/.test(p)) throw new DlqUsageError(`dlq: '${p}' is not a dead-letter number (see 'uplink dlq list')`);
    return Number(p);
  });
  if (!['list', 'show', 'replay', 'purge'].includes(action ?? '')) {
    throw new DlqUsageError(action === undefined ? 'dlq: which action? list, show, replay or purge' : `dlq: unknown action '${action}'`);
  }
  if ((action === 'replay' || action === 'purge') && seqs.length === 0 && values.all !== true) {
    throw new DlqUsageError(`dlq ${action}: name the dead letters (SEQ...) or pass --all`);
  }
  if (action === 'show' && seqs.length !== 1) throw new DlqUsageError('dlq show: exactly one SEQ');

  const config = await loadConfig(values.config);
  const readonly = action === 'list' || action === 'show';
  if (!existsSync(spoolFile(config.dataDir))) {
    throw new GatewayError('IO', `no spool at ${spoolFile(config.dataDir)} (dataDir ${config.dataDir}); has the gateway run with this config?`);
  }
  const db = openSpoolDatabase({ dataDir: config.dataDir, durability: config.spool.durability, onCorrupt: 'fail', log: silentLogger, readonly });
  try {
    const store = new SqliteDeadLetterStore(db);
    switch (action) {
      case 'list': {
        const limit = values.limit === undefined ? 100 : Number(values.limit);
        const list = store.list({ limit, afterSeq: values.after === undefined ? 0 : Number(values.after) });
        if (values.json === true) for (const d of list) out(`${JSON.stringify(summary(d))}\n`);
        else out(table(list, store.count()));
        return 0;
      }
      case 'show': {
        const letter = store.get(seqs[0]!);
        if (letter === undefined) {
          process.stderr.write(`uplink: no dead letter ${seqs[0]}\n`);
          return 1;
        }
        out(values.json === true ? `${JSON.stringify({ ...summary(letter), payload: payloadText(letter.payload) })}\n` : details(letter));
        return 0;
      }
      case 'replay': {
        const n = store.replay(values.all === true ? undefined : seqs);
        out(`replayed ${n} dead letter${n === 1 ? '' : 's'} into the spool\n`);
        return n === 0 && values.all !== true ? 1 : 0;
      }
      default: {
        const n = store.purge(values.all === true ? undefined : seqs);
        out(`purged ${n} dead letter${n === 1 ? '' : 's'}\n`);
        return n === 0 && values.all !== true ? 1 : 0;
      }
    }
  } finally {
    db.close();
  }
}

function summary(d: DeadLetter): Record<string, unknown> {
  return {
    seq: d.seq, id: d.id, address: d.address, topic: d.topic, bytes: d.payload.length, attempts: d.attempts,
    condition: d.reason.condition, description: d.reason.description ?? null,
    receivedAt: new Date(d.receivedAt).toISOString(), deadAt: new Date(d.deadAt).toISOString(),
  };
}

function table(list: DeadLetter[], total: number): string {
  if (list.length === 0) return `no dead letters (${total} in the store)\n`;
  const rows = list.map((d) => [String(d.seq), new Date(d.deadAt).toISOString(), d.address, d.topic, d.reason.condition,
    String(d.attempts), d.reason.description ?? '']);
  const header = ['SEQ', 'DEAD AT', 'ADDRESS', 'TOPIC', 'CONDITION', 'ATTEMPTS', 'DESCRIPTION'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n${list.length} shown, ${total} in the store\n`;
}

function payloadText(payload: Buffer): { utf8?: string; base64?: string } {
  return isUtf8(payload) ? { utf8: payload.toString('utf8') } : { base64: payload.toString('base64') };
}

function details(d: DeadLetter): string {
  const payload = payloadText(d.payload);
  return [
    ...Object.entries(summary(d)).map(([k, v]) => `${k}: ${v ?? ''}`),
    payload.utf8 !== undefined ? `payload (utf-8): ${payload.utf8}` : `payload (base64): ${payload.base64}`,
  ].join('\n') + '\n';
}
