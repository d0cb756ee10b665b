//! Who may change whom, for the pages and the JSON API alike: nobody grants
//! an admin permission they do not hold, and nobody changes a user (roles,
//! permissions, password, disabled) who holds a permission they lack. So an
//! admin with `administer oauth` alone can neither make anyone a keeper of
//! client secrets nor take over such an admin by resetting their password.
//! Each refusal is logged with the caller and the user, never a password.

use crate::store::{PERMISSIONS, UserRecord};

/// A permission the admin pages know: an unknown name is refused later,
/// with the list of known ones (400), not here.
fn known(permission: &str) -> bool {
    PERMISSIONS.contains(&permission)
}

/// Who asks for a change: a signed-in admin on the pages, or an admin API
/// token; `Display` names them for the logs (never a secret).
pub(crate) trait Admin: std::fmt::Display {
    /// True when the caller holds `permission`.
    fn may(&self, permission: &str) -> bool;
}

/// A change refused because the caller lacks a permission (answered 403).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Outranked(String);

/// Refuses, and logs, a change to the user `username` by `caller`:
/// `current` is the user as stored (`None` for a new one), `permissions`
/// the admin permissions the change leaves them with (`None`: unchanged).
pub(crate) fn check_user_change(
    caller: &dyn Admin,
    username: &str,
    current: Option<&UserRecord>,
    permissions: Option<&[String]>,
) -> Result<(), Outranked> {
    let held = current.into_iter().flat_map(|u| &u.permissions).find(|p| !caller.may(p));
    let message = if let Some(p) = held {
        tracing::warn!(caller = %caller, username, permission = %p, "user change refused: the user holds a permission the caller lacks");
        format!("{username} holds the permission “{p}”, which you do not hold: ask an admin who holds it.")
    } else if let Some(p) = permissions.into_iter().flatten().find(|p| known(p) && !caller.may(p)) {
        tracing::warn!(caller = %caller, username, permission = %p, "user change refused: granting a permission the caller lacks");
        format!("You cannot grant the permission “{p}”: you do not hold it.")
    } else {
        return Ok(());
    };
    Err(Outranked(message))
}

/// Refuses, and logs, signing `user` out everywhere by `caller`: as for a
/// change, the caller must hold every admin permission the user holds, so
/// an admin cannot cut a higher one's sessions short.
pub(crate) fn check_sign_out(caller: &dyn Admin, user: &UserRecord) -> Result<(), Outranked> {
    check_user_change(caller, &user.username, Some(user), None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{ADMINISTER_OAUTH, MANAGE_SECRETS};

    struct Holder(&'static [&'static str]);

    impl std::fmt::Display for Holder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("test caller")
        }
    }

    impl Admin for Holder {
        fn may(&self, permission: &str) -> bool {
            self.0.contains(&permission)
        }
    }

    /// An enabled user who is an admin when given permissions, for tests.
    pub(crate) fn user(permissions: &[&str]) -> UserRecord {
        UserRecord {
            username: "ann".into(),
            password_hash: String::new(),
            roles: vec![],
            admin: !permissions.is_empty(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            disabled: false,
        }
    }

    #[test]
    fn nobody_grants_or_touches_what_they_do_not_hold() {
        let clerk = Holder(&[ADMINISTER_OAUTH]);
        let root = Holder(&[ADMINISTER_OAUTH, MANAGE_SECRETS]);
        let both = [ADMINISTER_OAUTH.to_owned(), MANAGE_SECRETS.to_owned()];
        let keeper = user(&[ADMINISTER_OAUTH, MANAGE_SECRETS]);
        let plain = user(&[]);
        assert!(check_user_change(&clerk, "ann", Some(&plain), Some(&both)).is_err(), "grant");
        assert!(check_user_change(&clerk, "ann", None, Some(&both)).is_err(), "a new user");
        assert!(check_user_change(&clerk, "ann", Some(&keeper), None).is_err(), "password or state");
        assert!(check_user_change(&clerk, "ann", Some(&keeper), Some(&[])).is_err(), "take away");
        assert!(check_user_change(&clerk, "ann", Some(&plain), Some(&both[..1])).is_ok());
        assert!(check_user_change(&root, "ann", Some(&keeper), Some(&[])).is_ok());
        assert!(
            check_user_change(&clerk, "ann", None, Some(&["typo".to_owned()])).is_ok(),
            "left to validation"
        );
    }
}
