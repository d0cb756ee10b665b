//! What every page of ours shares: sign-in sessions, CSRF, the sign-in page
//! and its form, password hashing, the throttle, random tokens and keyed
//! secrets, and the page templates with their headers.
//!
//! `/oauth/authorize` (the authorization server), `/oauth/start/{client}`
//! (the OAuth client) and the admin pages each hold a `signin::SignIn`
//! with their own cookie scope; none of them signs a user in another way.
//!
//! - [`signin`]: the sign-in itself: current session, sign-in form, sign-out.
//! - `federated` and `claims`: sign-in through outside OpenID providers,
//!   who may sign in and which roles they get.
//! - `cookie`: reading and setting our cookies, and each sign-in's cookie scope.
//! - `csrf`: the CSRF cookie and the keyed token in every form.
//! - `throttle`: failed sign-ins counted per account and per address.
//! - `origin`: a sign-in page opened under another loopback name than the
//!   public URL's is sent there first (cookies are kept per host name).
//! - [`password`]: argon2id hashing and checking.
//! - [`secrets`]: random tokens and the server's keyed secrets.
//! - [`pages`]: the templates of the sign-in, error and message pages, and
//!   the headers of every page (CSP, no framing, no caching).
// A build with one role but not the others (crate features) leaves some of
// what the others use here unused.
#![cfg_attr(not(feature = "admin"), allow(dead_code))]

pub(crate) mod claims;
pub(crate) mod cookie;
pub(crate) mod csrf;
pub(crate) mod federated;
mod federated_signin;
pub(crate) mod origin;
pub mod pages;
pub mod password;
pub(crate) mod provider_http;
pub mod secrets;
pub mod signin;
pub(crate) mod throttle;
