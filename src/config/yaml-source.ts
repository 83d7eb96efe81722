/**
 * Reads the YAML text of a config file and finds the line of a config path in it, so that errors
 * point at the place to fix.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { ConfigIssue, PathSegment } from './issues.js';

export interface YamlSource {
  /** The parsed data, or undefined when the text has syntax errors. */
  data: unknown;
  /** Syntax errors, each with its line. */
  issues: ConfigIssue[];
  /** 1-based line of the deepest part of `path` present in the file. */
  lineOf(path: readonly PathSegment[]): number | undefined;
}

export function readYaml(text: string): YamlSource {
  const lineCounter = new LineCounter();
  // uniqueKeys: a key given twice is an error; otherwise the second silently wins.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const issues: ConfigIssue[] = [...doc.errors].map((err) => ({
    path: '',
    message: `invalid YAML: ${err.message.split('\n')[0] ?? err.code}`,
    line: lineCounter.linePos(err.pos[0]).line,
  }));
  const lineAt = (offset: number | undefined): number | undefined =>
    offset === undefined ? undefined : lineCounter.linePos(offset).line;
  return {
    data: issues.length === 0 ? doc.toJS() ?? {} : undefined,
    issues,
    lineOf: (path) => lineAt(offsetOf(doc, path)),
  };
}

function offsetOf(doc: Document, path: readonly PathSegment[]): number | undefined {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0];
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
      if (pair === undefined) break;
      offset = (pair.key as Node).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment] as Node | undefined;
      if (item === undefined) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return offset;
}
