// The shared data-path suite (data-path.ts) against RabbitMQ 3.10 (Debian 12): the reference the other brokers are held to.
import { RABBITMQ_3 } from './brokers.js';
import { describeDataPath } from './data-path.js';

describeDataPath(RABBITMQ_3);
