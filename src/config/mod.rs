//! The YAML configuration: schema, defaults, `${VAR}` interpolation,
//! `*_file` secrets and validation.
//!
//! [`load`] reads a file and returns a [`Config`] ready to run, or every
//! error it found, each with `file:line:column`, the field path and what was
//! expected:
//!
//! ```
//! let err = oauth_sidecar::config::parse("listen: nowhere\n", "sidecar.yaml").unwrap_err();
//! assert!(err.to_string().starts_with("sidecar.yaml:1:9: listen: "));
//! ```

pub mod client;
pub mod gate;
pub mod login;
pub mod reload;
mod schema;
pub mod server;
pub mod telemetry;
pub mod types;
mod validate;
mod yaml_error;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde_saphyr::Location;

pub use schema::{Config, ListenerConfig, LogConfig, LogFormat, OpsConfig, ProxyConfig, TlsConfig};
pub use types::{ByteSize, Duration, HttpUrl, StoreUrl, TrustedProxy, Upstream};
pub use validate::{Problems, SectionCheck};

/// A secret value from the YAML file, an environment variable or a `*_file`.
///
/// Its `Debug` and `Display` print `[redacted]`, so it cannot reach a log line
/// by accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret in clear, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One problem in a configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as named on the command line.
    pub file: String,
    /// 1-based line, 0 when the problem has no single place.
    pub line: u64,
    /// 1-based column, 0 when the problem has no single place.
    pub column: u64,
    /// Dotted field path such as `proxy.timeout` or `tls.cert_file`.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    fn at(file: &str, location: Location, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_owned(),
            line: location.line(),
            column: location.column(),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        } else {
            write!(f, "{}: ", self.file)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a configuration file; one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A configuration that parsed and validated, with its secrets read and its
/// defaults filled in: what [`crate::Sidecar::build`] runs.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file's settings.
    pub config: Config,
    /// The file as named on the command line, for messages.
    pub file: String,
    /// The public URL, given or derived from the listener.
    pub public_url: HttpUrl,
    /// The store, from `store`, `store_file` or the default.
    pub store: StoreUrl,
    /// Things that will run but are probably not what was meant.
    pub warnings: Vec<ConfigError>,
    /// The client role's secrets (token key, client secrets), read and checked.
    pub client: client::ClientSecrets,
}

/// Reads and checks a configuration file: its syntax, types and the checks
/// that need no role. The roles' own conversions run in
/// [`crate::load_config`], which is what the binary uses.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_with(path, &[])
}

/// Reads and checks a configuration file, then runs each role's `checks`
/// on it; every problem of every step is reported together.
pub fn load_with(path: &Path, checks: &[SectionCheck]) -> Result<Loaded, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        }])
    })?;
    let config = deserialize(&text, &name, &env_map())?;
    validate::validate(config, &name, checks)
}

/// Parses configuration text; `file` names it in errors. Relative paths
/// (`*_file`, the SQLite file) are taken from the working directory.
pub fn parse(text: &str, file: &str) -> Result<Loaded, ConfigErrors> {
    parse_with(text, file, &env_map())
}

fn env_map() -> HashMap<String, String> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

/// Parses with an explicit environment for `${VAR}`.
pub fn parse_with(text: &str, file: &str, env: &HashMap<String, String>) -> Result<Loaded, ConfigErrors> {
    let config = deserialize(text, file, env)?;
    validate::validate(config, file, &[])
}

fn deserialize(text: &str, file: &str, env: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
    // An empty file is a valid file that takes every default.
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    parse_document(text, file, env)
        .map_err(|first| ConfigErrors(every_section_problem(text, file, env, first.0)))
}

/// Why a parse stopped, and whether the cause is an alias to an anchor the
/// parsed text does not hold.
struct Stopped(ConfigError, bool);

/// One parse of the whole text: the settings, or the first problem.
fn parse_document(text: &str, file: &str, env: &HashMap<String, String>) -> Result<Config, Stopped> {
    let options = serde_saphyr::options! {}.with_properties(env.clone());
    let mut path = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().clone());
            e.into_inner()
        })
    });
    result.map_err(|err| {
        let unknown_anchor = matches!(err.without_snippet(), serde_saphyr::Error::UnknownAnchor { .. });
        Stopped(yaml_error::to_config_error(file, text, path.as_ref(), &err), unknown_anchor)
    })
}

/// Every problem a parse can find after `first`: a parse stops at its first
/// problem, so each top-level section is parsed again on its own (the other
/// lines blanked, so lines and columns stay true). Ends with a note that
/// more may follow, since each section is read only up to its first problem
/// and the checks across sections wait for a file that parses.
fn every_section_problem(
    text: &str,
    file: &str,
    env: &HashMap<String, String>,
    first: ConfigError,
) -> Vec<ConfigError> {
    let mut errors = vec![first];
    for section in top_level_sections(text) {
        // An alias whose anchor is in another section is fine in the whole file.
        let Err(Stopped(error, false)) = parse_document(&section, file, env) else { continue };
        if !errors.contains(&error) {
            errors.push(error);
        }
    }
    errors.sort_by_key(|e| (e.line, e.column));
    errors.push(ConfigError {
        file: file.to_owned(),
        line: 0,
        column: 0,
        path: String::new(),
        message: "more problems may follow: each section is read up to its first problem, \
                  and the checks across sections run once the file parses"
            .to_owned(),
    });
    errors
}

/// The text once for each top-level key, with every line outside that key's
/// block blank (the lines before the first key, such as `---`, are kept).
fn top_level_sections(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let line = lines[i];
            let first = line.chars().next();
            first.is_some_and(|c| !c.is_whitespace() && c != '#' && c != '-' && c != '.' && c != '%')
        })
        .collect();
    let Some(&head_end) = starts.first() else { return Vec::new() };
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts.get(n + 1).copied().unwrap_or(lines.len());
            let kept = |i: usize| i < head_end || (start..end).contains(&i);
            let mut section: String =
                (0..lines.len()).map(|i| if kept(i) { lines[i] } else { "" }).collect::<Vec<_>>().join("\n");
            section.push('\n');
            section
        })
        .collect()
}

/// Reads a secret from a `*_file` path, trimming one trailing newline (as
/// written by `echo` and by most secret stores).
pub fn read_secret_file(path: &Path) -> std::io::Result<Secret> {
    let mut s = std::fs::read_to_string(path)?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(Secret(s))
}

impl Loaded {
    /// The Redirect URL to give providers: `client.redirect_url`, or the
    /// public URL with `client.return_path`. `None` without a `client:` section.
    pub fn redirect_url(&self) -> Option<String> {
        let client = self.config.client.as_ref()?;
        Some(match &client.redirect_url {
            Some(url) => url.value.to_string(),
            None => format!("{}{}", self.public_url.base(), client.return_path.0),
        })
    }

    /// A short description of what will run, for `check-config`.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let scheme = if c.tls.is_some() { "https" } else { "http" };
        let mut lines = vec![
            format!("listen:     {scheme}://{}", c.listen),
            format!("public URL: {}", self.public_url),
            format!("upstream:   {}", c.upstream),
            format!("store:      {}", self.store),
            format!(
                "proxy:      host {}, {} trusted proxies, connect timeout {}, timeout {}, headers up to {}, bodies up to {}",
                if c.proxy.preserve_host { "preserved" } else { "rewritten" },
                c.proxy.trusted_proxies.len(),
                *c.proxy.connect_timeout,
                *c.proxy.timeout,
                *c.proxy.max_header_size,
                c.proxy.max_body_size,
            ),
            format!("operations: {} {} {}", c.ops.health.0, c.ops.ready.0, c.ops.metrics.0),
            format!(
                "log:        {} as {}{}",
                c.log.level.value,
                match c.log.format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                },
                if c.log.access { ", with access log" } else { "" }
            ),
            format!("shutdown:   drain for up to {}", c.shutdown_grace),
            format!(
                "reload:     on SIGHUP{}",
                if c.reload.watch { " and when the file changes" } else { "" }
            ),
        ];
        if let Some(client) = &c.client {
            lines.push(format!(
                "client:     {} clients, redirect URL {}",
                client.clients.len(),
                self.redirect_url().unwrap_or_default()
            ));
        }
        if let Some(egress) = &c.egress {
            lines.push(format!("egress:     http://{} with {} routes", egress.listen, egress.routes.len()));
        }
        if let Some(g) = &c.gate {
            lines.push(format!(
                "gate:       {} rules, default {}, {} other issuers{}",
                g.rules.len(),
                match g.default {
                    gate::DefaultPolicy::Deny => "deny",
                    gate::DefaultPolicy::Allow => "allow",
                    gate::DefaultPolicy::Authenticated => "authenticated",
                },
                g.issuers.len(),
                if g.introspection.is_some() { ", introspection" } else { "" },
            ));
        }
        if let Some(otlp) = &c.telemetry.otlp {
            let endpoint = &otlp.endpoint.value.0;
            lines.push(format!(
                "traces:     OTLP {} to {}:{}, sampling {}",
                match otlp.protocol {
                    telemetry::OtlpProtocol::HttpProtobuf => "http/protobuf",
                    telemetry::OtlpProtocol::Grpc => "grpc",
                },
                endpoint.host().unwrap_or_default(),
                endpoint.port_u16().unwrap_or(if otlp.endpoint.value.is_https() { 443 } else { 80 }),
                otlp.sample_ratio.0,
            ));
        }
        for w in &self.warnings {
            lines.push(format!("warning: {w}"));
        }
        lines.join("\n")
    }
}
