/** MQTT ingest: the embedded broker. See mqtt-ingest.ts for the files, publish-steps.ts for how a publish becomes a reading. */
export { MqttIngest, type MqttIngestOptions, type MqttIngestStats } from './mqtt-ingest.js';
export type { MqttIngestConfig, MqttAclEntry, MqttUser } from './config.js';
export type { BoundListener, ListenerKind } from './listeners.js';
export type { MqttCommand, MqttCommandResult } from './commands.js';
