import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { runCli as uplink } from '../peers/gateway.js';

const EXAMPLE = new URL('../fixtures/design-example.yaml', import.meta.url);

describe('uplink check-config', () => {
  let pki: TestPki;
  let example: string;

  /** Writes `text` to a file in the PKI's temp dir and runs check-config on it. */
  async function check(name: string, text: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const file = join(pki.dir, `${name}.yaml`);
    await writeFile(file, text);
    return uplink('check-config', '--config', file);
  }

  before(async () => {
    pki = await makeTestPki();
    // The DESIGN.md example exactly as written, with only the three file paths pointing at real files.
    example = (await readFile(EXAMPLE, 'utf8'))
      .replace('/etc/uplink/ca.pem', pki.ca.cert)
      .replace('/etc/uplink/gw.pem', pki.client.cert)
      .replace('/etc/uplink/gw.key', pki.client.key);
  });

  test('accepts the DESIGN.md example', async () => {
    const result = await check('example', example);
    assert.equal(result.stderr, '');
    assert.equal(result.code, 0);
    assert.match(result.stdout, /: ok$/m);
  });

  const rejections: Array<[string, (text: string) => string, RegExp]> = [
    ['a missing upstream.url', (t) => t.replace(/^ {2}url: .*$/m, ''), /^upstream\.url: is required \(line \d+\)$/m],
    ['a URL scheme other than amqp/amqps', (t) => t.replace('amqps://broker.example:5671', 'https://broker.example:5671'),
      /^upstream\.url: must use the amqp:\/\/ or amqps:\/\/ scheme \(line 7\)$/m],
    ['a port out of range', (t) => t.replace('port: 1883', 'port: 70000'), /^mqtt\.port: must be a port from 1 to 65535 \(line 5\)$/m],
    ['an unknown key', (t) => t.replace('gatewayId: line1-gw', 'gatewayId: line1-gw\ngatewayID: x'),
      /^gatewayID: unknown key \(did you mean 'gatewayId'\?\) \(line 2\)$/m],
    ['a route without address', (t) => t.replace('    address: "/queue/other"\n', ''), /^routes\[1\]\.address: is required \(line 13\)$/m],
    ['a TLS key file that does not exist', (t) => t.replace(pki.client.key, join(pki.dir, 'missing.key')),
      /^upstream\.tls\.key: file not found: \S+missing\.key \(line 9\)$/m],
  ];

  for (const [name, mutate, expected] of rejections) {
    test(`rejects ${name} with its own path: message`, async () => {
      const result = await check(name.replace(/\W+/g, '-'), mutate(example));
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, expected);
      // Exactly one error for exactly one mistake: the header line plus one error line.
      assert.equal(result.stderr.trim().split('\n').length, 2, result.stderr);
    });
  }

  test('reports every error of a file at once', async () => {
    const text = example
      .replace('port: 1883', 'port: 0')
      .replace('sasl: external', 'sasl: kerberos')
      .replace('    address: "/queue/other"\n', '');
    const result = await check('many', text);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^mqtt\.port: /m);
    assert.match(result.stderr, /^upstream\.sasl: must be one of: external, plain, anonymous/m);
    assert.match(result.stderr, /^routes\[1\]\.address: is required/m);
    assert.match(result.stderr, /: 3 errors$/m);
  });

  test('never prints the contents of a key file, even one pasted into the config', async () => {
    const pem = await readFile(pki.client.key, 'utf8');
    const result = await check('inline-key', example.replace(`key: ${pki.client.key}`, `key: ${JSON.stringify(pem)}`));
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^upstream\.tls\.key: must be a file path, not the PEM contents/m);
    const body = pem.split('\n')[1]!;
    assert.ok(!result.stderr.includes(body) && !result.stdout.includes(body), 'key material leaked into the output');
  });

  test('a config file that cannot be read is exit 1 with the reason', async () => {
    const result = await uplink('check-config', '--config', join(pki.dir, 'nope.yaml'));
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot read config file .*nope\.yaml: no such file/);
  });

  test('without --config it is a usage error (exit 2)', async () => {
    const result = await uplink('check-config');
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--config FILE is required/);
  });
});
