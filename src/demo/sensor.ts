/**
 * A simulated temperature sensor for `uplink demo`: publishes a JSON reading with QoS 1 at a
 * fixed interval, with mqtt.js, as a real device would.
 */
import mqtt, { type MqttClient } from 'mqtt';

export class SimulatedSensor {
  readonly #url: string;
  readonly #topic: string;
  readonly #intervalMs: number;
  #client: MqttClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #published = 0;
  #acknowledged = 0;

  constructor(options: { url: string; topic: string; intervalMs: number }) {
    this.#url = options.url;
    this.#topic = options.topic;
    this.#intervalMs = options.intervalMs;
  }

  counts(): { published: number; acknowledged: number } {
    return { published: this.#published, acknowledged: this.#acknowledged };
  }

  async start(): Promise<void> {
    const client = mqtt.connect(this.#url, { clientId: 'demo-sensor-line1', reconnectPeriod: 500 });
    this.#client = client;
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    let t = 21;
    this.#timer = setInterval(() => {
      t += (Math.random() - 0.5) * 0.4;
      this.#published += 1;
      const payload = JSON.stringify({ celsius: Number(t.toFixed(2)), seq: this.#published, at: new Date().toISOString() });
      client.publish(this.#topic, payload, { qos: 1 }, (err) => {
        if (err === undefined || err === null) this.#acknowledged += 1;
      });
    }, this.#intervalMs);
  }

  /** Stops publishing and waits until every publish is acknowledged (on disk at the gateway). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    const client = this.#client;
    if (client === undefined) return;
    const end = Date.now() + 10_000;
    while (this.#acknowledged < this.#published && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    await client.endAsync();
  }
}
