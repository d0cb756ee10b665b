//! The farmOS scope policy: which roles a token gets.
//!
//! Scopes are roles. A consumer has roles, a user has roles, and three flags
//! on the consumer (all off by default) decide how they combine:
//!
//! 1. `allowed` = the consumer's roles;
//! 2. the acting user is the authorizing user, or for `client_credentials`
//!    the consumer's `user_id`; with no acting user nothing is granted;
//! 3. `grant_user_access`: `allowed` += the user's roles;
//! 4. `limit_requested_access`: `allowed` = `allowed` ∩ the requested scopes;
//! 5. `limit_user_access`: `allowed` = `allowed` ∩ the user's roles;
//! 6. the base role (`authenticated` unless configured) is always added.

use std::collections::BTreeSet;

/// A set of role names, ordered so that scope strings come out stable.
pub type Roles = BTreeSet<String>;

/// The consumer's side of the policy: its roles and its three flags.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerPolicy<'a> {
    /// The roles configured on the consumer (`scopes`).
    pub roles: &'a Roles,
    /// Always grant the authorizing user's roles.
    pub grant_user_access: bool,
    /// Grant only the scopes requested during authorization.
    pub limit_requested_access: bool,
    /// Never grant more than the authorizing user has.
    pub limit_user_access: bool,
}

/// Computes the roles granted to a token, exactly as farmOS does (see the
/// module docs for the rule, step by step).
///
/// `user_roles` is `None` when there is no acting user (a `client_credentials`
/// consumer without `user_id`): then nothing is granted, not even the base
/// role. `requested` is the set of scopes the client asked for.
pub fn granted_roles(
    consumer: ConsumerPolicy<'_>,
    user_roles: Option<&Roles>,
    requested: &Roles,
    base_role: &str,
) -> Roles {
    let Some(user_roles) = user_roles else {
        return Roles::new();
    };
    let mut allowed = consumer.roles.clone();
    if consumer.grant_user_access {
        allowed.extend(user_roles.iter().cloned());
    }
    if consumer.limit_requested_access {
        allowed.retain(|r| requested.contains(r));
    }
    if consumer.limit_user_access {
        allowed.retain(|r| user_roles.contains(r));
    }
    allowed.insert(base_role.to_owned());
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "authenticated";

    fn roles(names: &str) -> Roles {
        names.split_whitespace().map(str::to_owned).collect()
    }

    fn grant(consumer: &str, flags: (bool, bool, bool), user: &str, requested: &str) -> String {
        let consumer_roles = roles(consumer);
        let policy = ConsumerPolicy {
            roles: &consumer_roles,
            grant_user_access: flags.0,
            limit_requested_access: flags.1,
            limit_user_access: flags.2,
        };
        let granted = granted_roles(policy, Some(&roles(user)), &roles(requested), BASE);
        granted.into_iter().collect::<Vec<_>>().join(" ")
    }

    /// All eight flag combinations, for overlapping and for disjoint role sets.
    ///
    /// Flags are (grant_user_access, limit_requested_access, limit_user_access).
    /// Overlapping: the consumer has `viewer manager`, the user `viewer owner`,
    /// the client requests `manager owner`.
    /// Disjoint: the consumer has `viewer`, the user `owner`, the request `manager`.
    #[test]
    fn every_flag_combination_on_overlapping_and_disjoint_roles() {
        #[rustfmt::skip]
        let table = [
            // flags                 overlapping result                          disjoint result
            ((false, false, false), "authenticated manager viewer",             "authenticated viewer"),
            ((true,  false, false), "authenticated manager owner viewer",       "authenticated owner viewer"),
            ((false, true,  false), "authenticated manager",                    "authenticated"),
            ((false, false, true ), "authenticated viewer",                     "authenticated"),
            ((true,  true,  false), "authenticated manager owner",              "authenticated"),
            ((true,  false, true ), "authenticated owner viewer",               "authenticated owner"),
            ((false, true,  true ), "authenticated",                            "authenticated"),
            ((true,  true,  true ), "authenticated owner",                      "authenticated"),
        ];
        for (flags, overlapping, disjoint) in table {
            assert_eq!(
                grant("viewer manager", flags, "viewer owner", "manager owner"),
                overlapping,
                "{flags:?}"
            );
            assert_eq!(grant("viewer", flags, "owner", "manager"), disjoint, "{flags:?}");
        }
    }

    #[test]
    fn by_default_all_scopes_configured_with_the_consumer_are_granted() {
        assert_eq!(
            grant("viewer manager", (false, false, false), "", "viewer"),
            "authenticated manager viewer"
        );
    }

    #[test]
    fn grant_user_access_alone_grants_the_users_roles() {
        assert_eq!(grant("", (true, false, false), "viewer owner", ""), "authenticated owner viewer");
    }

    #[test]
    fn limit_requested_access_lets_the_user_choose_among_the_consumers_scopes() {
        assert_eq!(grant("viewer manager", (false, true, false), "", "viewer"), "authenticated viewer");
    }

    #[test]
    fn limit_user_access_never_grants_more_than_the_user_has() {
        for flags in [(false, false, true), (true, false, true), (false, true, true), (true, true, true)] {
            let granted = grant("viewer manager owner", flags, "viewer", "viewer manager owner");
            assert!(roles(&granted).is_subset(&roles("authenticated viewer")), "{flags:?}: {granted}");
        }
    }

    #[test]
    fn without_an_acting_user_nothing_is_granted() {
        let consumer = roles("viewer");
        let policy = ConsumerPolicy {
            roles: &consumer,
            grant_user_access: false,
            limit_requested_access: false,
            limit_user_access: false,
        };
        assert!(granted_roles(policy, None, &roles("viewer"), BASE).is_empty());
    }
}
