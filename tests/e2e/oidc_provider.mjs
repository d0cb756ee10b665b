// An outside OAuth provider for the browser tests: node's `oidc-provider`
// (the reference benches/oidc_provider.mjs measures our token endpoint
// against), on loopback, on a port of its own, so that it is another origin
// than the sidecar's. Its development sign-in and consent pages stand in for
// a real provider's: any login name signs in, and its email is
// `<login>@provider.test`.
//
// The version is pinned in tests/e2e/package.json (the same one
// benches/token.sh installs for its reference by default).

import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

import { freePort, secret } from './harness.mjs';

/** The email the provider gives the account `login`. */
export const emailOf = (login) => `${login}@provider.test`;

/**
 * Starts oidc-provider on 127.0.0.1 with one confidential client
 * (`client_secret_basic`, authorization code with PKCE and refresh
 * tokens). `redirectUris(issuer)` gives the client's redirect URIs.
 * `claimsOf(login)` adds claims to an account's (such as `groups`, given
 * with the `profile` scope); with `signIn: true` (a provider people sign
 * in with) the claims are in the ID token and a signed-in account's
 * consent is taken as given.
 * Resolves to `{ issuer, clientId, clientSecret, userinfo(token),
 * tamperIdTokens(on), close() }`.
 */
export async function startOidcProvider({ clientId = 'sidecar', redirectUris, claimsOf = () => ({}), signIn = false }) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const clientSecret = secret();
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
    findAccount: (_ctx, id) => ({
      accountId: id,
      claims: () => ({ sub: id, email: emailOf(id), email_verified: true, name: id, ...claimsOf(id) }),
    }),
    ...(signIn ? { conformIdTokenClaims: false, loadExistingGrant: consentGiven } : {}),
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid: 'e2e' }] },
    cookies: { keys: [secret()] },
    features: { devInteractions: { enabled: true } },
  });
  // With tampering on, the token endpoint's ID tokens get a broken signature.
  let tamper = false;
  provider.use(async (ctx, next) => {
    await next();
    if (tamper && ctx.path === '/token' && ctx.body?.id_token) {
      const [head, payload, sig] = ctx.body.id_token.split('.');
      const flipped = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
      ctx.body = { ...ctx.body, id_token: [head, payload, flipped].join('.') };
    }
  });
  // The development pages warn on every start; the tests know.
  provider.on('server_error', (_ctx, err) => console.error(`oidc-provider: ${err.message}`));
  const server = await new Promise((resolve) => {
    const s = provider.listen(port, '127.0.0.1', () => resolve(s));
  });
  return {
    issuer,
    clientId,
    clientSecret,
    /** The provider's userinfo for an access token: `{ status, body }`. */
    async userinfo(token) {
      const res = await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${token}` } });
      return { status: res.status, body: await res.json().catch(() => null) };
    },
    /** Turns broken ID token signatures on or off. */
    tamperIdTokens(on) {
      tamper = on;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The grant of a signed-in account: every scope asked for, without a consent page. */
async function consentGiven(ctx) {
  const { oidc } = ctx;
  const grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  grant.addOIDCScope(oidc.params.scope);
  await grant.save();
  return grant;
}
