//! What a reload (SIGHUP, or a change of the file with `reload.watch`)
//! takes from a new file, and which of its settings keep their running
//! values until a restart.
//!
//! Reloaded: the whole `gate:` section (rules, issuers, CORS, identity
//! header names, and whatever the section grows) but `gate.forward_auth`, `server.roles`,
//! `server.consumers`, `server.users`, `egress.routes` and `log.level`.
//! Everything else is fixed while the process runs: [`reloadable`] keeps
//! the running value, and [`fixed_changes`] names each one the new file
//! changes, so the log can say so.

use serde::Deserialize;

use super::Loaded;

/// The `reload:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReloadConfig {
    /// Also reload when the file's content changes (checked twice a second),
    /// not only on SIGHUP.
    pub watch: bool,
}

/// The running configuration with the reloadable settings of `new`: what
/// the sidecar runs after a reload.
pub fn reloadable(running: &Loaded, new: &Loaded) -> Loaded {
    let mut next = running.clone();
    next.config.gate = new.config.gate.clone();
    // The forward-auth endpoint's route is mounted at start (or not at all
    // when the sidecar started without a gate).
    if let Some(gate) = next.config.gate.as_mut() {
        gate.forward_auth = running.config.gate.as_ref().map(|g| g.forward_auth.clone()).unwrap_or_default();
    }
    next.config.log.level = new.config.log.level.clone();
    if let (Some(server), Some(from)) = (next.config.server.as_mut(), new.config.server.as_ref()) {
        server.roles = from.roles.clone();
        server.consumers = from.consumers.clone();
        server.users = from.users.clone();
    }
    if let (Some(egress), Some(from)) = (next.config.egress.as_mut(), new.config.egress.as_ref()) {
        egress.routes = from.routes.clone();
    }
    next.warnings = new.warnings.clone();
    next
}

/// The settings, as dotted paths (`listen`, `server.issuer`, `client`), in
/// which `new` differs from `next` (the result of [`reloadable`]): the ones
/// a reload cannot change. Only names: no value, so no secret, is returned.
pub fn fixed_changes(next: &Loaded, new: &Loaded) -> Vec<String> {
    let mut changed = Vec::new();
    let old_fields = fields(&without_locations(&format!("{:#?}", next.config)));
    let new_fields = fields(&without_locations(&format!("{:#?}", new.config)));
    for ((name, old), (_, new)) in old_fields.iter().zip(&new_fields) {
        if old == new {
            continue;
        }
        let (inner_old, inner_new) = (fields(old), fields(new));
        let inner: Vec<_> = inner_old
            .iter()
            .zip(&inner_new)
            .filter(|(a, b)| a.1 != b.1)
            .map(|((field, _), _)| format!("{name}.{field}"))
            .collect();
        // A value with its place in the file (`At`) has the one field `value`.
        let wrapped = inner_old.len() == 1 && inner_old[0].0 == "value";
        if inner.is_empty() || wrapped || inner_old.len() != inner_new.len() {
            changed.push(name.clone());
        } else {
            changed.extend(inner);
        }
    }
    // Compared whole: the printed URL hides a password.
    if next.store != new.store && !changed.iter().any(|c| c.starts_with("store")) {
        changed.push("store".to_owned());
    }
    // Secrets print as `[redacted]`, so they are compared here.
    fn login_secrets(l: &Loaded) -> Option<Vec<Option<&super::Secret>>> {
        let server = l.config.server.as_ref()?;
        Some(server.login.providers.iter().map(|p| p.client_secret.as_ref().map(|c| &c.value)).collect())
    }
    let secrets = [
        (next.client.token_key != new.client.token_key, "client.token_key"),
        (login_secrets(next) != login_secrets(new), "server.login.providers (a client secret)"),
        (next.client.client_secrets != new.client.client_secrets, "client.clients (a client secret)"),
        (next.client.vending_secret != new.client.vending_secret, "egress.vending_secret"),
        (next.client.remote_secret != new.client.remote_secret, "egress.remote_secret"),
    ];
    changed.extend(secrets.iter().filter(|(differs, _)| *differs).map(|(_, name)| (*name).to_owned()));
    changed
}

/// A value's pretty `Debug` form without the places in the file the values
/// came from ([`super::types::At::location`]): a line added above a setting
/// moves it without changing it.
fn without_locations(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut skip_until: Option<String> = None;
    for line in debug.lines() {
        if let Some(end) = &skip_until {
            if line == end {
                skip_until = None;
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("location: ") {
            if trimmed.ends_with('{') {
                let indent = &line[..line.len() - trimmed.len()];
                skip_until = Some(format!("{indent}}},"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The fields of the outermost struct in a pretty `Debug` form (looking
/// through `Some(..)`), each with its text; empty for a value that is not
/// a struct.
fn fields(debug: &str) -> Vec<(String, String)> {
    let indent_of = |line: &str| line.len() - line.trim_start().len();
    let is_field = |line: &str| {
        let trimmed = line.trim_start();
        trimmed.split_once(": ").is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let Some(depth) = debug.lines().skip(1).filter(|l| is_field(l)).map(indent_of).min() else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for line in debug.lines().skip(1) {
        if indent_of(line) == depth && is_field(line) {
            let (name, rest) = line.trim_start().split_once(": ").unwrap_or_default();
            out.push((name.to_owned(), format!("{rest}\n")));
        } else if indent_of(line) > depth
            && let Some((_, text)) = out.last_mut()
        {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Loaded {
        crate::config::parse(yaml, "sidecar.yaml").unwrap()
    }

    const BASE: &str = "listen: 127.0.0.1:8080\nupstream: http://127.0.0.1:9000\nstore: sqlite://./a.db\n\
                        server:\n  roles:\n    viewer: { label: Viewer }\n\
                        gate:\n  default: deny\n";

    #[test]
    fn a_reloadable_change_names_nothing_even_when_lines_move() {
        let running = load(BASE);
        let new = load(
            "# a comment\n\nlisten: 127.0.0.1:8080\nupstream: http://127.0.0.1:9000\nstore: sqlite://./a.db\n\
             log: { level: debug }\n\
             server:\n  roles:\n    viewer: { label: Viewer }\n    editor: { label: Editor }\n\
             gate:\n  default: allow\n  rules:\n    - { path: /public, public: true }\n",
        );
        let next = reloadable(&running, &new);
        assert_eq!(fixed_changes(&next, &new), Vec::<String>::new());
        assert!(next.config.gate.as_ref().unwrap().rules.len() == 1);
        assert_eq!(next.config.log.level.value, "debug");
        assert_eq!(next.config.server.as_ref().unwrap().roles.len(), 2);
    }

    #[test]
    fn fixed_settings_are_named_and_keep_their_running_values() {
        let running = load(BASE);
        let new = load(
            "listen: 127.0.0.1:8081\nupstream: http://127.0.0.1:9000\nstore: sqlite://./b.db\n\
             proxy: { timeout: 5s }\n\
             server:\n  access_token_ttl: 5m\n  roles:\n    viewer: { label: Viewer }\n\
             gate:\n  default: deny\n",
        );
        let next = reloadable(&running, &new);
        assert_eq!(
            fixed_changes(&next, &new),
            ["listen", "store", "proxy.timeout", "server.access_token_ttl"]
        );
        assert_eq!(next.config.listen, running.config.listen);
        assert_eq!(next.store.to_string(), running.store.to_string());
    }

    #[test]
    fn a_changed_secret_is_named_without_its_value() {
        let client = |key: &str| {
            format!(
                "{BASE}client:\n  token_key: {key}\n  clients:\n    - {{ name: mail, provider: demo, client_id: app, client_secret: s3cret-{key} }}\n"
            )
        };
        let running = load(&client("3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs="));
        let new = load(&client("AAAAAAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs="));
        let changed = fixed_changes(&reloadable(&running, &new), &new);
        assert_eq!(changed, ["client.token_key", "client.clients (a client secret)"]);
        assert!(!changed.iter().any(|c| c.contains("3q2") || c.contains("AAAA")));
    }

    #[test]
    fn a_changed_store_password_or_login_secret_is_named() {
        let file = |password: &str, secret: &str| {
            format!(
                "listen: 127.0.0.1:8080\nupstream: http://127.0.0.1:9000\n\
                 store: postgres://sidecar:{password}@db.example/sidecar\n\
                 server:\n  roles:\n    viewer: {{ label: Viewer }}\n  login:\n    providers:\n\
                 \x20     - {{ name: corp, provider: oidc, issuer: https://id.example, client_id: app, \
                 client_secret: {secret}, allow: {{ everyone: true }} }}\n"
            )
        };
        let running = load(&file("pw-one", "secret-one"));
        let new = load(&file("pw-two", "secret-two"));
        let changed = fixed_changes(&reloadable(&running, &new), &new);
        assert_eq!(changed, ["store", "server.login.providers (a client secret)"]);
        assert!(!changed.iter().any(|c| c.contains("pw-") || c.contains("secret-")));
    }

    #[test]
    fn forward_auth_in_a_gate_added_by_a_reload_is_named_not_taken() {
        let running = load(&BASE.replace("gate:\n  default: deny\n", ""));
        let new = load(&format!("{BASE}  forward_auth: {{ enabled: true }}\n"));
        let next = reloadable(&running, &new);
        assert!(!next.config.gate.as_ref().unwrap().forward_auth.enabled);
        assert_eq!(fixed_changes(&next, &new), ["gate.forward_auth"]);
    }

    #[test]
    fn the_summary_says_how_the_file_reloads() {
        assert!(load(BASE).summary().contains("reload:     on SIGHUP\n"));
        let watched = load(&format!("{BASE}reload: {{ watch: true }}\n"));
        assert!(watched.summary().contains("reload:     on SIGHUP and when the file changes"));
    }

    #[test]
    fn a_section_added_or_removed_is_named_whole() {
        let running = load(BASE);
        let new = load(&format!("{BASE}egress:\n  listen: 127.0.0.1:8082\n"));
        assert_eq!(fixed_changes(&reloadable(&running, &new), &new), ["egress"]);
    }
}
