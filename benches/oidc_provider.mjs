// The reference for benches/token.sh: node's `oidc-provider`, configured as
// close to oauth-sidecar's client_credentials path as it allows.
//
// - One confidential client, `client_secret_basic`, grant type
//   `client_credentials` only, allowed scope `farm_viewer`.
// - Access tokens are JWTs (RFC 9068, `typ: at+jwt`) signed with EdDSA
//   (Ed25519), like ours. oidc-provider issues JWT access tokens only for a
//   resource server, through its resource indicators feature: every token
//   request without a `resource` parameter gets the default resource (the
//   issuer, which is also our `aud`), whose format is `jwt`. JWT-format tokens
//   are not written to the adapter, so no storage is involved either.
// - Keys are made at start (Ed25519 for access tokens, plus the RS256 key
//   oidc-provider wants for ID tokens), as our sidecar makes its own.
//
// Run by benches/token.sh from the folder where it installed oidc-provider
// (so that `import 'oidc-provider'` resolves there), in node's default single
// process. Settings come from the environment: HOST, PORT, CLIENT_ID,
// CLIENT_SECRET, SCOPE. Nothing here logs a secret or a token.

import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

const host = process.env.HOST ?? '127.0.0.1';
const port = Number(process.env.PORT ?? 9111);
const clientId = process.env.CLIENT_ID ?? 'reporting';
const clientSecret = process.env.CLIENT_SECRET;
const scope = process.env.SCOPE ?? 'farm_viewer';
if (!clientSecret) {
  console.error('CLIENT_SECRET is required');
  process.exit(2);
}

const issuer = `http://${host}:${port}`;

function privateJwk(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-bench` };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope,
    },
  ],
  scopes: [scope],
  jwks: {
    keys: [
      privateJwk('ed25519', {}, 'EdDSA'),
      privateJwk('rsa', { modulusLength: 2048 }, 'RS256'),
    ],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => issuer,
      getResourceServerInfo: () => ({
        scope,
        audience: issuer,
        accessTokenTTL: 3600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'EdDSA' } },
      }),
    },
  },
  enabledJWA: {
    // EdDSA is on by default in recent versions; listing it keeps this
    // file working if the default changes.
    idTokenSigningAlgValues: ['RS256', 'EdDSA'],
  },
});

provider.listen(port, host, () => {
  console.log(`oidc-provider listening on ${issuer} (node ${process.version}, pid ${process.pid})`);
});
