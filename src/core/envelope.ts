/**
 * One reading on its way from a device to the upstream. The `id` is assigned once, at ingest, and
 * becomes the AMQP message_id: it never changes across retries, reconnects or restarts, so the
 * upstream can drop duplicates.
 */
export interface Envelope {
  /** Unique per reading; the AMQP message_id. */
  id: string;
  /** MQTT topic, or the topic a serial adapter is configured with. */
  topic: string;
  /** The exact bytes the device sent. */
  payload: Buffer;
  /** When the gateway received it (ms since the epoch): the AMQP creation_time. */
  receivedAt: number;
}

/** An envelope with its route resolved: where it goes and how it is treated on the way. */
export interface RoutedReading extends Envelope {
  /** The AMQP target address; readings keep their order per address. */
  address: string;
  /** 0 (lowest) to 9; higher priorities leave the spool first. */
  priority: number;
  /** When it expires (ms since the epoch); never forwarded after that. Undefined: never. */
  expiresAt?: number;
}
