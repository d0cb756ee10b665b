//! `server.login`: how people sign in to our pages: the password form
//! (`password`, default on) and outside OpenID providers (`providers`), each
//! with who may sign in (`allow`) and which of our roles they get (`roles`).
//!
//! A provider entry names a preset (`gmail` for Google, `ms-exchange` for
//! Microsoft Entra ID with its `tenant`, `oidc` with an `issuer`) or a
//! `client.providers` entry with an `issuer`. Validation resolves each to
//! the issuer whose discovery document, keys and ID tokens are used.

use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;
use super::client::ClientConfig;
use super::types::{At, Duration};
use super::validate::Problems;

/// `server.login`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// Whether the sign-in page shows the username and password form.
    pub password: At<bool>,
    /// How long a sign-in started at a provider may take.
    pub state_ttl: Duration,
    /// Outside providers people may sign in with, one button each.
    pub providers: Vec<LoginProviderConfig>,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            password: At::default_value(true),
            state_ttl: Duration::secs(600),
            providers: Vec::new(),
        }
    }
}

/// One outside provider on the sign-in page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginProviderConfig {
    /// A machine name: part of user names and the provider's button.
    pub name: At<String>,
    /// `gmail`, `ms-exchange`, `oidc` or a `client.providers` entry's name.
    pub provider: At<String>,
    /// The button's text; default `Sign in with {name}`.
    pub label: String,
    /// The OpenID issuer, for `oidc` (a `client.providers` entry has its own).
    pub issuer: Option<At<String>>,
    /// The Microsoft Entra ID tenant (its ID or domain), for `ms-exchange`.
    pub tenant: Option<At<String>>,
    /// Our client ID at the provider.
    pub client_id: At<String>,
    /// Our client secret at the provider.
    pub client_secret: Option<At<Secret>>,
    /// A file holding the client secret.
    pub client_secret_file: Option<At<PathBuf>>,
    /// Scopes asked for; default `openid email profile`.
    pub scopes: Vec<String>,
    /// Link a first sign-in to the local user named by the `email` claim
    /// when the provider says `email_verified: true`; off by default.
    pub match_email: bool,
    /// Who may sign in; nobody unless said.
    pub allow: ClaimMatch,
    /// Our roles (and the admin pages) for whom, recomputed at every sign-in.
    pub roles: Vec<RoleRule>,
    /// The issuer the entry comes to, set by validation.
    #[serde(skip)]
    pub resolved_issuer: String,
}

/// Conditions on a signed-in person's ID token claims; any one that holds
/// is a match. The email conditions count only with `email_verified: true`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimMatch {
    /// Everybody the provider signs in.
    pub everyone: bool,
    /// Emails in these domains.
    pub email_domains: Vec<String>,
    /// These emails.
    pub emails: Vec<String>,
    /// A value of the `groups` claim.
    pub groups: Vec<String>,
    /// A value of the `roles` claim.
    pub roles: Vec<String>,
    /// A claim (with `equals`): the claim is, or contains, the value.
    pub claim: Option<String>,
    /// The value `claim` must have.
    pub equals: Option<String>,
}

impl ClaimMatch {
    /// True when no condition is set (matches nobody).
    pub fn is_empty(&self) -> bool {
        *self == ClaimMatch::default()
    }
}

/// A role rule: whom it gives a role (or the admin pages) to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleRule {
    /// A role of `server.roles`.
    pub role: Option<At<String>>,
    /// Admin pages access (`administer oauth`).
    pub admin: bool,
    /// Who gets it.
    pub when: ClaimMatch,
}

/// The issuer of a preset, or `None` for a name that is not one.
fn preset_issuer(entry: &LoginProviderConfig) -> Option<Result<String, String>> {
    Some(match entry.provider.value.as_str() {
        "gmail" | "google" => Ok("https://accounts.google.com".to_owned()),
        "ms-exchange" | "microsoft" => match entry.tenant.as_deref().map(String::as_str) {
            None => Err("`ms-exchange` needs `tenant`: the Entra ID tenant's ID or domain".to_owned()),
            Some("common" | "organizations" | "consumers") => {
                Err("`tenant` must name one tenant (its ID or domain): `common`, `organizations` and \
                 `consumers` have no single issuer to check"
                    .to_owned())
            }
            Some(tenant) => Ok(format!("https://login.microsoftonline.com/{tenant}/v2.0")),
        },
        "oidc" => {
            entry.issuer.as_ref().map(|i| i.value.clone()).ok_or_else(|| "`oidc` needs `issuer`".to_owned())
        }
        _ => return None,
    })
}

/// Checks `server.login`, reads the client secret files, and resolves each
/// provider's issuer (a `client.providers` entry's comes from `client`).
pub(super) fn validate(
    login: &mut LoginConfig,
    roles: &[String],
    client: Option<&ClientConfig>,
    p: &mut Problems<'_>,
) {
    if !login.password.value && login.providers.is_empty() {
        p.error(
            login.password.location,
            "server.login.password",
            "`password: false` with no `providers` leaves no way to sign in: add a provider, or remove it",
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, entry) in login.providers.iter_mut().enumerate() {
        let at = |field: &str| format!("server.login.providers[{i}].{field}");
        let name = &entry.name;
        if !super::client::is_machine_name(&name.value) {
            p.error(name.location, &at("name"), "a sign-in provider needs a `name` (a machine name)");
        } else if !seen.insert(name.value.clone()) {
            p.error(name.location, &at("name"), format!("`{}` is declared twice", name.value));
        }
        let issuer = match preset_issuer(entry) {
            Some(found) => found,
            None => client
                .and_then(|c| c.providers.iter().find(|prov| prov.name.value == entry.provider.value))
                .map(|prov| {
                    prov.issuer.clone().ok_or_else(|| {
                        format!(
                            "`client.providers` entry `{}` has no `issuer` to sign in with",
                            prov.name.value
                        )
                    })
                })
                .unwrap_or_else(|| {
                    Err(format!(
                        "`{}` is not a provider: expected `gmail`, `ms-exchange`, `oidc` or a \
                         `client.providers` entry",
                        entry.provider.value
                    ))
                }),
        };
        match issuer.and_then(|i| check_issuer(&i).map(|()| i)) {
            Ok(issuer) => entry.resolved_issuer = issuer.trim_end_matches('/').to_owned(),
            Err(e) => p.error(entry.provider.location, &at("provider"), e),
        }
        if entry.client_id.value.is_empty() {
            p.error(name.location, &at("client_id"), "a sign-in provider needs our `client_id` there");
        }
        super::server::secret_from_file(
            &mut entry.client_secret,
            &entry.client_secret_file,
            &at("client_secret"),
            &at("client_secret_file"),
            p,
        );
        if entry.allow.is_empty() {
            p.error(
                name.location,
                &at("allow"),
                "say who may sign in: `email_domains`, `emails`, `groups`, `roles`, `claim` with \
                 `equals`, or `everyone: true`",
            );
        }
        check_match(&entry.allow, &at("allow"), name.location, p);
        for (j, rule) in entry.roles.iter().enumerate() {
            let here = at(&format!("roles[{j}]"));
            match &rule.role {
                Some(role) if !roles.contains(&role.value) => p.error(
                    role.location,
                    &here,
                    format!("`{}` is not a role declared in server.roles", role.value),
                ),
                None if !rule.admin => {
                    p.error(name.location, &here, "a role rule gives a `role` or `admin: true`")
                }
                _ => {}
            }
            if rule.when.is_empty() {
                p.error(name.location, &here, "a role rule needs `when` (e.g. `groups: [managers]`)");
            }
            check_match(&rule.when, &format!("{here}.when"), name.location, p);
        }
    }
}

fn check_match(m: &ClaimMatch, path: &str, at: serde_saphyr::Location, p: &mut Problems<'_>) {
    if m.claim.is_some() != m.equals.is_some() {
        p.error(at, path, "`claim` and `equals` go together");
    }
}

fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = url::Url::parse(issuer).map_err(|e| format!("issuer `{issuer}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("issuer `{issuer}` must be an http(s) URL without query or fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    fn errors(yaml: &str) -> String {
        match super::super::parse_with(yaml, "sidecar.yaml", &HashMap::new()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const HEAD: &str = "server:\n  roles:\n    viewer: {}\n  login:\n    providers:\n";

    #[test]
    fn presets_and_issuers_resolve() {
        let yaml = format!(
            "{HEAD}      - {{ name: g, provider: gmail, client_id: a, allow: {{ everyone: true }} }}\n      \
             - {{ name: m, provider: ms-exchange, tenant: example.org, client_id: a, allow: {{ everyone: true }} }}\n      \
             - {{ name: o, provider: oidc, issuer: \"https://id.example.org/realms/x/\", client_id: a, allow: {{ groups: [x] }} }}\n"
        );
        let loaded = super::super::parse_with(&yaml, "sidecar.yaml", &HashMap::new()).unwrap();
        let issuers: Vec<_> =
            loaded.config.server.unwrap().login.providers.into_iter().map(|p| p.resolved_issuer).collect();
        assert_eq!(
            issuers,
            [
                "https://accounts.google.com",
                "https://login.microsoftonline.com/example.org/v2.0",
                "https://id.example.org/realms/x"
            ]
        );
    }

    #[test]
    fn mistakes_are_reported_with_their_place() {
        let cases = [
            (
                "{ name: a, provider: nope, client_id: c, allow: { everyone: true } }",
                "6:30: server.login.providers[0].provider: `nope` is not a provider",
            ),
            (
                "{ name: a, provider: ms-exchange, client_id: c, allow: { everyone: true } }",
                "`ms-exchange` needs `tenant`",
            ),
            (
                "{ name: a, provider: ms-exchange, tenant: common, client_id: c, allow: { everyone: true } }",
                "must name one tenant",
            ),
            ("{ name: a, provider: oidc, client_id: c, allow: { everyone: true } }", "`oidc` needs `issuer`"),
            (
                "{ name: a, provider: gmail, client_id: c }",
                "server.login.providers[0].allow: say who may sign in",
            ),
            (
                "{ name: a, provider: gmail, client_id: c, allow: { claim: hd } }",
                "`claim` and `equals` go together",
            ),
            (
                "{ name: a, provider: gmail, client_id: c, allow: { everyone: true }, roles: [{ role: boss, when: { everyone: true } }] }",
                "server.login.providers[0].roles[0]: `boss` is not a role declared in server.roles",
            ),
            (
                "{ name: a, provider: gmail, client_id: c, allow: { everyone: true }, roles: [{ when: { everyone: true } }] }",
                "gives a `role` or `admin: true`",
            ),
            ("{ name: a, provider: gmail, client_id: c, allow: { everyone: true }, colour: red }", "colour"),
        ];
        for (entry, want) in cases {
            let text = errors(&format!("{HEAD}      - {entry}\n"));
            assert!(text.contains(want), "{entry}\n  wanted: {want}\n  got: {text}");
            assert!(text.starts_with("sidecar.yaml:"), "{text}");
        }
        // A `client.providers` entry with an issuer can sign people in.
        let custom = "client:\n  token_key: 3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=\n  providers:\n    \
                      - { name: corp, issuer: \"https://id.corp.test\", discovery: true }\n";
        let yaml = format!(
            "{custom}{HEAD}      - {{ name: a, provider: corp, client_id: c, allow: {{ everyone: true }} }}\n"
        );
        let loaded = super::super::parse_with(&yaml, "sidecar.yaml", &HashMap::new()).unwrap();
        assert_eq!(loaded.config.server.unwrap().login.providers[0].resolved_issuer, "https://id.corp.test");
    }

    /// The examples of docs/configuration.md load as they are (the secret
    /// files and variables they name given).
    #[test]
    fn the_documented_examples_load() {
        let docs = include_str!("../../docs/configuration.md");
        let section = &docs[docs.find("### Sign-in through outside providers").unwrap()..];
        let section = &section[..section.find("\n## ").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let env = HashMap::from([("ENTRA_LOGIN_SECRET".to_owned(), "s3cret".to_owned())]);
        let mut seen = 0;
        for block in section.split("```yaml\n").skip(1) {
            let mut yaml = block[..block.find("```").unwrap()].to_owned();
            for name in ["google_login", "keycloak_login"] {
                let file = dir.path().join(name);
                std::fs::write(&file, "s3cret\n").unwrap();
                yaml = yaml.replace(&format!("/run/secrets/{name}"), &file.display().to_string());
            }
            let loaded =
                super::super::parse_with(&yaml, "docs.yaml", &env).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            let login = loaded.config.server.unwrap().login;
            assert!(
                login.providers.iter().all(|p| p.client_secret.is_some() && !p.resolved_issuer.is_empty())
            );
            seen += 1;
        }
        assert_eq!(seen, 3);
    }
}
