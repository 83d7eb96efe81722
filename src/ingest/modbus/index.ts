/** Modbus ingest: polling RTU and TCP devices. See modbus-ingest.ts for how an answer becomes a reading. */
export { ModbusIngest, type ModbusIngestOptions, type ModbusIngestStats, type WritePointCommand, type WriteResult } from './modbus-ingest.js';
export type { ModbusBusConfig, ModbusDeviceConfig, ModbusPointConfig, ModbusConfig } from './config.js';
