/**
 * Framers: cut a port's byte stream into frames. Each is a small push-based piece: `push(chunk)`
 * calls `onFrame` for every complete frame, in order, and `onTooLong` (with the length seen so
 * far) for a frame longer than `maxFrame`, which is dropped: the framer skips to the next frame
 * boundary and carries on, so one runaway frame costs one frame, never the port.
 */
import type { Framing } from './config.js';

export interface FrameSink {
  onFrame(frame: Buffer): void;
  onTooLong(bytes: number): void;
}

export interface Framer {
  push(chunk: Buffer): void;
  /** Forgets a partial frame (the port closed: what follows is a new stream). */
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

  reset(): void {
    this.#pending = Buffer.alloc(0);
    this.#skipping = false;
    this.#skipped = 0;
  }

  close(): void {}
}

/** Each match of `pattern` is a frame; bytes between matches are dropped. Matched on latin1 text, so bytes stay bytes. */
export class RegexFramer implements Framer {
  readonly #pattern: RegExp;
  readonly #max: number;
  readonly #sink: FrameSink;
  #buffer = '';

  constructor(pattern: string, maxFrame: number, sink: FrameSink) {
    this.#pattern = new RegExp(pattern, 'g');
    this.#max = maxFrame;
    this.#sink = sink;
  }

  push(chunk: Buffer): void {
    this.#buffer += chunk.toString('latin1');
    this.#pattern.lastIndex = 0;
    let consumed = 0;
    for (let match = this.#pattern.exec(this.#buffer); match !== null; match = this.#pattern.exec(this.#buffer)) {
      if (match[0].length === 0) {
        this.#pattern.lastIndex += 1;
        continue;
      }
      // A match that reaches the end of the buffer may still grow with the next chunk.
      if (match.index + match[0].length === this.#buffer.length) break;
      consumed = match.index + match[0].length;
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
  }

  reset(): void {
    this.#buffer = '';
  }

  close(): void {}
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
    case 'regex': return new RegexFramer(framing.pattern, maxFrame, sink);
    case 'length': return new LengthFramer(framing.length, maxFrame, sink);
    case 'timeout': return new TimeoutFramer(framing.gapMs, maxFrame, sink);
  }
}
