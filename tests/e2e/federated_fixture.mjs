// The setup both federated sign-in tests share: two node oidc-provider
// instances ("corp", which sends a `groups` claim, and "partner") that send
// the browser back to the sidecar's two return paths, and the sidecar's
// configuration with a consumer `app` and both providers.

import { startOidcProvider } from './oidc_provider.mjs';

/**
 * Starts "corp" and "partner" for a sidecar at `origin`; `groups` maps a
 * login name to the groups corp's ID tokens name.
 */
export async function startProviders(origin, groups) {
  const redirectUris = [`${origin}/oauth/login/return`, `${origin}/admin/login/return`];
  const corp = await startOidcProvider({
    clientId: 'sidecar-corp',
    redirectUris,
    claimsOf: (login) => ({ groups: groups[login] ?? [] }),
    signIn: true,
  });
  const partner = await startOidcProvider({ clientId: 'sidecar-partner', redirectUris, signIn: true });
  return { corp, partner };
}

/**
 * The sidecar's YAML: the demo upstream, the consumer `app` redirecting to
 * `appRedirect`, and both providers. corp allows its `staff` group and
 * gives roles by email domain and group (admins are admins); `partner` is
 * the partner entry's own lines (`allow`, `roles`, ...), indented as list
 * entry fields.
 */
export function federatedYaml({ port, origin, dir, appRedirect, corp, partner, partnerRules }) {
  return `
listen: 127.0.0.1:${port}
public_url: ${origin}
upstream: demo
store: sqlite://${dir}/data/sidecar.db
log: { level: info, format: json }
shutdown_grace: 2s
server:
  roles:
    farm_viewer: { label: Viewer }
    farm_manager: { label: Manager }
  consumers:
    - client_id: app
      label: Farm app
      confidential: false
      third_party: false
      redirect_uris: [${appRedirect}]
      scopes: [farm_viewer, farm_manager]
      limit_user_access: true
  login:
    providers:
      - name: corp
        provider: oidc
        issuer: ${corp.issuer}
        label: Corp account
        client_id: ${corp.clientId}
        client_secret: ${corp.clientSecret}
        allow: { groups: [staff] }
        roles:
          - { role: farm_viewer, when: { email_domains: [provider.test] } }
          - { role: farm_manager, when: { groups: [managers] } }
          - { admin: true, when: { groups: [admins] } }
      - name: partner
        provider: oidc
        issuer: ${partner.issuer}
        label: Partner account
        client_id: ${partner.clientId}
        client_secret: ${partner.clientSecret}
${partnerRules}`;
}
