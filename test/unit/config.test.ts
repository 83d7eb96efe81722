import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/config/issues.js';
import { defaultConfig, parseConfig } from '../../src/config/load.js';
import { configJsonSchema, topicFilterProblem } from '../../src/config/schema.js';

function issuesOf(text: string): string[] {
  try {
    parseConfig(text, { source: 'test.yaml', baseDir: '/tmp' });
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues.map((i) => `${i.path}: ${i.message}${i.line === undefined ? '' : ` @${i.line}`}`);
  }
  return [];
}

describe('config', () => {
  test('the defaults: MQTT on 127.0.0.1:1883, spool in ./data, no upstream, HTTP on 127.0.0.1:9464', () => {
    const config = defaultConfig('/srv/gw');
    assert.equal(config.gatewayId, hostname());
    assert.equal(config.dataDir, '/srv/gw/data');
    assert.deepEqual(config.log, { level: 'info' });
    assert.deepEqual([config.mqtt.host, config.mqtt.port, config.mqtt.auth, config.mqtt.maxPayload], ['127.0.0.1', 1883, 'none', 262_144]);
    assert.equal(config.upstream, undefined);
    assert.deepEqual(config.routes, [{ topic: '#', address: '/queue/telemetry', delivery: 'at-least-once', priority: 4 }]);
    assert.deepEqual(config.spool, {
      durability: 'full', groupCommitMs: 0, maxBytes: 1024 ** 3, maxReadings: 10_000_000, policy: 'block', expired: 'drop',
      maxAttempts: 10, onCorrupt: 'fail',
    });
    assert.deepEqual(config.http, { host: '127.0.0.1', port: 9464 });
  });

  test('relative paths resolve against the directory of the config file', () => {
    const config = parseConfig('dataDir: spool\n', { source: 'x', baseDir: '/etc/uplink' });
    assert.equal(config.dataDir, '/etc/uplink/spool');
  });

  test('the published JSON Schema is the schema the gateway validates with', async () => {
    const published = JSON.parse(await readFile(new URL('../../schema/uplink.schema.json', import.meta.url), 'utf8'));
    assert.deepEqual(published, configJsonSchema());
    assert.equal(published.additionalProperties, false);
    assert.deepEqual(published.required ?? [], [], 'every top-level key is optional (defaults) in the file');
  });

  test('misspelt keys are errors that suggest the right one, at the right line', () => {
    assert.deepEqual(issuesOf('mqtt:\n  hots: 0.0.0.0\n'), ["mqtt.hots: unknown key (did you mean 'host'?) @2"]);
    assert.deepEqual(issuesOf('routes:\n  - topic: a\n    address: b\n    priorty: 1\n'),
      ["routes[0].priorty: unknown key (did you mean 'priority'?) @4"]);
    assert.deepEqual(issuesOf('routes:\n  - topic: a\n    address: b\n    colour: red\n'),
      ['routes[0].colour: unknown key (allowed here: topic, address, delivery, properties, priority, ttl) @4']);
  });

  test('YAML syntax errors and duplicate keys carry their line', () => {
    assert.deepEqual(issuesOf('mqtt:\n  port: 1\n  port: 2\n'), [': invalid YAML: Map keys must be unique @3']);
    assert.match(issuesOf('routes: [a\n')[0] ?? '', /^: invalid YAML: .* @\d$/);
  });

  test('wrong types say what was expected', () => {
    assert.deepEqual(issuesOf('mqtt: 1883\n'), ['mqtt: must be a mapping, not number @1']);
    assert.deepEqual(issuesOf('http:\n  port: "80"\n'), ['http.port: must be a number, not string @2']);
    assert.deepEqual(issuesOf('routes: []\n'), ['routes: must have at least one route @1']);
  });

  test('upstream settings that only work together', () => {
    assert.deepEqual(issuesOf('upstream:\n  url: amqp://h:5672\n'),
      ['upstream.sasl: external needs an amqps:// url (the TLS client certificate is the identity) @1']);
    assert.deepEqual(issuesOf('upstream:\n  url: amqps://h\n'), ['upstream.tls: cert and key are required for sasl: external @1']);
    assert.deepEqual(issuesOf('upstream:\n  url: amqp://h\n  sasl: plain\n  username: u\n  password: p\n'),
      ['upstream.sasl: plain over amqp:// sends the password in clear text; use amqps:// or set upstream.allowInsecure: true @3']);
    assert.deepEqual(issuesOf('upstream:\n  url: amqp://h\n  sasl: plain\n  username: u\n  password: p\n  allowInsecure: true\n'), []);
    assert.deepEqual(issuesOf('upstream:\n  url: amqp://u:secret@h\n  sasl: anonymous\n'),
      ['upstream.url: must not contain credentials (they would show in logs); use upstream.username and upstream.password @2']);
    assert.deepEqual(issuesOf('upstream:\n  url: amqp://h:99999\n  sasl: anonymous\n'), ['upstream.url: port must be from 1 to 65535 @2']);
    assert.deepEqual(issuesOf('upstream:\n  url: amqp://h\n  sasl: anonymous\n  username: u\n'),
      ['upstream.username: is only used with sasl: plain (sasl is anonymous) @4']);
  });

  test('route topics are valid MQTT filters', () => {
    assert.equal(topicFilterProblem('sensor/+/temperature'), undefined);
    assert.equal(topicFilterProblem('#'), undefined);
    assert.match(topicFilterProblem('a/#/b') ?? '', /last one/);
    assert.match(topicFilterProblem('a/b+') ?? '', /whole level/);
    assert.deepEqual(issuesOf('routes:\n  - topic: "a/#/b"\n    address: q\n'),
      ["routes[0].topic: '#' must be a whole level and the last one (an MQTT topic filter) @2"]);
  });

  test('durations and sizes take units', () => {
    const config = parseConfig('spool:\n  ttl: 7d\n  maxBytes: 512MiB\nroutes:\n  - { topic: a, address: b, ttl: 90 }\n', { source: 'x', baseDir: '/' });
    assert.equal(config.spool.ttl, 7 * 86_400_000);
    assert.equal(config.spool.maxBytes, 512 * 1024 ** 2);
    assert.equal(config.routes[0]?.ttl, 90_000);
    assert.deepEqual(issuesOf('spool:\n  ttl: 7 days\n'), ['spool.ttl: must be a duration: seconds, or text such as 30s, 15m, 12h or 7d @2']);
  });

  test('mqtt auth settings that only work together', () => {
    assert.deepEqual(issuesOf('mqtt:\n  auth: password\n'), ['mqtt.auth: password needs mqtt.users or mqtt.usersFile @2']);
    assert.deepEqual(issuesOf('mqtt:\n  users: [{ username: a, password: secret }]\n'),
      ["mqtt.users[0].password: must be a hash made by 'uplink passwd' (starting with $scrypt$), never the password itself @2"]);
    assert.match(issuesOf('mqtt:\n  auth: certificate\n')[0] ?? '', /^mqtt\.auth: certificate needs an mqtt\.tls listener/);
  });

  test('http and mqtt cannot share a port', () => {
    assert.deepEqual(issuesOf('mqtt: { port: 9000 }\nhttp: { port: 9000 }\n'), ['http.port: is already taken by mqtt.port (9000) @2']);
  });
});
