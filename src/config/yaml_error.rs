//! Turns a serde-saphyr error into a [`ConfigError`] a person can act on: the
//! field path without serde's internals, and messages in the file's terms
//! rather than the parser's.

use serde_path_to_error::{Path, Segment};
use serde_saphyr::{Error, Location, MessageFormatter, UserMessageFormatter};

use super::ConfigError;

/// The error of one failed parse, with the path serde_path_to_error recorded.
pub(super) fn to_config_error(file: &str, text: &str, path: Option<&Path>, err: &Error) -> ConfigError {
    let inner = err.without_snippet();
    let location = err.location().unwrap_or(Location::UNKNOWN);
    let mut path = path.map(field_path).unwrap_or_default();
    if is_property_error(inner) {
        // serde-saphyr expands `${VAR}` while it looks ahead at a value, before
        // the value's own deserializer runs, so the recorded path stops at the
        // enclosing mapping: add the key written before the value.
        if let Some(key) = key_before(text, location.line(), location.column()) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        }
    }
    ConfigError::at(file, location, path, message(inner))
}

/// The dotted path of the field, such as `proxy.trusted_proxies[1]`.
///
/// Skips the segments serde adds that are not in the file: `value`, the inner
/// field of [`super::types::At`] (no schema field is called `value`), and
/// `?`, the parts it could not name.
fn field_path(path: &Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if key == "value" {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn is_property_error(err: &Error) -> bool {
    matches!(
        err,
        Error::UnresolvedProperty { .. }
            | Error::InvalidPropertyName { .. }
            | Error::PropertyRequiredButUnset { .. }
            | Error::PropertyRequiredButEmpty { .. }
    )
}

/// The mapping key written just before `location` on its line, as in
/// `  timeout: ${VAR}` or `{ timeout: ${VAR} }`.
fn key_before(text: &str, line: u64, column: u64) -> Option<&str> {
    let line = text.lines().nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let column = usize::try_from(column).ok()?.checked_sub(1)?;
    let before = line.char_indices().nth(column).map_or(line, |(i, _)| &line[..i]);
    let before = before.trim_end().strip_suffix(':')?;
    let start = before.rfind(|c: char| c.is_whitespace() || c == '{' || c == ',').map_or(0, |i| i + 1);
    let key = &before[start..];
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    plain.then_some(key)
}

fn message(err: &Error) -> String {
    match err {
        Error::UnresolvedProperty { name, .. } => {
            format!("environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)")
        }
        Error::InvalidScalar { ty, .. } => match *ty {
            "boolean" => "expected `true` or `false`".to_owned(),
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => {
                "expected a whole number, 0 or more (e.g. `256`)".to_owned()
            }
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "expected a whole number".to_owned(),
            "f32" | "f64" => "expected a number".to_owned(),
            other => format!("expected a value of type {other}"),
        },
        Error::Unexpected { expected: "mapping start", .. } => {
            "expected a mapping (indented `key: value` lines or `{ key: value }`)".to_owned()
        }
        Error::Unexpected { expected: "sequence start", .. } => {
            "expected a list (`- item` lines or `[a, b]`)".to_owned()
        }
        Error::Unexpected { expected: "string scalar" | "scalar", .. } => {
            "expected a single value, not a list or a mapping".to_owned()
        }
        other => UserMessageFormatter.format_message(other).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_before_finds_block_and_flow_keys() {
        let text = "proxy:\n  timeout: ${X}\nops: { health: ${Y} }\n- ${Z}\n";
        assert_eq!(key_before(text, 2, 12), Some("timeout"));
        assert_eq!(key_before(text, 3, 16), Some("health"));
        assert_eq!(key_before(text, 4, 3), None);
        assert_eq!(key_before(text, 0, 0), None);
    }
}
