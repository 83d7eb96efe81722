/**
 * Framers: cut a port's byte stream into frames. Each is a small push-based piece: `push(chunk)`
 * calls `onFrame` for every complete frame, in order, and `onTooLong` (with the length seen so
 * far) for a frame longer than `maxFrame`, which is dropped: the framer skips to the next frame
 * boundary and carries on, so one runaway frame costs one frame, never the port.
 *
 * Frames of the timeout and regex framers can also end by a timer (a quiet line): they call
 * `onFrame` outside `push`. `flush()` is the end of the stream (the port stops or goes away):
 * what a gap would have ended is a frame now, and the bytes of a frame that cannot end any more
 * go to `onPartial`, so nothing read is dropped without being counted.
 */
import type { Framing } from './config.js';
import { compileRegexMachine, type RegexMachine } from './regex-machine.js';

export interface FrameSink {
  onFrame(frame: Buffer): void;
  onTooLong(bytes: number): void;
  /** At the end of the stream: the bytes of a frame that had begun but not ended. */
  onPartial(bytes: number): void;
}

export interface Framer {
  push(chunk: Buffer): void;
  /** The stream ended: emits what is complete without more bytes, reports a partial frame, empties the framer. */
  flush(): void;
  /** Forgets a partial frame, uncounted (a new stream begins: the port was just opened). */
  reset(): void;
  /** Stops timers. */
  close(): void;
}

/** Frames end at `delimiter` (not part of the frame); with "\n", a trailing "\r" is stripped. */
export class LineFramer implements Framer {
  readonly #delimiter: Buffer;
  readonly #stripCr: boolean;
  readonly #max: number;
  readonly #sink: FrameSink;
  /** The partial frame (bounded: at most maxFrame plus a delimiter and a "\r"). */
  #pending: Buffer = Buffer.alloc(0);
  /** Inside a frame that is already too long: bytes are dropped until the next delimiter. */
  #skipping = false;
  #skipped = 0;

  constructor(delimiter: string, maxFrame: number, sink: FrameSink) {
    this.#delimiter = Buffer.from(delimiter);
    this.#stripCr = delimiter === '\n';
    this.#max = maxFrame;
    this.#sink = sink;
  }

  push(chunk: Buffer): void {
    const data = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    let start = 0;
    for (let end = data.indexOf(this.#delimiter); end >= 0; end = data.indexOf(this.#delimiter, start)) {
      this.#emit(data.subarray(start, end));
      start = end + this.#delimiter.length;
    }
    this.#keep(data.subarray(start));
  }

  #emit(segment: Buffer): void {
    if (this.#skipping) {
      this.#sink.onTooLong(this.#skipped + segment.length);
      this.#skipping = false;
      this.#skipped = 0;
      return;
    }
    let frame = segment;
    if (this.#stripCr && frame.length > 0 && frame[frame.length - 1] === 0x0d) frame = frame.subarray(0, frame.length - 1);
    if (frame.length > this.#max) this.#sink.onTooLong(frame.length);
    else this.#sink.onFrame(Buffer.from(frame));
  }

  #keep(rest: Buffer): void {
    // The last delimiter.length - 1 bytes may be the start of a delimiter: always kept.
    const limit = this.#max + this.#delimiter.length;
    if (rest.length <= limit) {
      this.#pending = Buffer.from(rest);
      return;
    }
    const keep = this.#delimiter.length - 1;
    this.#skipped += rest.length - keep;
    this.#skipping = true;
    this.#pending = Buffer.from(rest.subarray(rest.length - keep));
  }

  flush(): void {
    if (this.#skipping) this.#sink.onTooLong(this.#skipped + this.#pending.length);
    else if (this.#pending.length > 0) this.#sink.onPartial(this.#pending.length);
    this.reset();
  }

  reset(): void {
    this.#pending = Buffer.alloc(0);
    this.#skipping = false;
    this.#skipped = 0;
  }

  close(): void {}
}

/**
 * Each match of `pattern` is a frame; bytes between matches are dropped. Matched on latin1 text,
 * so bytes stay bytes. A match is a frame as soon as no further byte could change it (see
 * regex-machine.ts): `T=\d+;` ends at the ";". One that could still grow (`T=\d+` on "T=12")
 * waits for the next byte, and ends when none comes for `gapMs` (the inter-byte timeout).
 */
export class RegexFramer implements Framer {
  readonly #pattern: RegExp;
  /** Undefined for a pattern outside the modelled subset: then a match that reaches the end of the bytes read is open. */
  readonly #machine: RegexMachine | undefined;
  readonly #gapMs: number;
  readonly #max: number;
  readonly #sink: FrameSink;
  #buffer = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(pattern: string, gapMs: number, maxFrame: number, sink: FrameSink) {
    this.#pattern = new RegExp(pattern, 'g');
    this.#machine = compileRegexMachine(pattern);
    this.#gapMs = gapMs;
    this.#max = maxFrame;
    this.#sink = sink;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#buffer += chunk.toString('latin1');
    if (this.#scan(false)) this.#timer = setTimeout(() => this.#quiet(), this.#gapMs);
  }

  /** The line was quiet for gapMs: the bytes are what they are, and the open match is a frame. */
  #quiet(): void {
    this.#timer = undefined;
    this.#scan(true);
  }

  /** Emits the matches that are complete (all of them when `ended`); true when one waits for more bytes. */
  #scan(ended: boolean): boolean {
    this.#pattern.lastIndex = 0;
    let consumed = 0;
    let open = false;
    for (let match = this.#pattern.exec(this.#buffer); match !== null; match = this.#pattern.exec(this.#buffer)) {
      if (match[0].length === 0) {
        this.#pattern.lastIndex += 1;
        continue;
      }
      const end = match.index + match[0].length;
      if (!ended && !this.#complete(match.index, end, consumed)) {
        open = true;
        break;
      }
      consumed = end;
      if (match[0].length > this.#max) this.#sink.onTooLong(match[0].length);
      else this.#sink.onFrame(Buffer.from(match[0], 'latin1'));
    }
    this.#buffer = this.#buffer.slice(consumed);
    if (this.#buffer.length > this.#max * 2) {
      // No frame in a long stretch: garbage, or a frame too long to fit. Only the last maxFrame
      // bytes can still start a frame that fits; the rest is dropped, counted.
      this.#sink.onTooLong(this.#buffer.length - this.#max);
      this.#buffer = this.#buffer.slice(-this.#max);
    }
    return open;
  }

  /** Whether the match JavaScript found at index..end (searching from `from`) can no longer change. */
  #complete(index: number, end: number, from: number): boolean {
    const decision = this.#machine?.decide(this.#buffer, from);
    if (decision?.kind === 'open') return false;
    if (decision?.kind === 'final' && decision.index === index && decision.end === end) return true;
    // Not modelled (or, should it ever happen, modelled differently): only a match that ends
    // before the last byte read is taken as complete.
    return end < this.#buffer.length;
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#scan(true);
    if (this.#buffer.length > 0) {
      // Bytes after the last match: the start of a frame if the pattern could still match from
      // them (garbage between frames is not counted, as while running); when not modelled, any.
      const decision = this.#machine?.decide(this.#buffer, 0);
      const from = decision === undefined ? 0 : decision.kind === 'open' ? decision.liveFrom : this.#buffer.length;
      if (from < this.#buffer.length) this.#sink.onPartial(this.#buffer.length - from);
    }
    this.#buffer = '';
  }

  reset(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#buffer = '';
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Every frame is exactly `length` bytes. */
export class LengthFramer implements Framer {
  readonly #length: number;
  readonly #sink: FrameSink;
  readonly #tooLong: boolean;
  #pending: Buffer = Buffer.alloc(0);
  #dropped = 0;

  constructor(length: number, maxFrame: number, sink: FrameSink) {
    this.#length = length;
    this.#sink = sink;
    this.#tooLong = length > maxFrame;
  }

  push(chunk: Buffer): void {
    if (this.#tooLong) {
      this.#dropped += chunk.length;
      while (this.#dropped >= this.#length) {
        this.#dropped -= this.#length;
        this.#sink.onTooLong(this.#length);
      }
      return;
    }
    let data = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    while (data.length >= this.#length) {
      this.#sink.onFrame(Buffer.from(data.subarray(0, this.#length)));
      data = data.subarray(this.#length);
    }
    this.#pending = Buffer.from(data);
  }

  flush(): void {
    const partial = this.#tooLong ? this.#dropped : this.#pending.length;
    if (partial > 0) this.#sink.onPartial(partial);
    this.reset();
  }

  reset(): void {
    this.#pending = Buffer.alloc(0);
    this.#dropped = 0;
  }

  close(): void {}
}

/** A gap of `gapMs` without bytes ends a frame. */
export class TimeoutFramer implements Framer {
  readonly #gapMs: number;
  readonly #max: number;
  readonly #sink: FrameSink;
  #parts: Buffer[] = [];
  #size = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(gapMs: number, maxFrame: number, sink: FrameSink) {
    this.#gapMs = gapMs;
    this.#max = maxFrame;
    this.#sink = sink;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#parts.push(chunk);
    this.#size += chunk.length;
    if (this.#size > this.#max) {
      // Keep counting the frame's bytes but not its contents; it is reported when the gap comes.
      this.#parts = [];
    }
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#end(), this.#gapMs);
  }

  #end(): void {
    this.#timer = undefined;
    const size = this.#size;
    const parts = this.#parts;
    this.#parts = [];
    this.#size = 0;
    if (size > this.#max) this.#sink.onTooLong(size);
    else if (size > 0) this.#sink.onFrame(Buffer.concat(parts));
  }

  /** No byte comes after the end of the stream: the gap is certain, so the bytes so far are a frame. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#end();
  }

  reset(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#parts = [];
    this.#size = 0;
  }

  close(): void {
    this.reset();
  }
}

export function createFramer(framing: Framing, maxFrame: number, sink: FrameSink): Framer {
  switch (framing.mode) {
    case 'line': return new LineFramer(framing.delimiter, maxFrame, sink);
    case 'regex': return new RegexFramer(framing.pattern, framing.gapMs, maxFrame, sink);
    case 'length': return new LengthFramer(framing.length, maxFrame, sink);
    case 'timeout': return new TimeoutFramer(framing.gapMs, maxFrame, sink);
  }
}
