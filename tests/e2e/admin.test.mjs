// The admin pages (issue 7) in a real browser, written against the admin
// contract: URLs, labels and element ids as the pages promise them.
//
// One sidecar for the whole suite; the steps run in order and build on each
// other: the secrets manager `root` signs in, creates a consumer for the
// `demo` provider (this sidecar's own authorization server), registers a
// client with its credentials, adds a token with "Add (Auth Code)" and
// inspects it; then `operator` (administer oauth only) sees the token
// without "Inspect", and users without `administer oauth` get 403.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { confirmStart, openBrowserEnv, secret, visit } from './harness.mjs';

const ADMINISTER = 'administer oauth';
const SECRETS = 'manage oauth client secrets';

/** The payload of a JWT, parsed. */
function jwtClaims(jwt) {
  const parts = jwt.split('.');
  assert.equal(parts.length, 3, `a JWT has three parts, got ${parts.length}`);
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString());
}

/** The form control whose label starts with `label` (help text may follow it). */
function field(page, label) {
  const escaped = label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return page.getByLabel(new RegExp(`^\\s*${escaped}\\b`));
}

/** A link or a button named `name`, inside `scope` (a page or a locator). */
function action(scope, name) {
  return scope.getByRole('link', { name, exact: true }).or(scope.getByRole('button', { name, exact: true }));
}

/** Clicks `target` and waits for the POST it sends; fails on a 4xx or 5xx answer. */
async function submit(page, target, what) {
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    target.click(),
  ]);
  assert.ok(res.status() < 400, `${what}: the POST to ${new URL(res.url()).pathname} answered ${res.status()}`);
  await page.waitForLoadState();
  return res;
}

describe('admin pages', () => {
  let env;
  let sc;
  const password = { root: secret(), operator: secret(), keeper: secret(), bob: secret() };
  // What the steps hand on: root's page, the consumer's secret, the token.
  const state = {};

  before(async () => {
    env = await openBrowserEnv('admin');
    sc = await env.sidecar(({ tokenKey }) => `
server:
  roles:
    read_mail: { label: Read mail, description: Read your mailbox }
client:
  token_key: ${tokenKey}
`);
    await sc.addUser('root', password.root, ['--admin', '--permission', ADMINISTER, '--permission', SECRETS]);
    await sc.addUser('operator', password.operator, ['--admin', '--permission', ADMINISTER]);
    await sc.addUser('keeper', password.keeper, ['--admin', '--permission', SECRETS]);
    await sc.addUser('bob', password.bob, ['--role', 'read_mail']);
    await sc.start();
  });
  after(() => env?.close());

  /** Fills and sends /admin/login on `page` (already showing it). */
  async function signIn(page, username) {
    await field(page, 'Username').fill(username);
    await field(page, 'Password').fill(password[username]);
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/admin/login'),
      page.getByRole('button', { name: 'Sign in', exact: true }).click(),
    ]);
    await page.waitForLoadState();
    return res;
  }

  it('a signed-out browser is sent to /admin/login and, signed in, back to the page it asked for', () =>
    env.guard(async () => {
      const page = await env.newPage();
      await visit(page, sc.url('/admin/consumers'));
      const login = new URL(page.url());
      assert.equal(login.pathname, '/admin/login', 'no session: the sign-in page');
      assert.equal(login.searchParams.get('next'), '/admin/consumers', 'the sign-in page keeps where to go next');
      await env.shot(page, 'login');

      await signIn(page, 'root');
      assert.equal(new URL(page.url()).pathname, '/admin/consumers', 'signed in: back to /admin/consumers');
      for (const nav of ['Consumers', 'Users', 'Providers', 'Grants']) {
        assert.equal(await page.getByRole('link', { name: nav, exact: true }).count(), 1, `a "${nav}" nav link`);
      }
      await action(page, 'Add consumer').waitFor();
      const cookie = (await page.context().cookies()).find((c) => c.name === 'oauth_sidecar_admin');
      assert.ok(cookie, 'the oauth_sidecar_admin session cookie is set');
      assert.equal(cookie.httpOnly, true, 'the session cookie is HttpOnly');
      assert.equal(cookie.sameSite, 'Strict', 'the session cookie is SameSite=Strict');
      assert.equal(cookie.path, '/admin/', 'the session cookie has Path=/admin/');
      await env.shot(page, 'consumers');
      state.root = page;
    }));

  it('creates a confidential third-party consumer and shows its secret once', () =>
    env.guard(async () => {
      const page = state.root;
      assert.ok(page, 'needs root signed in by the first step');
      await action(page, 'Add consumer').click();
      await page.waitForURL((u) => u.pathname === '/admin/consumers/new');
      await field(page, 'Label').fill('Mail connector');
      await field(page, 'Client ID').fill('mailapp');
      await field(page, 'Confidential').check();
      await field(page, 'Third party').check();
      await field(page, 'Redirect URIs').fill(sc.url('/oauth/return'));
      await page.getByRole('checkbox', { name: 'Read mail' }).check();
      await page.getByRole('checkbox', { name: /authori[sz]ation[ _-]?code/i }).check();
      await page.getByRole('checkbox', { name: /refresh[ _-]?token/i }).check();
      await env.shot(page, 'consumer-new');

      await submit(page, page.getByRole('button', { name: 'Save', exact: true }), 'saving the consumer');
      await page.getByRole('heading', { name: 'Consumer saved' }).waitFor();
      state.consumerSecret = (await page.locator('#secret').innerText()).trim();
      assert.match(state.consumerSecret, /^\S{16,}$/, 'a generated secret in #secret');
      await env.shot(page, 'consumer-saved');

      await visit(page, sc.url('/admin/consumers/mailapp'));
      assert.equal(await field(page, 'Label').inputValue(), 'Mail connector');
      assert.equal(await page.locator('#secret').count(), 0, 'no #secret on the edit page');
      assert.ok(!(await page.content()).includes(state.consumerSecret), 'the secret is shown only once');
      await env.shot(page, 'consumer-edit');

      await page.getByRole('link', { name: 'Consumers', exact: true }).click();
      await page.waitForURL((u) => u.pathname === '/admin/consumers');
      const row = page.locator('tr', { hasText: 'mailapp' });
      assert.equal(await row.count(), 1, 'the consumer list has a row for mailapp');
      assert.match(await row.innerText(), /Mail connector/);
      await env.shot(page, 'consumers-list');
      state.consumer = true;
    }));

  it('registers a client for the demo provider with the consumer\'s credentials', () =>
    env.guard(async () => {
      const page = state.root;
      assert.ok(state.consumer, 'needs the consumer from the previous step');
      await page.getByRole('link', { name: 'Providers', exact: true }).click();
      await page.waitForURL((u) => u.pathname === '/admin/providers');
      await env.shot(page, 'providers');

      await page.locator('a[href$="/admin/providers/demo"]').first().click();
      await page.waitForURL((u) => u.pathname === '/admin/providers/demo');
      const redirectUrl = await page.locator('#redirect-url').innerText();
      assert.ok(redirectUrl.includes(sc.url('/oauth/return')), `#redirect-url shows ${sc.url('/oauth/return')}: ${redirectUrl}`);
      const scopes = await page.locator('#provider-scopes').innerText();
      assert.match(scopes, /\bread_mail\b/, '#provider-scopes lists the demo provider\'s scopes');
      assert.match(scopes, /\bopenid\b/, '#provider-scopes lists the demo provider\'s scopes');
      if (!(await field(page, 'Client ID').isVisible())) {
        await page.getByText('Register Client', { exact: true }).first().click();
      }
      await env.shot(page, 'provider-demo');

      await field(page, 'Name').fill('mail');
      await field(page, 'Client ID').fill('mailapp');
      await field(page, 'Client Secret').fill(state.consumerSecret);
      await submit(page, page.getByRole('button', { name: 'Register', exact: true }), 'registering the client');
      await env.shot(page, 'client-registered');

      await visit(page, sc.url('/admin/providers/demo'));
      await page.locator('a[href$="/admin/clients/mail"]').first().click();
      await page.waitForURL((u) => u.pathname === '/admin/clients/mail');
      assert.equal(await page.locator('tr[data-token-id]').count(), 0, 'no token yet');
      await env.shot(page, 'client-empty');
      state.client = true;
    }));

  it('"Add (Auth Code)" passes the provider\'s sign-in and consent and lands back with the token in the table', () =>
    env.guard(async () => {
      const page = state.root;
      assert.ok(state.client, 'needs the client registered by the previous step');
      const navigations = [];
      page.on('request', (r) => {
        if (r.isNavigationRequest()) navigations.push(new URL(r.url()));
      });
      await action(page, 'Add (Auth Code)').click();
      await page.waitForURL((u) => !u.pathname.startsWith('/admin/'));

      // /oauth/start may ask to sign in (its session is not the admin one);
      // the demo provider is this sidecar, where that sign-in counts too.
      const signInHeading = page.getByRole('heading', { name: 'Sign in' });
      const confirmHeading = page.getByRole('heading', { name: 'Connect an account?' });
      const consentHeading = page.getByRole('heading', { name: 'Allow access?' });
      await signInHeading.or(confirmHeading).waitFor();
      if (await signInHeading.isVisible()) {
        await env.shot(page, 'provider-sign-in');
        await field(page, 'Username').fill('root');
        await field(page, 'Password').fill(password.root);
        await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      }
      // A GET of /oauth/start only confirms; its button goes to the provider.
      await confirmHeading.waitFor();
      await env.shot(page, 'start-confirm');
      await confirmStart(page);
      await consentHeading.waitFor();
      const consent = await page.locator('body').innerText();
      assert.match(consent, /Signed in as root/);
      assert.match(consent, /Mail connector/, 'the consent page names the consumer made in the admin page');
      assert.match(consent, /Read mail/);
      await env.shot(page, 'provider-consent');

      await page.getByRole('button', { name: 'Allow', exact: true }).click();
      await page.waitForURL((u) => u.pathname === '/admin/clients/mail');
      const start = navigations.find((u) => u.pathname === '/oauth/start/mail');
      assert.ok(start, `"Add (Auth Code)" goes to /oauth/start/mail; went to ${navigations.map((u) => u.pathname)}`);
      assert.equal(start.searchParams.get('return_to'), '/admin/clients/mail');

      const rows = page.locator('tr[data-token-id]');
      await rows.first().waitFor();
      assert.equal(await rows.count(), 1, 'one token in the table');
      state.tokenId = await rows.first().getAttribute('data-token-id');
      assert.match(state.tokenId, /^\S+$/, 'the row carries the token id');
      const row = await rows.first().innerText();
      assert.match(row, /\broot\b/, `the resource owner is root: ${row}`);
      assert.match(row, /read_mail|Read mail/, `the token's scopes: ${row}`);
      await env.shot(page, 'client-token');
    }));

  it('"Inspect" shows the raw access token and its claims to a user with manage oauth client secrets', () =>
    env.guard(async () => {
      const page = state.root;
      assert.ok(state.tokenId, 'needs the token from the "Add (Auth Code)" step');
      const row = page.locator(`tr[data-token-id="${state.tokenId}"]`);
      await action(row, 'Inspect').click();
      await page.waitForURL((u) => u.pathname === `/admin/clients/mail/tokens/${state.tokenId}`);
      const raw = (await page.locator('#access-token').innerText()).trim();
      const claims = JSON.parse(await page.locator('#claims').innerText());
      assert.deepEqual(claims, jwtClaims(raw), '#claims is the payload of the token in #access-token');
      assert.equal(claims.sub, 'root');
      assert.equal(claims.iss, sc.origin, 'issued by the demo provider, this sidecar');
      assert.equal(claims.client_id, 'mailapp');
      assert.match(claims.scope, /\bread_mail\b/);
      state.accessToken = raw;
      await env.shot(page, 'token-inspect');

      const secrets = { 'access token': raw, 'consumer secret': state.consumerSecret, "root's password": password.root };
      for (const [what, value] of Object.entries(secrets)) {
        assert.ok(!sc.lines.some((line) => line.includes(value)), `the ${what} is in the sidecar's log`);
      }
    }));

  it('the grants page lists the grant the sidecar issued to the consumer, and signing out ends the session', () =>
    env.guard(async () => {
      const page = state.root;
      assert.ok(state.tokenId, 'needs the token from the "Add (Auth Code)" step');
      await page.getByRole('link', { name: 'Grants', exact: true }).click();
      await page.waitForURL((u) => u.pathname === '/admin/grants');
      const row = page.locator('tr', { hasText: 'root' }).filter({ hasText: /Mail connector|mailapp/ });
      assert.equal(await row.count(), 1, 'a grant row for the consumer and root');
      assert.equal(await action(row, 'Revoke').count(), 1, 'the grant has a "Revoke" button');
      await env.shot(page, 'grants');

      await page.getByRole('button', { name: 'Sign out', exact: true }).click();
      await page.waitForURL((u) => u.pathname === '/admin/login');
      await visit(page, sc.url('/admin/consumers'));
      assert.equal(new URL(page.url()).pathname, '/admin/login', 'signed out: the pages ask to sign in again');
      await env.shot(page, 'signed-out');
    }));

  it('a user with only administer oauth sees the token without "Inspect", and the inspect URL answers 403', () =>
    env.guard(async () => {
      assert.ok(state.tokenId && state.accessToken, 'needs the inspected token from the earlier steps');
      const page = await env.newPage();
      await visit(page, sc.url('/admin/login'));
      await signIn(page, 'operator');
      assert.equal(new URL(page.url()).pathname, '/admin/consumers', 'operator may use the admin pages');

      await visit(page, sc.url('/admin/clients/mail'));
      const row = page.locator(`tr[data-token-id="${state.tokenId}"]`);
      await row.waitFor();
      assert.equal(await action(row, 'Delete').count(), 1, 'the token row has its "Delete" button');
      assert.equal(await action(page, 'Inspect').count(), 0, 'no "Inspect" without manage oauth client secrets');
      assert.equal(await page.locator('a[href*="/tokens/"]').count(), 0, 'no link to a token page');
      await env.shot(page, 'operator-client');

      const res = await visit(page, sc.url(`/admin/clients/mail/tokens/${state.tokenId}`));
      assert.equal(res.status(), 403, 'the inspect URL answers 403 without manage oauth client secrets');
      assert.ok(!(await page.content()).includes(state.accessToken), 'the 403 page does not show the token');
      await env.shot(page, 'operator-inspect-403');
    }));

  it('a signed-in user who is not admin, or admin without administer oauth, gets 403 on every /admin/ URL', () =>
    env.guard(async () => {
      // Refused before any lookup: any token id will do when no step made one.
      const tokenId = state.tokenId ?? '1';
      const paths = [
        '/admin/',
        '/admin/consumers',
        '/admin/consumers/new',
        '/admin/consumers/mailapp',
        '/admin/consumers/mailapp/delete',
        '/admin/users',
        '/admin/users/new',
        '/admin/users/root',
        '/admin/providers',
        '/admin/providers/demo',
        '/admin/clients/mail',
        `/admin/clients/mail/tokens/${tokenId}`,
        '/admin/grants',
      ];
      const wrong = [];
      for (const user of ['bob', 'keeper']) {
        const page = await env.newPage();
        await visit(page, sc.url('/admin/login'));
        await signIn(page, user);
        await env.shot(page, `${user}-signed-in`);
        for (const path of paths) {
          const res = await visit(page, sc.url(path));
          const landed = new URL(page.url()).pathname;
          if (res.status() !== 403) wrong.push(`${user}: GET ${path} answered ${res.status()} at ${landed}`);
          await env.shot(page, `${user}-${path}`);
        }
      }
      assert.deepEqual(wrong, [], `every /admin/ URL answers 403:\n${wrong.join('\n')}`);
    }));
});
