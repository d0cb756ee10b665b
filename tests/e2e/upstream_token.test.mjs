// A gate rule with `upstream_token: { tag: "{username}" }`, in Chromium: a
// user who is not an admin calls the route as herself (her bearer token of
// the local authorization server added to the route's requests), gets the
// page with the link to connect her account, follows it through
// /oauth/start to node's oidc-provider on another origin
// (tests/e2e/oidc_provider.mjs), and calls the route again: the upstream, an
// echo server on loopback, now receives her provider token, which the
// provider's userinfo accepts as hers. Another user, not connected, still
// gets the connect answer, and may not connect an account under her tag.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { confirmStart, freePort, openBrowserEnv, secret, signIn, visit } from './harness.mjs';
import { startOidcProvider } from './oidc_provider.mjs';

/** An upstream on loopback that answers with the Authorization header it got. */
async function echoServer() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: req.url, authorization: req.headers.authorization ?? null }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('an upstream_token route with the tag {username}', () => {
  let env;
  let sc;
  let provider;
  let echo;
  const passwords = { dana: secret(), erin: secret() };
  const consumerSecret = secret();

  before(async () => {
    env = await openBrowserEnv('upstream-token');
    const port = await freePort();
    const origin = `http://localhost:${port}`;
    provider = await startOidcProvider({ redirectUris: [`${origin}/oauth/return`] });
    echo = await echoServer();
    sc = await env.sidecarFromYaml(port, origin, (dir) => `
listen: 127.0.0.1:${port}
public_url: ${origin}
upstream: ${echo.url}
store: sqlite://${dir}/data/sidecar.db
log: { level: info, format: json }
shutdown_grace: 2s
server:
  roles:
    mail_reader: { label: Mail reader }
  consumers:
    - client_id: mailapp
      secret: ${consumerSecret}
      scopes: [mail_reader]
      grant_types: [password]
  users:
    - { username: dana, password: ${passwords.dana}, roles: [mail_reader] }
    - { username: erin, password: ${passwords.erin}, roles: [mail_reader] }
gate:
  default: deny
  rules:
    - path: /mail/**
      scopes: { any_of: [mail_reader] }
      upstream_token: { client: outside, tag: "{username}" }
client:
  token_key: ${randomBytes(32).toString('base64')}
  providers:
    - { name: oidc, issuer: "${provider.issuer}" }
  clients:
    - name: outside
      label: Outside mailbox
      provider: oidc
      client_id: ${provider.clientId}
      client_secret: ${provider.clientSecret}
`);
    await sc.start();
  });
  after(async () => {
    await env?.close();
    await provider?.close();
    await echo?.close();
  });

  /** An access token of the local server for `user` (password grant of `mailapp`). */
  async function bearerOf(user) {
    const res = await fetch(sc.loopbackUrl('/oauth/token'), {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`mailapp:${consumerSecret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'password', username: user, password: passwords[user] }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    return body.access_token;
  }

  /** A page whose requests under /mail/ carry `user`'s bearer token, and only those. */
  async function pageAs(user) {
    const page = await env.newPage();
    const bearer = await bearerOf(user);
    await page.route(
      (url) => url.origin === sc.origin && url.pathname.startsWith('/mail/'),
      (route) => route.continue({ headers: { ...route.request().headers(), authorization: `Bearer ${bearer}` } }),
    );
    return page;
  }

  it('a user connects her own account through /oauth/start and the route then sends her provider token', () =>
    env.guard(async () => {
      const page = await pageAs('dana');
      const refused = await visit(page, sc.url('/mail/inbox?unread=1'));
      assert.equal(refused.status(), 403);
      await page.getByRole('heading', { name: 'Connect your account' }).waitFor();
      const link = page.getByRole('link', { name: 'Connect the account' });
      assert.equal(
        await link.getAttribute('href'),
        '/oauth/start/outside?tag=dana&return_to=%2Fmail%2Finbox%3Funread%3D1',
        'the link connects her tag and comes back here',
      );
      await env.shot(page, 'needs-connection');

      await link.click();
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      await signIn(page, 'dana', passwords.dana);
      const confirmation = await confirmStart(page);
      assert.match(confirmation, /Tag\s+dana/, 'the confirmation names her tag');

      const login = 'dana-at-provider';
      await page.locator('input[name="login"]').waitFor();
      assert.equal(new URL(page.url()).origin, provider.issuer, 'the browser is at the provider');
      await page.locator('input[name="login"]').fill(login);
      await page.locator('input[name="password"]').fill('any');
      await page.getByRole('button', { name: 'Sign-in' }).click();
      await page.getByRole('button', { name: 'Continue' }).click();
      // The return leads back where she started. (Playwright adds her bearer
      // token to requests it routes, which a redirect's next request is not:
      // the page is loaded again.)
      await page.waitForURL((u) => u.origin === sc.origin && u.pathname === '/mail/inbox');
      assert.equal(new URL(page.url()).search, '?unread=1');

      const res = await visit(page, sc.url('/mail/inbox?unread=1'));
      assert.equal(res.status(), 200);
      const echoed = JSON.parse(await page.locator('body').innerText());
      assert.equal(echoed.path, '/mail/inbox?unread=1');
      const token = echoed.authorization?.match(/^Bearer (\S+)$/)?.[1];
      assert.ok(token, `the upstream got a bearer token: ${JSON.stringify(echoed)}`);
      const info = await provider.userinfo(token);
      assert.equal(info.status, 200, 'the provider accepts the token the upstream got: it is its own');
      assert.equal(info.body.sub, login, "it is dana's account at the provider");
      await env.shot(page, 'upstream-got-her-token');
      for (const line of sc.lines) assert.ok(!line.includes(token), `no log line carries the token: ${line}`);
    }));

  it('another user gets the connect answer, and may not connect an account under her tag', () =>
    env.guard(async () => {
      const page = await pageAs('erin');
      const refused = await visit(page, sc.url('/mail/inbox'));
      assert.equal(refused.status(), 403);
      assert.equal(
        await page.getByRole('link', { name: 'Connect the account' }).getAttribute('href'),
        '/oauth/start/outside?tag=erin&return_to=%2Fmail%2Finbox',
      );
      await visit(page, sc.url('/oauth/start/outside?tag=dana'));
      await signIn(page, 'erin', passwords.erin);
      await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
      await env.shot(page, 'other-tag-refused');
    }));
});
