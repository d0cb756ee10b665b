// OpenID Connect logout driven by a real relying party: openid-client signs
// a user in at the sidecar's authorization server (Chromium on the sign-in
// page), then sends the browser to the end_session_endpoint with
// id_token_hint, post_logout_redirect_uri and state. The session must be
// gone afterwards, the browser must land only on a registered URI (an
// unregistered one is refused), and a back-channel receiver must get a
// logout token that verifies with the sidecar's JWKS (jose) and names the
// session of the ID token (its sid).

import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';

import * as jose from 'jose';
import * as client from 'openid-client';

import { browserTest, secret, signIn, visit } from './harness.mjs';

/**
 * The relying party's own web server on loopback: /callback and
 * /signed-out answer a small page and keep the URLs they were called with;
 * POST /backchannel keeps each `logout_token`.
 */
async function relyingParty(t) {
  const seen = { callback: [], signedOut: [], logoutTokens: [] };
  const waiters = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, `http://${req.headers.host}`);
    if (req.method === 'POST' && url.pathname === '/backchannel') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        assert.match(req.headers['content-type'] ?? '', /^application\/x-www-form-urlencoded/);
        seen.logoutTokens.push(new URLSearchParams(body).get('logout_token'));
        for (const wake of waiters.splice(0)) wake();
        res.writeHead(200, { 'cache-control': 'no-store' }).end();
      });
      return;
    }
    const list = { '/callback': seen.callback, '/signed-out': seen.signedOut }[url.pathname];
    if (!list) {
      res.writeHead(404).end();
      return;
    }
    list.push(url);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>Relying party</title><h1>Relying party ${url.pathname}</h1>`);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  const base = `http://127.0.0.1:${server.address().port}`;
  /** Resolves once a logout token arrived (at most `ms`). */
  async function logoutToken(ms = 20_000) {
    const deadline = Date.now() + ms;
    while (seen.logoutTokens.length === 0) {
      const left = deadline - Date.now();
      assert.ok(left > 0, `no logout token within ${ms} ms`);
      await new Promise((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, left);
      });
    }
    return seen.logoutTokens[0];
  }
  return { base, seen, logoutToken };
}

test('RP-initiated logout with openid-client: the session ends, only a registered URI is used, and a verifiable logout token names the session', async (t) => {
  const rp = await relyingParty(t);
  await browserTest(t, 'logout', async ({ sidecar, newPage, shot }) => {
    const sc = await sidecar(() => `
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
  consumers:
    - client_id: webapp
      label: Web app
      confidential: false
      third_party: false
      redirect_uris: [${rp.base}/callback]
      post_logout_redirect_uris: [${rp.base}/signed-out]
      backchannel_logout_uri: ${rp.base}/backchannel
      scopes: [farm_viewer]
      grant_types: [authorization_code]
`);
    const password = secret();
    await sc.addUser('alice', password, ['--role', 'farm_viewer']);
    await sc.start();

    // openid-client discovers us (plain http on loopback needs its opt-in).
    const config = await client.discovery(new URL(sc.origin), 'webapp', undefined, client.None(), {
      execute: [client.allowInsecureRequests],
    });
    const meta = config.serverMetadata();
    assert.equal(meta.end_session_endpoint, sc.url('/oauth/logout'));
    assert.equal(meta.backchannel_logout_supported, true);
    assert.equal(meta.backchannel_logout_session_supported, true);

    // Sign-in in Chromium, the code redeemed by openid-client.
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const authorize = client.buildAuthorizationUrl(config, {
      redirect_uri: `${rp.base}/callback`,
      scope: 'openid farm_viewer',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    const page = await newPage();
    await page.goto(authorize.href);
    await shot(page, 'sign-in');
    await signIn(page, 'alice', password);
    await page.waitForURL(`${rp.base}/callback?**`);
    const tokens = await client.authorizationCodeGrant(config, new URL(page.url()), {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    const idClaims = tokens.claims();
    assert.equal(idClaims.sub, 'alice');
    assert.ok(idClaims.sid, 'the ID token names its session (sid)');

    // An unregistered post_logout_redirect_uri is refused: no redirect, the session stays.
    const refused = client.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token,
      post_logout_redirect_uri: 'https://evil.example/after',
    });
    const refusal = await visit(page, refused.href);
    assert.equal(refusal.status(), 400);
    assert.equal(new URL(page.url()).origin, sc.origin, 'the browser stays on the sidecar');
    assert.match(await page.locator('body').innerText(), /not registered/);
    await shot(page, 'unregistered-redirect-refused');
    assert.equal(rp.seen.logoutTokens.length, 0, 'nothing ended');

    // The registered one: the session ends at once (the hint names it) and
    // the browser lands there with the state.
    const logoutState = client.randomState();
    const endSession = client.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token,
      post_logout_redirect_uri: `${rp.base}/signed-out`,
      state: logoutState,
    });
    await page.goto(endSession.href);
    await page.waitForURL(`${rp.base}/signed-out?**`);
    await shot(page, 'signed-out');
    assert.equal(rp.seen.signedOut.length, 1);
    assert.equal(rp.seen.signedOut[0].searchParams.get('state'), logoutState);

    // The session is gone: authorizing again shows the sign-in page.
    await page.goto(authorize.href);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await shot(page, 'sign-in-again');

    // The logout token verifies with the JWKS and names the session.
    const logoutToken = await rp.logoutToken();
    const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
    const { payload, protectedHeader } = await jose.jwtVerify(logoutToken, jwks, {
      issuer: meta.issuer,
      audience: 'webapp',
      typ: 'logout+jwt',
      maxTokenAge: '2m',
    });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.sid, idClaims.sid, 'the logout token names the ID token\'s session');
    assert.deepEqual(payload.events, { 'http://schemas.openid.net/event/backchannel-logout': {} });
    assert.ok(payload.jti && payload.iat, 'jti and iat');
    assert.equal(payload.nonce, undefined, 'a logout token has no nonce');

    // Without a hint the user is asked first; the confirmed form (a POST
    // with its CSRF token) ends the second session and goes on to the
    // registered URI, which the page's CSP allows as the form's target.
    await signIn(page, 'alice', password);
    await page.waitForURL(`${rp.base}/callback?**`);
    const second = await client.authorizationCodeGrant(config, new URL(page.url()), {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    assert.notEqual(second.claims().sid, idClaims.sid, 'a new session, a new sid');
    const asked = client.buildEndSessionUrl(config, {
      post_logout_redirect_uri: `${rp.base}/signed-out`,
      state: 'second',
    });
    await page.goto(asked.href);
    await page.getByRole('heading', { name: 'Sign out?' }).waitFor();
    assert.match(await page.locator('body').innerText(), /Web app asks to sign you out/);
    await shot(page, 'confirm-sign-out');
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.waitForURL(`${rp.base}/signed-out?state=second`);
    await page.goto(authorize.href);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    const deadline = Date.now() + 20_000;
    while (rp.seen.logoutTokens.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(rp.seen.logoutTokens.length, 2, 'one logout token per ended session');
    const { payload: secondPayload } = await jose.jwtVerify(rp.seen.logoutTokens[1], jwks, {
      issuer: meta.issuer,
      audience: 'webapp',
      typ: 'logout+jwt',
    });
    assert.equal(secondPayload.sid, second.claims().sid);

    // And a token signed with another key does not verify with ours.
    const { privateKey } = await jose.generateKeyPair('RS256');
    const forged = await new jose.SignJWT(payload)
      .setProtectedHeader({ alg: 'RS256', typ: 'logout+jwt', kid: protectedHeader.kid })
      .sign(privateKey);
    await assert.rejects(jose.jwtVerify(forged, jwks, { issuer: meta.issuer, audience: 'webapp' }));
  });
});
