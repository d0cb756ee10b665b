//! Providers: the built-in presets with the CiviCRM extension's names and
//! titles (`gmail`, `ms-exchange`, `demo`) plus `oidc` (any OpenID issuer,
//! endpoints by discovery), overridden or extended by `client.providers`.
//!
//! URLs may contain `{tenant}` (the client's tenant, else the provider's)
//! and `{issuer}` (the provider's issuer). The `demo` preset's issuer is this
//! sidecar's own authorization server (`server.issuer`, else the public
//! URL), so the whole flow runs on one machine; a `client.providers` entry
//! named `demo` with an `issuer` points it elsewhere.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::client::{MailConfig, ProviderConfig};

/// The presets' names, in the order `provider list` shows them.
pub fn preset_names() -> [&'static str; 4] {
    crate::config::client::PRESETS
}

/// Marks the demo preset's issuer: this sidecar's own authorization server.
const LOCAL_ISSUER: &str = "{local_issuer}";

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn list(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|x| (*x).to_owned()).collect())
}

fn preset(name: &str) -> Option<ProviderConfig> {
    let base = ProviderConfig {
        name: crate::config::types::At::default_value(name.to_owned()),
        ..Default::default()
    };
    Some(match name {
        "gmail" => ProviderConfig {
            title: s("Google Mail"),
            issuer: s("https://accounts.google.com"),
            authorize_url: s("https://accounts.google.com/o/oauth2/v2/auth"),
            token_url: s("https://oauth2.googleapis.com/token"),
            revoke_url: s("https://oauth2.googleapis.com/revoke"),
            userinfo_url: s("https://openidconnect.googleapis.com/v1/userinfo"),
            jwks_url: s("https://www.googleapis.com/oauth2/v3/certs"),
            scopes: list(&["https://mail.google.com/", "openid", "email"]),
            auth_params: Some(BTreeMap::from([
                ("access_type".to_owned(), "offline".to_owned()),
                ("prompt".to_owned(), "consent".to_owned()),
            ])),
            mail: Some(MailConfig {
                imap_host: "imap.gmail.com".into(),
                imap_port: 993,
                smtp_host: "smtp.gmail.com".into(),
                smtp_port: 587,
                user_field: "email".into(),
            }),
            ..base
        },
        "ms-exchange" => ProviderConfig {
            title: s("Microsoft Exchange Online"),
            issuer: s("https://login.microsoftonline.com/{tenant}/v2.0"),
            authorize_url: s("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"),
            token_url: s("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            userinfo_url: s("https://graph.microsoft.com/v1.0/me"),
            jwks_url: s("https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"),
            scopes: list(&[
                "User.Read",
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/POP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
                "offline_access",
            ]),
            tenant: s("common"),
            mail: Some(MailConfig {
                imap_host: "outlook.office365.com".into(),
                imap_port: 993,
                smtp_host: "smtp.office365.com".into(),
                smtp_port: 587,
                user_field: "mail".into(),
            }),
            ..base
        },
        "demo" => ProviderConfig {
            title: s("Local Demo"),
            issuer: s(LOCAL_ISSUER),
            authorize_url: s("{issuer}/oauth/authorize"),
            token_url: s("{issuer}/oauth/token"),
            revoke_url: s("{issuer}/oauth/revoke"),
            userinfo_url: s("{issuer}/oauth/userinfo"),
            jwks_url: s("{issuer}/.well-known/jwks.json"),
            scopes: list(&["read_mail", "openid"]),
            ..base
        },
        "oidc" => ProviderConfig {
            title: s("OpenID Connect (discovery)"),
            discovery: Some(true),
            scopes: list(&["openid", "email", "profile"]),
            ..base
        },
        _ => return None,
    })
}

/// A provider with every override applied; URLs still hold `{tenant}`.
#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    /// Machine name.
    pub name: String,
    /// Shown to people.
    pub title: String,
    /// The OpenID issuer, if the provider issues ID tokens.
    pub issuer: Option<String>,
    /// Endpoints come from OpenID discovery.
    pub discovery: bool,
    /// The authorization endpoint.
    pub authorize_url: Option<String>,
    /// The token endpoint.
    pub token_url: Option<String>,
    /// The RFC 7009 revocation endpoint.
    pub revoke_url: Option<String>,
    /// Where the resource owner is read.
    pub userinfo_url: Option<String>,
    /// The ID token signing keys.
    pub jwks_url: Option<String>,
    /// Default scopes.
    pub scopes: Vec<String>,
    /// Extra authorization request parameters.
    pub auth_params: BTreeMap<String, String>,
    /// Default tenant.
    pub tenant: Option<String>,
    /// Mail settings for IMAP/SMTP clients.
    pub mail: Option<MailConfig>,
    /// `preset`, `preset+config` or `config`.
    pub source: &'static str,
}

fn merge(
    base: Option<ProviderConfig>,
    over: Option<&ProviderConfig>,
    local_issuer: &str,
) -> Option<Provider> {
    let source = match (&base, over) {
        (Some(_), None) => "preset",
        (Some(_), Some(_)) => "preset+config",
        (None, Some(_)) => "config",
        (None, None) => return None,
    };
    let b = base.unwrap_or_default();
    let o = over.cloned().unwrap_or_default();
    let name = if o.name.is_empty() { b.name.value.clone() } else { o.name.value.clone() };
    let pick = |a: Option<String>, b: Option<String>| a.or(b);
    let issuer =
        pick(o.issuer, b.issuer).map(|i| i.replace(LOCAL_ISSUER, local_issuer.trim_end_matches('/')));
    let fill = |u: Option<String>| match (&u, &issuer) {
        (Some(url), Some(iss)) => Some(url.replace("{issuer}", iss.trim_end_matches('/'))),
        _ => u,
    };
    Some(Provider {
        title: pick(o.title, b.title).unwrap_or_else(|| name.clone()),
        discovery: o.discovery.or(b.discovery).unwrap_or(false),
        authorize_url: fill(pick(o.authorize_url, b.authorize_url)),
        token_url: fill(pick(o.token_url, b.token_url)),
        revoke_url: fill(pick(o.revoke_url, b.revoke_url)),
        userinfo_url: fill(pick(o.userinfo_url, b.userinfo_url)),
        jwks_url: fill(pick(o.jwks_url, b.jwks_url)),
        scopes: o.scopes.or(b.scopes).unwrap_or_default(),
        auth_params: o.auth_params.or(b.auth_params).unwrap_or_default(),
        tenant: pick(o.tenant, b.tenant),
        mail: o.mail.or(b.mail),
        issuer,
        name,
        source,
    })
}

/// Every provider: presets (with overrides) first, then custom ones.
/// `local_issuer` is this sidecar's own authorization server, for `demo`.
pub fn all(custom: &[ProviderConfig], local_issuer: &str) -> Vec<Provider> {
    let mut out: Vec<Provider> = preset_names()
        .iter()
        .filter_map(|name| merge(preset(name), custom.iter().find(|c| c.name.value == *name), local_issuer))
        .collect();
    for c in custom.iter().filter(|c| !preset_names().contains(&c.name.as_str())) {
        out.extend(merge(None, Some(c), local_issuer));
    }
    out
}

/// The provider named `name`.
pub fn find(custom: &[ProviderConfig], local_issuer: &str, name: &str) -> Option<Provider> {
    all(custom, local_issuer).into_iter().find(|p| p.name == name)
}

impl Provider {
    /// `url` with `{tenant}` filled in.
    pub fn with_tenant(url: &str, tenant: Option<&str>) -> String {
        url.replace("{tenant}", tenant.unwrap_or("common"))
    }

    /// True when ID tokens' `iss` can be checked exactly: not for Microsoft's
    /// multi-tenant endpoints, whose tokens name the user's own tenant.
    pub fn checks_issuer(&self, tenant: Option<&str>) -> bool {
        let multi =
            matches!(tenant.or(self.tenant.as_deref()), Some("common" | "organizations" | "consumers"));
        !(multi && self.issuer.as_deref().is_some_and(|i| i.contains("{tenant}")))
    }

    /// The options shown by `provider show`, as JSON.
    pub fn options_json(&self) -> serde_json::Value {
        serde_json::json!({ "name": self.name, "title": self.title, "options": self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_carry_the_seed_names_and_titles() {
        let all = all(&[], "http://localhost:8080");
        let table: Vec<(&str, &str)> = all.iter().map(|p| (p.name.as_str(), p.title.as_str())).collect();
        assert_eq!(
            table[..3],
            [("gmail", "Google Mail"), ("ms-exchange", "Microsoft Exchange Online"), ("demo", "Local Demo")]
        );
        let demo = &all[2];
        assert_eq!(demo.scopes, ["read_mail", "openid"]);
        assert_eq!(demo.token_url.as_deref(), Some("http://localhost:8080/oauth/token"));
    }

    #[test]
    fn an_entry_named_like_a_preset_overrides_some_fields() {
        let over = ProviderConfig {
            name: crate::config::types::At::default_value("demo".into()),
            issuer: Some("http://127.0.0.1:9000".into()),
            ..Default::default()
        };
        let demo = find(&[over], "http://localhost:8080", "demo").unwrap();
        assert_eq!(demo.authorize_url.as_deref(), Some("http://127.0.0.1:9000/oauth/authorize"));
        assert_eq!(demo.title, "Local Demo");
        assert_eq!(demo.source, "preset+config");
    }

    #[test]
    fn microsoft_urls_take_the_tenant() {
        let ms = find(&[], "", "ms-exchange").unwrap();
        let url = Provider::with_tenant(ms.token_url.as_deref().unwrap(), Some("contoso.onmicrosoft.com"));
        assert_eq!(url, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
        assert!(!ms.checks_issuer(None), "common tenant: iss names the user's tenant");
        assert!(ms.checks_issuer(Some("contoso.onmicrosoft.com")));
    }
}
