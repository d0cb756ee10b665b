// The sidecar's OAuth pages in a real browser: the authorization server's
// sign-in and consent for a third-party consumer, and the OAuth client role
// (/oauth/start/{client} with the `demo` provider, which is this sidecar's
// own authorization server).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { test } from 'node:test';

import { browserTest, confirmStart, secret, signIn } from './harness.mjs';

/** The payload of a JWT, parsed. */
function jwtClaims(jwt) {
  const parts = jwt.split('.');
  assert.equal(parts.length, 3, `a JWT has three parts, got ${parts.length}`);
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString());
}

/** A web app's callback on loopback: answers a small page at /callback and keeps each URL it was called with. */
async function callbackServer(t) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, `http://${req.headers.host}`);
    if (url.pathname !== '/callback') {
      res.writeHead(404).end();
      return;
    }
    seen.push(url);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Web app</title><h1>Web app callback</h1>');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections(); // node 18 would wait for the browser's idle keep-alive
    return new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${server.address().port}/callback`, seen };
}

const ROLES = `
server:
  roles:
    read_mail: { label: Read mail, description: Read your mailbox }
`;

test('authorization code: the user signs in, approves a third-party consumer and the browser lands on its redirect URI with a code', async (t) => {
  const callback = await callbackServer(t);
  await browserTest(t, 'authorize', async ({ sidecar, newPage, shot }) => {
    const sc = await sidecar(() => ROLES);
    const password = secret();
    await sc.addUser('alice', password, ['--role', 'read_mail']);
    const created = await sc.cli([
      'consumer', 'create', '--client-id', 'webapp', '--label', 'Web app',
      '--redirect-uri', callback.url, '--scope', 'read_mail',
    ]);
    const clientSecret = created.match(/^client_secret: (\S+)$/m)?.[1];
    assert.ok(clientSecret, 'consumer create prints the client secret of a confidential consumer');
    await sc.start();

    const verifier = secret(32);
    const state = secret(16);
    const authorize = new URL(sc.url('/oauth/authorize'));
    authorize.search = new URLSearchParams({
      response_type: 'code',
      client_id: 'webapp',
      redirect_uri: callback.url,
      scope: 'read_mail',
      state,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    }).toString();

    const page = await newPage();
    const first = await page.goto(authorize.href);
    assert.equal(first.status(), 200, 'the authorization endpoint shows a sign-in page');
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.match(await page.locator('main, body').first().innerText(), /Web app/, 'the sign-in page names the consumer');
    await shot(page, 'sign-in');

    // A wrong password: the page says so and keeps the username.
    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    assert.equal((await page.getByRole('alert').innerText()).trim(), 'Wrong username or password.');
    assert.equal(await page.getByLabel('Username').inputValue(), 'alice', 'the username is kept');
    await shot(page, 'wrong-password');

    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Allow access?' }).waitFor();
    const consent = await page.locator('body').innerText();
    assert.match(consent, /Signed in as alice/, 'the consent page names the user');
    assert.match(consent, /Web app/, 'the consent page names the consumer');
    assert.match(consent, /Read mail/, 'the consent page lists the scope by its label');
    await shot(page, 'consent');

    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(callback.url)),
      page.getByRole('button', { name: 'Allow' }).click(),
    ]);
    await page.getByRole('heading', { name: 'Web app callback' }).waitFor();
    await shot(page, 'redirect-uri');

    const landed = new URL(page.url());
    assert.equal(landed.searchParams.get('error'), null, `no error on the redirect: ${landed.search}`);
    assert.equal(landed.searchParams.get('state'), state, 'the state comes back unchanged');
    assert.equal(landed.searchParams.get('iss'), sc.origin, 'RFC 9207 iss names this issuer');
    const code = landed.searchParams.get('code');
    assert.ok(code, 'the redirect carries a code');
    assert.equal(callback.seen.length, 1, 'the web app was called once');

    // The code the browser carried is good for one token at the token endpoint.
    const res = await fetch(sc.url('/oauth/token'), {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`webapp:${clientSecret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: callback.url,
        code_verifier: verifier,
      }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, `token endpoint: ${JSON.stringify(body.error ?? body.error_description)}`);
    const claims = jwtClaims(body.access_token);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.client_id, 'webapp');
    assert.match(claims.scope, /\bread_mail\b/);
  });
});

test('OAuth client: an admin starts /oauth/start/{client} for the demo provider, approves, and sees the connected page', async (t) => {
  await browserTest(t, 'client-start', async ({ sidecar, newPage, shot }) => {
    const consumerSecret = secret();
    const sc = await sidecar(({ origin, tokenKey }) => `${ROLES}
  consumers:
    - client_id: mailapp
      label: Mail connector
      secret: ${consumerSecret}
      redirect_uris: [${origin}/oauth/return]
      scopes: [read_mail]
      grant_types: [authorization_code, refresh_token]
client:
  token_key: ${tokenKey}
  clients:
    - name: mail
      label: Demo mailbox
      provider: demo
      client_id: mailapp
      client_secret: ${consumerSecret}
`);
    const password = secret();
    await sc.addUser('admin', password, ['--admin', '--role', 'read_mail']);
    await sc.start();

    const page = await newPage();
    const first = await page.goto(sc.url('/oauth/start/mail?tag=e2e'));
    assert.equal(first.status(), 200, '/oauth/start asks a signed-out browser to sign in');
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await shot(page, 'sign-in');
    await signIn(page, 'admin', password);

    // A GET of /oauth/start only confirms: client, provider, tag, scopes.
    await page.getByRole('heading', { name: 'Connect an account?' }).waitFor();
    await shot(page, 'confirm');
    const confirmation = await confirmStart(page);
    assert.match(confirmation, /Local Demo/, 'the confirmation names the provider');
    assert.match(confirmation, /\be2e\b/, 'and the tag');

    // The demo provider is this sidecar's authorization server: the same
    // sign-in counts there, so its consent page comes next.
    await page.getByRole('heading', { name: 'Allow access?' }).waitFor();
    const atProvider = new URL(page.url());
    assert.equal(`${atProvider.origin}${atProvider.pathname}`, sc.url('/oauth/authorize'), 'the consent page is the provider\'s');
    const consent = await page.locator('body').innerText();
    assert.match(consent, /Signed in as admin/);
    assert.match(consent, /Mail connector/, 'the provider names its consumer');
    assert.match(consent, /Read mail/);
    await shot(page, 'consent');

    await page.getByRole('button', { name: 'Allow' }).click();
    await page.getByRole('heading', { name: 'Connected' }).waitFor();
    const landed = new URL(page.url());
    assert.equal(landed.pathname, '/oauth/return', 'the provider sends the browser back to /oauth/return');
    const connected = await page.locator('body').innerText();
    assert.match(connected, /Demo mailbox is connected for admin/);
    assert.match(connected, /tag "e2e"/);
    await shot(page, 'connected');

    const stored = sc.findLog('provider token stored');
    assert.ok(stored, 'the sidecar logs the stored token');
    const list = await sc.cli(['token', 'list']);
    assert.match(list, /^\d+\s+mail\s+e2e\s+authorization_code\s+admin\s/m, `token list shows the new token:\n${list}`);
  });
});
