export { SerialIngest, type SerialIngestOptions, type SerialIngestStats } from './serial-ingest.js';
export type { Decode, Framing, SerialPortConfig } from './config.js';
export { createFramer, LengthFramer, LineFramer, RegexFramer, TimeoutFramer, type FrameSink, type Framer } from './framing.js';
export { decodeFrame, fillTopic } from './decode.js';
