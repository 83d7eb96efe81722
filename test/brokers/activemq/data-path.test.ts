// The shared data-path suite (data-path.ts) against ActiveMQ Classic 5.17 (Debian 12, AMQP module added), SASL PLAIN; queue:// and topic:// in activemq-addresses.test.ts.
import { ACTIVEMQ } from '../brokers.js';
import { describeDataPath } from '../data-path.js';

describeDataPath(ACTIVEMQ);
