//! The one clock: Unix seconds now, for expiry times in the store, tokens
//! and sessions. It stands below every role (it needs nothing but `std`),
//! so the gate, the authorization server, the OAuth client and the pages
//! all read the same time the same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in Unix seconds (0 before 1970, `i64::MAX` past its end).
// A build with only a store (crate features) reads no time.
#[cfg_attr(not(any(feature = "gate", feature = "web")), allow(dead_code))]
pub(crate) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
