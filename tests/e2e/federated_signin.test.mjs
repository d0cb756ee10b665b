// Sign-in through outside providers (server.login.providers), without a
// browser: two node oidc-provider instances on loopback ("corp" and
// "partner") configured at once, the sidecar's /oauth/authorize and admin
// pages, and plain HTTP with a cookie jar per simulated browser.
//
// - A user signs in at /oauth/authorize through either provider, gets a
//   code and then a token whose roles came from the role rules.
// - A user outside `allow` is refused, and nothing is stored for them.
// - The admin pages accept a user the rules make an admin, and the Users
//   page says where each role came from.
// - Each refusal of the return is a page saying what happened: the
//   provider's error, a state used twice, a state from another browser, an
//   `iss` of another issuer, an ID token with a broken signature.
//
// Run: cargo build --bin oauth-sidecar &&
//      OAUTH_SIDECAR_BIN=$CARGO_TARGET_DIR/debug/oauth-sidecar node --test tests/e2e/federated_signin.test.mjs

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { Sidecar, freePort } from './harness.mjs';
import { federatedYaml, startProviders } from './federated_fixture.mjs';
import { emailOf, startOidcProvider } from './oidc_provider.mjs';

/** A browser's cookies, per host, for `fetch` without redirects followed. */
class Browser {
  constructor() {
    this.jar = new Map();
  }

  cookies(url) {
    const host = new URL(url).host;
    const mine = this.jar.get(host) ?? new Map();
    return [...mine].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  keep(url, res) {
    const host = new URL(url).host;
    const mine = this.jar.get(host) ?? new Map();
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const at = pair.indexOf('=');
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      if (attrs.some((a) => a.trim().toLowerCase() === 'max-age=0') || value === '') mine.delete(name);
      else mine.set(name, value);
    }
    this.jar.set(host, mine);
  }

  /** One request; resolves to `{ res, url, body }`. */
  async go(url, { method = 'GET', form } = {}) {
    const headers = { cookie: this.cookies(url) };
    let body;
    if (form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(form).toString();
    }
    const res = await fetch(url, { method, headers, body, redirect: 'manual' });
    this.keep(url, res);
    return { res, url, body: await res.text() };
  }

  /** Follows redirects from `url` until an answer that is not one, or a URL starting with `stopAt`. */
  async follow(url, { stopAt, ...options } = {}) {
    let step = await this.go(url, options);
    for (let i = 0; i < 20; i += 1) {
      const location = step.res.headers.get('location');
      if (!location || step.res.status < 300 || step.res.status >= 400) return step;
      const next = new URL(location, step.url).href;
      if (stopAt && next.startsWith(stopAt)) return { ...step, redirect: next };
      step = await this.go(next);
    }
    throw new Error(`too many redirects from ${url}`);
  }
}

/** The href of the button labelled `label` on a sign-in page. */
function button(page, label) {
  const m = [...page.body.matchAll(/<a class="provider" href="([^"]+)">([^<]+)<\/a>/g)].find(
    (b) => b[2] === label,
  );
  assert.ok(m, `no button "${label}" on the page:\n${page.body}`);
  return new URL(m[1].replaceAll('&amp;', '&').replaceAll('&#x2f;', '/'), page.url).href;
}

/**
 * Signs `login` in on oidc-provider's development login page and follows
 * the redirects (back through the sidecar) up to `stopAt`; the last step.
 */
async function providerLogin(browser, page, login, stopAt) {
  const action = page.body.match(/<form autocomplete="off" action="([^"]+)"/);
  assert.ok(action, `not the provider's login page:\n${page.body.slice(0, 500)}`);
  return browser.follow(new URL(action[1], page.url).href, {
    method: 'POST',
    form: { prompt: 'login', login, password: 'any' },
    stopAt,
  });
}

const b64url = (buf) => buf.toString('base64url');

describe('sign-in through two outside providers', () => {
  let sc;
  let corp;
  let partner;
  const appRedirect = 'http://127.0.0.1:9/cb';

  before(async () => {
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const groups = { alice: ['staff', 'managers'], root: ['staff', 'admins'], bob: ['contractors'] };
    ({ corp, partner } = await startProviders(origin, groups));
    const partnerRules = `        match_email: true
        allow: { emails: [${emailOf('carol')}, ${emailOf('frank')}] }
        roles:
          - { role: farm_viewer, when: { everyone: true } }
`;
    sc = await Sidecar.fromYaml('federated', port, origin, (dir) =>
      federatedYaml({ port, origin, dir, appRedirect, corp, partner, partnerRules }),
    );
    await sc.start();
    // A local user named by an email: `partner` links its account to it (match_email).
    await sc.addUser(emailOf('frank'), 'frank-local-password-1');
    // One `corp` must not take over: its entry does not say match_email.
    await sc.addUser(emailOf('alice'), 'alice-local-password-1');
  });

  after(async () => {
    await sc?.stop();
    await sc?.remove();
    await corp?.close();
    await partner?.close();
  });

  /** An authorization request of the consumer `app`, with its PKCE verifier. */
  function authorizeUrl() {
    const verifier = b64url(randomBytes(32));
    const challenge = b64url(createHash('sha256').update(verifier).digest());
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: 'app',
      redirect_uri: appRedirect,
      scope: 'openid farm_viewer farm_manager',
      state: b64url(randomBytes(8)),
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    return { url: sc.url(`/oauth/authorize?${q}`), verifier };
  }

  /** Signs `login` in at /oauth/authorize with the button `label`; the answer at the app or the page shown. */
  async function signInAt(browser, label, login) {
    const { url, verifier } = authorizeUrl();
    const page = await browser.go(url);
    assert.equal(page.res.status, 200);
    const atProvider = await browser.follow(button(page, label));
    const done = await providerLogin(browser, atProvider, login, appRedirect);
    return { done, verifier };
  }

  async function token(redirect, verifier) {
    const code = new URL(redirect).searchParams.get('code');
    assert.ok(code, `no code in ${redirect}`);
    const res = await fetch(sc.url('/oauth/token'), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: appRedirect,
        client_id: 'app',
        code_verifier: verifier,
      }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    const claims = JSON.parse(Buffer.from(body.access_token.split('.')[1], 'base64url').toString());
    return { body, claims };
  }

  it('shows a button per provider beside the password form', async () => {
    const page = await new Browser().go(authorizeUrl().url);
    assert.equal(page.res.status, 200);
    assert.match(page.body, /Corp account/);
    assert.match(page.body, /Partner account/);
    assert.match(page.body, /type="password"/);
  });

  it('signs a user in through the first provider: a code, then a token with the mapped roles', async () => {
    const browser = new Browser();
    const { done, verifier } = await signInAt(browser, 'Corp account', 'alice');
    assert.ok(done.redirect, `not sent back to the app: ${done.res.status}\n${done.body}`);
    assert.equal(new URL(done.redirect).searchParams.get('iss'), sc.origin);
    const { claims } = await token(done.redirect, verifier);
    assert.equal(claims.sub, `corp:${emailOf('alice')}`, 'not the local user of the same email');
    const scopes = claims.scope.split(' ');
    assert.ok(scopes.includes('farm_manager'), claims.scope);
    assert.ok(scopes.includes('farm_viewer'), claims.scope);
  });

  it('signs a user in through the second provider, with only the roles its rules give', async () => {
    const browser = new Browser();
    const { done, verifier } = await signInAt(browser, 'Partner account', 'carol');
    assert.ok(done.redirect, `not sent back to the app: ${done.res.status}\n${done.body}`);
    const { claims } = await token(done.redirect, verifier);
    assert.equal(claims.sub, `partner:${emailOf('carol')}`);
    const scopes = claims.scope.split(' ');
    assert.ok(scopes.includes('farm_viewer'), claims.scope);
    assert.ok(!scopes.includes('farm_manager'), claims.scope);
  });

  it('links a first sign-in to the local user of the verified email when the entry says match_email', async () => {
    const { done, verifier } = await signInAt(new Browser(), 'Partner account', 'frank');
    assert.ok(done.redirect, `not sent back to the app: ${done.res.status}\n${done.body}`);
    const { claims } = await token(done.redirect, verifier);
    assert.equal(claims.sub, emailOf('frank'));
    assert.ok(claims.scope.split(' ').includes('farm_viewer'), claims.scope);
    assert.doesNotMatch(await sc.cli(['user', 'list']), /partner:frank/);
  });

  it('refuses a user outside allow, and stores nothing for them', async () => {
    const browser = new Browser();
    const { done } = await signInAt(browser, 'Corp account', 'bob');
    assert.equal(done.res.status, 403, done.body);
    assert.match(done.body, /may not sign in here/);
    const users = await sc.cli(['user', 'list']);
    assert.doesNotMatch(users, /bob/);
    assert.match(users, /corp:alice/);
  });

  it('accepts a federated admin on the admin pages, whose Users page says where each role came from', async () => {
    const browser = new Browser();
    const login = await browser.go(sc.url('/admin/login?next=%2Fadmin%2Fusers'));
    assert.equal(login.res.status, 200);
    const atProvider = await browser.follow(button(login, 'Corp account'));
    const back = await providerLogin(browser, atProvider, 'root');
    assert.equal(back.res.status, 200, back.body);
    assert.match(back.body, /You are signed in/);
    const users = await browser.follow(sc.url('/admin/users'));
    assert.equal(users.res.status, 200, users.body);
    assert.match(users.body, /corp:root@provider\.test/);
    assert.match(users.body, /admin: corp: groups has admins/);
    assert.match(users.body, /farm_manager: corp: groups has managers/);
    assert.match(users.body, /farm_viewer: corp: email domain provider\.test/);

    // A user the rules do not make an admin signs in, and is refused there.
    const other = new Browser();
    const page = await other.go(sc.url('/admin/login'));
    const signedIn = await providerLogin(other, await other.follow(button(page, 'Corp account')), 'alice');
    assert.match(signedIn.body, /You are signed in/);
    const refused = await other.follow(sc.url('/admin/users'));
    assert.equal(refused.res.status, 403, refused.body);
    assert.match(refused.body, /may not use the admin pages/);
  });

  it('refuses a state used twice, and one from another browser, each with a page', async () => {
    const browser = new Browser();
    const { url } = authorizeUrl();
    const page = await browser.go(url);
    const atProvider = await browser.follow(button(page, 'Corp account'));
    // The provider's answer, not followed yet: the return URL with code and state.
    const action = atProvider.body.match(/<form autocomplete="off" action="([^"]+)"/)[1];
    let step = await browser.go(new URL(action, atProvider.url).href, {
      method: 'POST',
      form: { prompt: 'login', login: 'alice', password: 'any' },
    });
    while (!step.res.headers.get('location')?.includes('/oauth/login/return')) {
      step = await browser.go(new URL(step.res.headers.get('location'), step.url).href);
    }
    const returnUrl = new URL(step.res.headers.get('location'), step.url).href;

    const stranger = await new Browser().go(returnUrl);
    assert.equal(stranger.res.status, 403, stranger.body);
    assert.match(stranger.body, /started in another browser/);

    // The state was used by that attempt: the right browser now finds it used too.
    const again = await browser.go(returnUrl);
    assert.equal(again.res.status, 400, again.body);
    assert.match(again.body, /unknown or was already used/);
  });

  it("shows the provider's error, and refuses an answer naming another issuer", async () => {
    const browser = new Browser();
    const page = await browser.go(authorizeUrl().url);
    const toProvider = await browser.go(button(page, 'Corp account'));
    const state = new URL(toProvider.res.headers.get('location')).searchParams.get('state');
    const cancelled = await browser.go(
      sc.url(`/oauth/login/return?error=access_denied&error_description=the+user+said+no&state=${state}`),
    );
    assert.equal(cancelled.res.status, 403, cancelled.body);
    assert.match(cancelled.body, /access_denied/);
    assert.match(cancelled.body, /the user said no/);

    const next = await browser.go(button(page, 'Corp account'));
    const state2 = new URL(next.res.headers.get('location')).searchParams.get('state');
    const mixedUp = await browser.go(
      sc.url(`/oauth/login/return?code=abc&state=${state2}&iss=${encodeURIComponent(partner.issuer)}`),
    );
    assert.equal(mixedUp.res.status, 400, mixedUp.body);
    assert.match(mixedUp.body, /another issuer/);
  });

  it('refuses an ID token whose signature does not verify, and stores nothing', async () => {
    corp.tamperIdTokens(true);
    try {
      const browser = new Browser();
      const { done } = await signInAt(browser, 'Corp account', 'dave');
      assert.equal(done.res.status, 400, done.body);
      assert.match(done.body, /ID token from corp failed a check/);
    } finally {
      corp.tamperIdTokens(false);
    }
    assert.doesNotMatch(await sc.cli(['user', 'list']), /dave/);
  });
});

describe('one provider and no password form', () => {
  let sc;
  let corp;
  const appRedirect = 'http://127.0.0.1:9/cb';

  before(async () => {
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    corp = await startOidcProvider({
      clientId: 'sidecar-only',
      redirectUris: [`${origin}/oauth/login/return`],
      signIn: true,
    });
    sc = await Sidecar.fromYaml('federated-only', port, origin, (dir) => `
listen: 127.0.0.1:${port}
public_url: ${origin}
upstream: demo
store: sqlite://${dir}/data/sidecar.db
log: { level: info, format: json }
shutdown_grace: 2s
server:
  roles:
    farm_viewer: { label: Viewer }
  consumers:
    - client_id: app
      confidential: false
      third_party: false
      redirect_uris: [${appRedirect}]
      scopes: [farm_viewer]
  login:
    password: false
    providers:
      - name: corp
        provider: oidc
        issuer: ${corp.issuer}
        client_id: ${corp.clientId}
        client_secret: ${corp.clientSecret}
        allow: { email_domains: [provider.test] }
`);
    await sc.start();
  });

  after(async () => {
    await sc?.stop();
    await sc?.remove();
    await corp?.close();
  });

  function authorizeUrl(extra = {}) {
    const verifier = b64url(randomBytes(32));
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: 'app',
      redirect_uri: appRedirect,
      state: 'st',
      code_challenge: b64url(createHash('sha256').update(verifier).digest()),
      code_challenge_method: 'S256',
      ...extra,
    });
    return sc.url(`/oauth/authorize?${q}`);
  }

  it('goes straight to the provider, and prompt=login ends at the app after one sign-in', async () => {
    const browser = new Browser();
    const first = await browser.go(authorizeUrl({ prompt: 'login' }));
    assert.equal(first.res.status, 303, first.body);
    assert.match(first.res.headers.get('location'), /^\/oauth\/login\/start\?provider=corp&next=/);
    const atProvider = await browser.follow(new URL(first.res.headers.get('location'), sc.url()).href);
    assert.ok(atProvider.url.startsWith(corp.issuer), atProvider.url);
    const done = await providerLogin(browser, atProvider, 'erin', appRedirect);
    assert.ok(done.redirect, `not sent back to the app: ${done.res.status}\n${done.body.slice(0, 300)}`);
    assert.ok(new URL(done.redirect).searchParams.get('code'));
  });
});
