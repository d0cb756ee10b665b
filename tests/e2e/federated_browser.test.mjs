// Sign-in through outside providers in Chromium: two node oidc-provider
// instances on 127.0.0.1 ("corp" and "partner"), the sidecar's public URL
// on `localhost` (another site). The sign-in page of /oauth/authorize and
// of the admin pages shows a button per provider (screenshots saved under
// target/e2e/screenshots/federated-*); a user signs in through a provider
// and the app gets a code whose token has the roles the rules gave; a user
// outside `allow` gets the refusal page; a federated admin reaches the
// Users page, which says where each role came from.
//
// Run: cargo build --bin oauth-sidecar &&
//      OAUTH_SIDECAR_BIN=$CARGO_TARGET_DIR/debug/oauth-sidecar node --test tests/e2e/federated_browser.test.mjs

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { freePort, openBrowserEnv, visit } from './harness.mjs';
import { federatedYaml, startProviders } from './federated_fixture.mjs';

describe('federated sign-in in a browser', () => {
  let env;
  let sc;
  let corp;
  let partner;
  // The app's redirect URI: a stub server that answers any request.
  let appRedirect;
  let app;

  before(async () => {
    env = await openBrowserEnv('federated');
    const port = await freePort();
    app = http.createServer((_req, res) => res.end('the app'));
    await new Promise((resolve) => app.listen(0, '127.0.0.1', resolve));
    appRedirect = `http://127.0.0.1:${app.address().port}/cb`;
    const origin = `http://localhost:${port}`;
    const groups = { alice: ['staff', 'managers'], root: ['staff', 'admins'] };
    ({ corp, partner } = await startProviders(origin, groups));
    sc = await env.sidecarFromYaml(port, origin, (dir) =>
      federatedYaml({
        port,
        origin,
        dir,
        appRedirect,
        corp,
        partner,
        partnerRules: '        allow: { email_domains: [partner.test] }\n',
      }),
    );
    await sc.start();
  });

  after(async () => {
    await env?.close();
    await corp?.close();
    await partner?.close();
    app?.closeAllConnections();
    await new Promise((resolve) => (app ? app.close(resolve) : resolve()));
  });

  const appPage = () => env.newPage();

  /** The provider's development sign-in, as `login`. */
  async function atProvider(page, provider, login) {
    const input = page.locator('input[name="login"]');
    await input.waitFor();
    assert.equal(new URL(page.url()).origin, provider.issuer, 'the browser is at the provider');
    await input.fill(login);
    await page.locator('input[name="password"]').fill('any');
    await page.getByRole('button', { name: 'Sign-in' }).click();
  }

  it('signs a user in at /oauth/authorize through a provider button; the token has the mapped roles', () =>
    env.guard(async () => {
      const page = await appPage();
      const verifier = randomBytes(32).toString('base64url');
      const q = new URLSearchParams({
        response_type: 'code',
        client_id: 'app',
        redirect_uri: appRedirect,
        scope: 'openid farm_viewer farm_manager',
        state: 's1',
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
      });
      await visit(page, sc.url(`/oauth/authorize?${q}`));
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      await page.getByRole('link', { name: 'Partner account' }).waitFor();
      await env.shot(page, 'authorize sign-in with provider buttons');
      assert.ok(await page.getByLabel('Password').isVisible(), 'the password form is there too');
      const back = page.waitForURL(`${appRedirect}**`);
      await page.getByRole('link', { name: 'Corp account' }).click();
      await atProvider(page, corp, 'alice');
      await back;
      const answer = new URL(page.url());
      assert.equal(answer.searchParams.get('state'), 's1');
      const res = await fetch(sc.url('/oauth/token'), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code: answer.searchParams.get('code'),
          redirect_uri: appRedirect,
          client_id: 'app',
          code_verifier: verifier,
        }),
      });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      const claims = JSON.parse(Buffer.from(body.access_token.split('.')[1], 'base64url').toString());
      assert.deepEqual(claims.scope.split(' ').filter((s) => s.startsWith('farm_')).sort(), [
        'farm_manager',
        'farm_viewer',
      ]);
    }));

  it('shows a user outside allow the refusal page', () =>
    env.guard(async () => {
      const page = await appPage();
      const q = new URLSearchParams({
        response_type: 'code',
        client_id: 'app',
        redirect_uri: appRedirect,
        code_challenge: createHash('sha256').update('x'.repeat(43)).digest('base64url'),
        code_challenge_method: 'S256',
      });
      await visit(page, sc.url(`/oauth/authorize?${q}`));
      await page.getByRole('link', { name: 'Partner account' }).click();
      await atProvider(page, partner, 'mallory');
      await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
      const text = await page.locator('body').innerText();
      assert.match(text, /mallory@provider\.test at partner may not sign in here/);
      await env.shot(page, 'refused outside allow');
    }));

  it('lets a federated admin into the admin pages, whose Users page says where roles came from', () =>
    env.guard(async () => {
      const page = await env.newPage();
      await visit(page, sc.url('/admin/users'));
      await page.getByRole('link', { name: 'Corp account' }).waitFor();
      await env.shot(page, 'admin sign-in with provider buttons');
      await page.getByRole('link', { name: 'Corp account' }).click();
      await atProvider(page, corp, 'root');
      await page.getByText('You are signed in').waitFor();
      await page.getByRole('link', { name: 'Continue' }).click();
      await page.getByRole('heading', { name: 'Users' }).waitFor();
      const row = page.locator('tr[data-username="corp:root@provider.test"]');
      await row.waitFor();
      const text = await row.innerText();
      assert.match(text, /admin: corp: groups has admins/);
      assert.match(text, /farm_viewer: corp: email domain provider\.test/);
      await env.shot(page, 'admin users with role sources');
    }));
});
