//! Value types of the YAML file that check themselves while they are parsed,
//! so that a bad value is reported at its own line and column.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// Implements `Deserialize` through `FromStr`, so the parse error becomes the
/// message at the value's location.
macro_rules! deserialize_from_str {
    ($ty:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl de::Visitor<'_> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                }
                deserializer.deserialize_any(Visitor)
            }
        }
    };
}

/// Deserializes the listener's `IP:PORT`, with a message that shows the form.
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(deserializer)?;
    s.parse().map_err(|_| {
        de::Error::custom(format!(
            "`{s}` is not a listen address: write IP:PORT, e.g. `0.0.0.0:8080` or `127.0.0.1:8080`"
        ))
    })
}

/// A value with the place in the YAML file it came from, so that checks
/// across fields can point at it. A default value has no place (line 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// Where it was written (`Location::UNKNOWN` for a default).
    pub location: serde_saphyr::Location,
}

impl<T: Default> Default for At<T> {
    fn default() -> Self {
        At::default_value(T::default())
    }
}

impl<T> At<T> {
    /// A value that was not written in the file.
    pub const fn default_value(value: T) -> Self {
        At { value, location: serde_saphyr::Location::UNKNOWN }
    }
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        Ok(At { value: spanned.value, location: spanned.referenced })
    }
}

/// A length of time written as `500ms`, `30s`, `5m`, `1h` or `14d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            return Err(format!("`{s}` has no unit: write a duration like `30s`, `5m`, `1h` or `14d`"));
        }
        humantime::parse_duration(s).map(Duration).map_err(|e| {
            format!("`{s}` is not a duration ({e}): write it like `500ms`, `30s`, `5m`, `1h` or `14d`")
        })
    }
}
deserialize_from_str!(Duration, "a duration like `30s`, `1h` or `14d`");

impl Duration {
    /// A duration of whole seconds, for defaults.
    pub const fn secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes written as a number or with a unit: `64KiB`, `10MiB`, `1GiB`, `500kB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let bad = || format!("`{s}` is not a size: write a number of bytes or e.g. `64KiB`, `10MiB`, `1GiB`");
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => return Err(bad()),
        };
        n.checked_mul(factor).map(ByteSize).ok_or_else(bad)
    }
}
deserialize_from_str!(ByteSize, "a size like `64KiB` or `10MiB`");

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}B")
    }
}

/// An absolute `http` or `https` URL with a host, such as the public URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub http::Uri);

impl FromStr for HttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL ({e})"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            Some(other) => return Err(format!("`{s}` has scheme `{other}`: expected http or https")),
            None => return Err(format!("`{s}` is not an absolute URL: expected http://host[:port]/...")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("`{s}` has no host"));
        }
        Ok(HttpUrl(uri))
    }
}
deserialize_from_str!(HttpUrl, "an http(s) URL");

impl HttpUrl {
    /// True when the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.0.scheme_str() == Some("https")
    }

    /// The URL as text without a trailing slash, for joining paths onto it.
    pub fn base(&self) -> String {
        self.0.to_string().trim_end_matches('/').to_owned()
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where proxied requests go: the built-in demo app, or an `http://` origin.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Upstream {
    /// The small demo app built into the binary (a page and a header echo).
    #[default]
    Demo,
    /// An HTTP origin: scheme and authority, no path.
    Url(http::Uri),
}

impl FromStr for Upstream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "demo" {
            return Ok(Upstream::Demo);
        }
        let HttpUrl(uri) = s.parse()?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "`{s}`: the upstream must be plain http (the app beside the sidecar), or `demo`"
            ));
        }
        if uri.path() != "/" || uri.query().is_some() {
            return Err(format!("`{s}`: the upstream is an origin only (http://host:port), without a path"));
        }
        Ok(Upstream::Url(uri))
    }
}
deserialize_from_str!(Upstream, "`demo` or an http://host:port URL");

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Demo => f.write_str("demo (built-in demo app)"),
            Upstream::Url(u) => write!(f, "{u}"),
        }
    }
}

/// Which store backs the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite file, created with its folder on first start.
    Sqlite(PathBuf),
    /// A PostgreSQL database URL (kept whole: it may carry a password).
    Postgres(crate::config::Secret),
}

impl Default for StoreUrl {
    fn default() -> Self {
        StoreUrl::Sqlite(PathBuf::from("./data/sidecar.db"))
    }
}

impl FromStr for StoreUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("`sqlite://` needs a file path, e.g. `sqlite://./data/sidecar.db`".into());
            }
            Ok(StoreUrl::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(crate::config::Secret::new(s.to_owned())))
        } else {
            Err("expected `sqlite://PATH` or `postgres://user:pass@host/db`".into())
        }
    }
}
deserialize_from_str!(StoreUrl, "`sqlite://PATH` or `postgres://...`");

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            StoreUrl::Postgres(url) => f.write_str(&redacted_url(url.expose())),
        }
    }
}

/// An address or network whose forwarding headers are trusted: `10.0.0.0/8`, `127.0.0.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy(pub IpNet);

impl FromStr for TrustedProxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(TrustedProxy(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| TrustedProxy(IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is not an IP address or network (e.g. `10.0.0.0/8`)"))
    }
}
deserialize_from_str!(TrustedProxy, "an IP address or CIDR network");

/// A URL path served by the sidecar itself: starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath(pub String);

impl FromStr for RoutePath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') || s.contains(['?', '#', ' ']) {
            return Err(format!("`{s}` is not a path: it must start with `/` and have no query"));
        }
        Ok(RoutePath(s.to_owned()))
    }
}
deserialize_from_str!(RoutePath, "a URL path starting with `/`");

impl RoutePath {
    /// A path from a literal default.
    pub fn new(s: &str) -> Self {
        RoutePath(s.to_owned())
    }
}

/// A PostgreSQL URL fit for a log line: the password (in the user info or a
/// `password` parameter) is replaced by `[redacted]`.
pub fn redacted_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "postgres://[unparsable URL]".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("[redacted]"));
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword") {
                "[redacted]".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if pairs.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string().replace("%5Bredacted%5D", "[redacted]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_up_to_days() {
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::secs(30));
        assert_eq!("14d".parse::<Duration>().unwrap(), Duration::secs(14 * 86_400));
        assert!("30".parse::<Duration>().unwrap_err().contains("no unit"));
        assert!("soon".parse::<Duration>().is_err());
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!("64KiB".parse::<ByteSize>().unwrap(), ByteSize(65_536));
        assert_eq!("10MB".parse::<ByteSize>().unwrap(), ByteSize(10_000_000));
        assert_eq!("123".parse::<ByteSize>().unwrap(), ByteSize(123));
        assert!("10 parsecs".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
    }

    #[test]
    fn upstream_is_demo_or_an_http_origin() {
        assert_eq!("demo".parse::<Upstream>().unwrap(), Upstream::Demo);
        assert!("http://127.0.0.1:8000".parse::<Upstream>().is_ok());
        assert!("http://127.0.0.1:8000/app".parse::<Upstream>().is_err());
        assert!("ftp://x".parse::<Upstream>().is_err());
    }

    #[test]
    fn trusted_proxies_take_addresses_and_networks() {
        let p: TrustedProxy = "10.1.2.3/8".parse().unwrap();
        assert_eq!(p.0.to_string(), "10.0.0.0/8");
        let p: TrustedProxy = "::1".parse().unwrap();
        assert!(p.0.contains(&"::1".parse::<IpAddr>().unwrap()));
        assert!("localhost".parse::<TrustedProxy>().is_err());
    }
}
