// The `demo` recipe of config/sidecar.example.yaml, run as its comments
// write it: the `client:` and `egress:` sections uncommented, a token key
// in data/token_key, an admin added with the password on standard input,
// `serve`, the start address opened in Chromium (sign in, Allow), then
// the `curl` call through the egress listener. Only the ports change (8080
// and 8081 become free ones), and the folder is a temporary one.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

import { browserTest, confirmStart, freePort, repoRoot, secret, signIn, visit } from './harness.mjs';

/** The example with the recipe's step 1 done and its ports moved. */
async function exampleAsInstructed(port, egressPort) {
  const text = await readFile(path.join(repoRoot, 'config/sidecar.example.yaml'), 'utf8');
  // Step 1: "remove the first `#` of each line from `#client:` to the
  // egress route": the commented YAML lines (`#key:`, `#  key: ...`) that
  // follow `#client:` without a break.
  const lines = text.split('\n');
  let at = lines.indexOf('#client:');
  assert.ok(at >= 0, 'the example has a commented `client:` section');
  for (; at < lines.length && /^#(\S|  )/.test(lines[at]); at += 1) lines[at] = lines[at].slice(1);
  const uncommented = lines.join('\n');
  return uncommented.replaceAll(':8080', `:${port}`).replaceAll(':8081', `:${egressPort}`);
}

test('the demo recipe in config/sidecar.example.yaml works as written', async (t) => {
  await browserTest(t, 'example-recipe', async ({ sidecarFromYaml, newPage, shot }) => {
    const port = await freePort();
    const egressPort = await freePort();
    const yaml = await exampleAsInstructed(port, egressPort);
    const steps = (re, what) => {
      const found = yaml.match(re)?.[1];
      assert.ok(found, `the example's comments give ${what}`);
      return found;
    };
    const startUrl = steps(/Open (http:\/\/\S+) in a/, 'the address to open');
    const curlUrl = steps(/curl (http:\/\/\S+)/, 'the egress call');
    assert.ok(yaml.includes('\nclient:\n') && yaml.includes('\negress:\n'), 'step 1 uncommented both sections');

    const sc = await sidecarFromYaml(port, `http://localhost:${port}`, () => yaml);
    // Step 2: the token key file.
    await mkdir(path.join(sc.dir, 'data'), { recursive: true });
    await writeFile(path.join(sc.dir, 'data/token_key'), `${randomBytes(32).toString('base64')}\n`);
    // Step 3: an admin, the password typed on standard input.
    const password = secret();
    await sc.cli(['user', 'add', 'admin', '--admin'], { input: `${password}\n` });
    // Step 4.
    await sc.start();

    // Before the authorization: 503 no_token, saying where to authorize this tag.
    const before = await fetch(curlUrl);
    const refusal = await before.json();
    assert.equal(before.status, 503, JSON.stringify(refusal));
    assert.equal(refusal.error, 'no_token');
    assert.match(refusal.message, /\/oauth\/start\/demo-mail\?tag=admin\b/, refusal.message);

    // Step 5.
    const page = await newPage();
    await visit(page, startUrl);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await shot(page, 'sign-in');
    await signIn(page, 'admin', password);
    await page.getByRole('heading', { name: 'Connect an account?' }).waitFor();
    await shot(page, 'confirm');
    assert.match(await confirmStart(page), /demo-mail/, 'the confirmation names the client');
    await page.getByRole('heading', { name: 'Allow access?' }).waitFor();
    assert.match(await page.locator('body').innerText(), /Demo mailbox/, 'the consent names the consumer');
    await shot(page, 'consent');
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.getByRole('heading', { name: 'Connected' }).waitFor();
    const connected = await page.locator('body').innerText();
    assert.match(connected, /Demo mailbox is connected for admin with tag "admin"/);
    await shot(page, 'connected');

    // Step 6.
    const res = await fetch(curlUrl);
    const echo = await res.json();
    assert.equal(res.status, 200, JSON.stringify(echo));
    assert.equal(echo.path, '/echo', 'the demo app answered');
    const bearer = echo.headers.authorization?.[0]?.match(/^Bearer (\S+)$/)?.[1];
    assert.ok(bearer, `the echo lists an authorization header: ${JSON.stringify(Object.keys(echo.headers))}`);
    const claims = JSON.parse(Buffer.from(bearer.split('.')[1], 'base64url').toString());
    assert.equal(claims.sub, 'admin', 'the token is the demo provider\'s, for admin');
    assert.equal(claims.client_id, 'demo-mail');
    assert.match(claims.scope, /\bread_mail\b/);
  });
});
