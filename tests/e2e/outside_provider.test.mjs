// The OAuth client role against a provider on another origin, in Chromium:
// node's oidc-provider on its own loopback port (tests/e2e/oidc_provider.mjs),
// the sidecar's public_url on `localhost`. A client is connected through
// /oauth/start/{client} and through the admin page's "Add (Auth Code)"
// button, each opened at the public URL's host and at 127.0.0.1 (which is
// sent to the public URL first, so that the return finds its cookie); then
// the app's call through the egress listener reaches an echo server with
// the provider's access token, which the provider's userinfo accepts.
//
// Chromium applies a page's CSP `form-action` to the redirects after a form
// post: the confirmation of /oauth/start (and the sign-in before it) must
// allow the provider's origin, or the browser stops on the sign-in page.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { confirmStart, freePort, openBrowserEnv, secret, signIn, visit } from './harness.mjs';
import { emailOf, startOidcProvider } from './oidc_provider.mjs';

/** An API on loopback that answers each request with the Authorization header it got. */
async function echoServer() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: req.url, authorization: req.headers.authorization ?? null }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

// Each case connects its own tag; each tag has an egress route.
const TAGS = ['start-localhost', 'start-loopback', 'admin-localhost', 'admin-loopback'];

describe('a provider on another origin', () => {
  let env;
  let sc;
  let provider;
  let echo;
  let egressPort;
  const admin = secret();

  before(async () => {
    env = await openBrowserEnv('outside');
    const port = await freePort();
    egressPort = await freePort();
    const origin = `http://localhost:${port}`;
    provider = await startOidcProvider({ redirectUris: [`${origin}/oauth/return`] });
    echo = await echoServer();
    const routes = TAGS.map(
      (tag) => `    - { prefix: /egress/${tag}/, target: "${echo.url}", client: outside, tag: ${tag} }`,
    );
    sc = await env.sidecarFromYaml(port, origin, (dir) => `
listen: 127.0.0.1:${port}
public_url: ${origin}
upstream: demo
store: sqlite://${dir}/data/sidecar.db
log: { level: info, format: json }
shutdown_grace: 2s
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
egress:
  listen: 127.0.0.1:${egressPort}
  routes:
${routes.join('\n')}
`);
    await sc.addUser('root', admin, ['--admin']);
    await sc.start();
  });
  after(async () => {
    await env?.close();
    await provider?.close();
    await echo?.close();
  });

  /** Signs in at the provider as `login` and approves the sidecar. */
  async function atProvider(page, login) {
    const signIn = page.locator('input[name="login"]');
    await signIn.waitFor();
    const there = new URL(page.url());
    assert.equal(there.origin, provider.issuer, `the browser is at the provider, not back at the sidecar: ${there.origin}${there.pathname}`);
    await env.shot(page, `${login}-provider-sign-in`);
    await signIn.fill(login);
    await page.locator('input[name="password"]').fill('any');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
  }

  /** The egress route of `tag`: the echo of what the API received, and the provider's userinfo for it. */
  async function callThroughEgress(tag) {
    const res = await fetch(`http://127.0.0.1:${egressPort}/egress/${tag}/messages?x=1`);
    const body = await res.json();
    assert.equal(res.status, 200, `egress /egress/${tag}/: ${JSON.stringify(body)}`);
    assert.equal(body.path, '/messages?x=1', 'the rest of the path and the query reach the API');
    const token = body.authorization?.match(/^Bearer (\S+)$/)?.[1];
    assert.ok(token, 'the API got a bearer token');
    const info = await provider.userinfo(token);
    assert.equal(info.status, 200, 'the provider accepts the injected token: it is its own');
    return info.body;
  }

  for (const [tag, host] of [
    ['start-localhost', 'localhost'],
    ['start-loopback', '127.0.0.1'],
  ]) {
    it(`/oauth/start/{client} opened at ${host}: sign in, the provider's sign-in and consent, connected; the egress call carries its token`, () =>
      env.guard(async () => {
        const page = await env.newPage();
        const navigations = [];
        page.on('request', (r) => {
          if (r.isNavigationRequest() && r.frame() === page.mainFrame()) navigations.push(new URL(r.url()));
        });
        const opened = `http://${host}:${sc.port}/oauth/start/outside?tag=${tag}`;
        await visit(page, opened);
        await page.getByRole('heading', { name: 'Sign in' }).waitFor();
        assert.equal(new URL(page.url()).origin, sc.origin, 'the sign-in page is at the public URL');
        await env.shot(page, `${tag}-sign-in`);
        await signIn(page, 'root', admin);
        await page.getByRole('heading', { name: 'Connect an account?' }).waitFor();
        await env.shot(page, `${tag}-confirm`);
        const confirmation = await confirmStart(page);
        assert.match(confirmation, new RegExp(`Tag\\s+${tag}`), 'the confirmation names the tag');
        assert.match(confirmation, /No token with this tag is stored yet/);

        const login = `${tag}-owner`;
        await atProvider(page, login);
        await page.getByRole('heading', { name: 'Connected' }).waitFor();
        const landed = new URL(page.url());
        assert.equal(`${landed.origin}${landed.pathname}`, sc.url('/oauth/return'));
        const text = await page.locator('body').innerText();
        assert.match(text, new RegExp(`Outside mailbox is connected for ${emailOf(login)} with tag "${tag}"`));
        assert.match(text, /client outside, provider OpenID Connect/, 'the page names the client and provider');
        assert.doesNotMatch(text, /token \d+/, 'no internal token number');
        const back = page.getByRole('link', { name: "Back to this client's tokens" });
        assert.equal(await back.getAttribute('href'), '/admin/clients/outside', 'a link back to the client');
        await env.shot(page, `${tag}-connected`);

        if (host !== 'localhost') {
          assert.equal(navigations[0].host, `${host}:${sc.port}`, 'the browser asked the address it was given');
          assert.equal(navigations[1].origin, sc.origin, 'then went to the public URL');
          assert.equal(`${navigations[1].pathname}${navigations[1].search}`, `/oauth/start/outside?tag=${tag}`, 'same path and query');
        }
        const owner = await callThroughEgress(tag);
        assert.equal(owner.sub, login, 'the token is the resource owner\'s');
      }));
  }

  for (const [tag, host] of [
    ['admin-localhost', 'localhost'],
    ['admin-loopback', '127.0.0.1'],
  ]) {
    it(`the admin page's "Add (Auth Code)" with a tag, opened at ${host}: two sign-ins, the provider, the token in the table; the egress call carries it`, () =>
      env.guard(async () => {
        const page = await env.newPage();
        await visit(page, `http://${host}:${sc.port}/admin/clients/outside`);
        await page.getByRole('heading', { name: 'Sign in' }).waitFor();
        assert.equal(new URL(page.url()).origin, sc.origin, 'the admin sign-in is at the public URL');
        await signIn(page, 'root', admin);
        await page.waitForURL((u) => u.pathname === '/admin/clients/outside');
        await page.locator('#ac-tag').fill(tag);
        await env.shot(page, `${tag}-client`);
        // Each one-line form's label, field and button sit on one line, centred alike.
        for (const id of ['add-auth-code', 'add-client-credentials', 'add-password']) {
          const form = page.locator(`#${id}`);
          const boxes = await Promise.all(
            ['label', 'input[type="text"]', 'button'].map((sel) => form.locator(sel).first().boundingBox()),
          );
          const middles = boxes.map((b) => b.y + b.height / 2);
          const spread = Math.max(...middles) - Math.min(...middles);
          if (id !== 'add-password') {
            assert.ok(spread < 2, `#${id}: label, field and button are aligned (off by ${spread.toFixed(1)} px)`);
          } else {
            // The password form may wrap its button; its first line is aligned.
            const first = middles.slice(0, 2);
            assert.ok(Math.abs(first[0] - first[1]) < 2, `#${id}: label and field are aligned`);
          }
        }
        await page.getByRole('button', { name: 'Add (Auth Code)', exact: true }).click();

        // /oauth/start has its own session: the second sign-in.
        await page.waitForURL((u) => u.pathname === '/oauth/start/outside');
        const start = new URL(page.url());
        assert.equal(start.searchParams.get('tag'), tag, 'the tag field goes to /oauth/start');
        assert.equal(start.searchParams.get('return_to'), '/admin/clients/outside');
        await signIn(page, 'root', admin);
        // A GET of /oauth/start only confirms; its button goes to the provider.
        await confirmStart(page);

        const login = `${tag}-owner`;
        await atProvider(page, login);
        await page.waitForURL((u) => u.pathname === '/admin/clients/outside');
        // Back from another site, the admin session cookie (SameSite=Strict)
        // waits for one click on this site.
        const goOn = page.getByRole('link', { name: 'Continue to the admin page' });
        if (await goOn.isVisible()) await goOn.click();
        const row = page.locator('tr[data-token-id]', { hasText: tag });
        await row.waitFor();
        const rowText = await row.innerText();
        assert.match(rowText, new RegExp(emailOf(login).replace('.', '\\.')), 'the resource owner');
        // The provider's 1 h token, in the admin pages' one time format.
        assert.match(rowText, /UTC \(in (59|60) min\)/, `the expiry reads in whole minutes: ${rowText}`);
        await env.shot(page, `${tag}-token`);

        const owner = await callThroughEgress(tag);
        assert.equal(owner.sub, login, 'the token is the resource owner\'s');
      }));
  }
});
