//! Posted forms: `application/x-www-form-urlencoded` fields, repeated names
//! kept (checkbox groups).

/// A posted form's fields, in order.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// Reads a form body; malformed escapes are taken as they are.
    pub(crate) fn parse(body: &[u8]) -> Self {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, when sent and not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// The trimmed text of `name`, empty when not sent.
    pub(crate) fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().trim().to_owned()
    }

    /// Every value of `name` (a checkbox group), empty ones left out.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.clone()).collect()
    }

    /// A checkbox: ticked when sent.
    pub(crate) fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A textarea's non-empty lines, trimmed.
    pub(crate) fn lines(&self, name: &str) -> Vec<String> {
        self.get(name)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_lines_and_checkboxes() {
        let f = Form::parse(b"scope=a&scope=b&scope=&uris=x%0D%0A%0D%0A+y+&on=1&empty=");
        assert_eq!(f.all("scope"), ["a", "b"]);
        assert_eq!(f.lines("uris"), ["x", "y"]);
        assert!(f.checked("on"));
        assert!(!f.checked("empty"));
        assert!(!f.checked("missing"));
        assert_eq!(f.text("missing"), "");
    }
}
