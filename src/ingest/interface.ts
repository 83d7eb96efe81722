/**
 * A device adapter (the MQTT broker, a serial line, …): takes readings from devices and appends
 * them to the spool.
 *
 * Error rules
 * - A reading is acknowledged to its device (MQTT PUBACK/PUBREC, a serial line counted as read)
 *   only after `spool.append` resolved. When the spool refuses or waits (full under `block`, disk
 *   full), the adapter holds the device back; it never acknowledges what is not stored.
 * - Bad input (malformed packets, oversized payloads, garbage on a line) is counted by reason and
 *   logged at a limited rate; it affects only the device that sent it.
 * - `start()` fails with a GatewayError when a listener cannot be opened (for example
 *   EADDRINUSE). A serial port that is missing at start is not an error: like one unplugged later,
 *   it is retried with backoff, with a log line. Errors after start are logged and do not stop
 *   the adapter.
 */
export interface IngestStats {
  /** Readings appended to the spool, by route address. */
  ingested: Record<string, number>;
  /** Readings not stored, by reason (e.g. `unrouted`, `too_large`, `malformed`, `denied`). */
  rejected: Record<string, number>;
  /** Connected clients or open ports. */
  connections: number;
}

export interface IngestAdapter {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): IngestStats;
}
