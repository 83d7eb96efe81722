/**
 * Our Logger interface on top of a Node-RED node's log methods, so the spool, upstream and
 * forwarder log into Node-RED's log (and the debug sidebar for warnings and errors) with the node's
 * id and name on every line. Structured fields are kept as JSON after the message.
 */
import type { LogFn, Logger } from '../core/logger.js';
import type { Node } from './red-api.js';

type Sink = (text: string) => void;

export function nodeLogger(node: Pick<Node, 'log' | 'warn' | 'error' | 'debug' | 'trace'>, fields: Record<string, unknown> = {}): Logger {
  const fn = (sink: Sink): LogFn => ((first: Record<string, unknown> | string, second?: string) => {
    const [own, message] = typeof first === 'string' ? [{}, first] : [first, second ?? ''];
    const all = { ...fields, ...own };
    sink(Object.keys(all).length === 0 ? message : `${message} ${JSON.stringify(all, errorsAsText)}`);
  }) as LogFn;
  return {
    fatal: fn((text) => node.error(text)),
    error: fn((text) => node.error(text)),
    warn: fn((text) => node.warn(text)),
    info: fn((text) => node.log(text)),
    debug: fn((text) => node.debug(text)),
    trace: fn((text) => node.trace(text)),
    child: (more) => nodeLogger(node, { ...fields, ...more }),
  };
}

function errorsAsText(_key: string, value: unknown): unknown {
  return value instanceof Error ? value.message : value;
}
