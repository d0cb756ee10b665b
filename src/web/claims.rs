//! Who may sign in through a provider and which of our roles they get:
//! [`ClaimMatch`] conditions and [`RoleRule`]s applied to the claims of a
//! verified ID token. Pure functions, so every rule has a table test.
//!
//! The email conditions count only when the token says
//! `email_verified: true`: an address a provider did not check names nobody.

use serde_json::{Map, Value};

use crate::config::login::{ClaimMatch, RoleRule};
use crate::store::RoleSource;

/// The role name under which the admin pages' access is reported.
pub(crate) const ADMIN_ROLE: &str = "admin";

/// The verified email of the claims: `email` with `email_verified: true`
/// (also as the string `"true"`, which some providers send), lowercased.
pub(crate) fn verified_email(claims: &Map<String, Value>) -> Option<String> {
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    let email = claims.get("email")?.as_str()?;
    (verified && email.contains('@')).then(|| email.to_ascii_lowercase())
}

/// The values of a claim: a string, or the strings (and numbers) of an array.
fn values(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match claims.get(name) {
        Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// The first condition of `m` the claims meet, in words; `None` when none does.
pub(crate) fn first_match(m: &ClaimMatch, claims: &Map<String, Value>) -> Option<String> {
    if m.everyone {
        return Some("everyone".to_owned());
    }
    if let Some(email) = verified_email(claims) {
        if let Some(e) = m.emails.iter().find(|e| e.eq_ignore_ascii_case(&email)) {
            return Some(format!("email {e}"));
        }
        let domain = email.rsplit('@').next().unwrap_or_default();
        if let Some(d) = m.email_domains.iter().find(|d| d.eq_ignore_ascii_case(domain)) {
            return Some(format!("email domain {d}"));
        }
    }
    for (claim, wanted) in [("groups", &m.groups), ("roles", &m.roles)] {
        let have = values(claims, claim);
        if let Some(w) = wanted.iter().find(|w| have.contains(w)) {
            return Some(format!("{claim} has {w}"));
        }
    }
    if let (Some(claim), Some(equals)) = (&m.claim, &m.equals)
        && values(claims, claim).contains(equals)
    {
        return Some(format!("claim {claim} = {equals}"));
    }
    None
}

/// What the role rules give: the roles (sorted, each once), whether the
/// admin pages are open, and where each came from (the first rule that
/// gave it), every source prefixed with the provider's name.
pub(crate) fn apply_rules(
    provider: &str,
    rules: &[RoleRule],
    claims: &Map<String, Value>,
) -> (Vec<String>, bool, Vec<RoleSource>) {
    let mut roles: Vec<String> = Vec::new();
    let mut admin = false;
    let mut sources = Vec::new();
    for rule in rules {
        let Some(why) = first_match(&rule.when, claims) else { continue };
        let source = format!("{provider}: {why}");
        if let Some(role) = &rule.role
            && !roles.contains(&role.value)
        {
            roles.push(role.value.clone());
            sources.push(RoleSource { role: role.value.clone(), source: source.clone() });
        }
        if rule.admin && !admin {
            admin = true;
            sources.push(RoleSource { role: ADMIN_ROLE.to_owned(), source });
        }
    }
    roles.sort();
    (roles, admin, sources)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::types::At;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn m(yaml: &str) -> ClaimMatch {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn email_conditions_need_a_verified_email() {
        let rule = m("{ email_domains: [example.org], emails: [boss@other.test] }");
        let verified = claims(json!({ "email": "Ann@Example.org", "email_verified": true }));
        assert_eq!(first_match(&rule, &verified).as_deref(), Some("email domain example.org"));
        let unverified = claims(json!({ "email": "ann@example.org", "email_verified": false }));
        assert_eq!(first_match(&rule, &unverified), None);
        let silent = claims(json!({ "email": "boss@other.test" }));
        assert_eq!(first_match(&rule, &silent), None);
        let boss = claims(json!({ "email": "boss@other.test", "email_verified": "true" }));
        assert_eq!(first_match(&rule, &boss).as_deref(), Some("email boss@other.test"));
        let lookalike = claims(json!({ "email": "ann@example.org.evil.test", "email_verified": true }));
        assert_eq!(first_match(&rule, &lookalike), None);
    }

    #[test]
    fn groups_roles_and_claim_values_match_strings_and_arrays() {
        let rule = m("{ groups: [managers], roles: [Farm.Admin], claim: tid, equals: t-1 }");
        let cases = [
            (json!({ "groups": ["staff", "managers"] }), Some("groups has managers")),
            (json!({ "groups": "managers" }), Some("groups has managers")),
            (json!({ "roles": ["Farm.Admin"] }), Some("roles has Farm.Admin")),
            (json!({ "tid": "t-1" }), Some("claim tid = t-1")),
            (json!({ "tid": "t-2", "groups": ["staff"] }), None),
            (json!({ "groups": { "managers": true } }), None),
        ];
        for (c, want) in cases {
            assert_eq!(first_match(&rule, &claims(c.clone())).as_deref(), want, "{c}");
        }
        assert_eq!(first_match(&ClaimMatch::default(), &claims(json!({ "sub": "x" }))), None);
        assert_eq!(first_match(&m("{ everyone: true }"), &claims(json!({}))).as_deref(), Some("everyone"));
    }

    #[test]
    fn rules_give_roles_admin_and_their_sources() {
        let rule = |role: Option<&str>, admin, when: &str| RoleRule {
            role: role.map(|r| At::default_value(r.to_owned())),
            admin,
            when: m(when),
        };
        let rules = [
            rule(Some("farm_viewer"), false, "{ email_domains: [example.org] }"),
            rule(Some("farm_manager"), false, "{ groups: [managers] }"),
            rule(Some("farm_viewer"), false, "{ groups: [managers] }"),
            rule(None, true, "{ groups: [admins] }"),
        ];
        let c = claims(json!({ "email": "a@example.org", "email_verified": true, "groups": ["managers"] }));
        let (roles, admin, sources) = apply_rules("corp", &rules, &c);
        assert_eq!(roles, ["farm_manager", "farm_viewer"]);
        assert!(!admin);
        assert_eq!(
            sources,
            [
                RoleSource { role: "farm_viewer".into(), source: "corp: email domain example.org".into() },
                RoleSource { role: "farm_manager".into(), source: "corp: groups has managers".into() },
            ]
        );
        let (roles, admin, sources) = apply_rules("corp", &rules, &claims(json!({ "groups": ["admins"] })));
        assert!(roles.is_empty());
        assert!(admin);
        assert_eq!(sources[0].role, ADMIN_ROLE);
    }
}
