// The shared data-path suite (data-path.ts) against RabbitMQ 4.0 (Debian 13 root, native AMQP 1.0); its own cases are in rabbitmq4-native.test.ts.
import { RABBITMQ_4 } from './brokers.js';
import { describeDataPath } from './data-path.js';

describeDataPath(RABBITMQ_4);
