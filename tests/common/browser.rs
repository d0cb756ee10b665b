//! A browser without JavaScript for tests: keeps cookies, follows no
//! redirect by itself, reads forms and inputs from pages.

use std::collections::HashMap;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use super::Sidecar;

/// A browser without JavaScript: keeps cookies, follows nothing by itself.
pub struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

/// A response as the browser saw it.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> url::Url {
        let loc = self
            .headers
            .get(LOCATION)
            .unwrap_or_else(|| panic!("no redirect: {} {}", self.status, self.body));
        url::Url::parse(loc.to_str().unwrap()).unwrap()
    }

    /// The value of a hidden or text input.
    pub fn input(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker).unwrap_or_else(|| panic!("no input {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        unescape(&self.body[start..end])
    }

    pub fn form_action(&self) -> String {
        let start = self.body.find("action=\"").expect("a form") + 8;
        let end = self.body[start..].find('"').unwrap() + start;
        unescape(&self.body[start..end])
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }
}

pub fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The query parameters of a redirect.
pub fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

impl Browser {
    pub fn new() -> Self {
        super::install_crypto();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { http, cookies: HashMap::new() }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() { req } else { req.header("cookie", self.cookie_header()) };
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        for value in headers.get_all(SET_COOKIE) {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.insert(name.to_owned(), value.to_owned());
        }
        Page { status, headers, body: res.text().await.unwrap() }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.send(req).await
    }

    pub async fn post(&mut self, sidecar: &Sidecar, action: &str, fields: &[(&str, &str)]) -> Page {
        self.post_url(&sidecar.url(action), fields).await
    }

    /// Posts a form to an absolute URL.
    pub async fn post_url(&mut self, url: &str, fields: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let req = self.http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
        self.send(req).await
    }

    /// Fills in and posts the sign-in page.
    pub async fn sign_in(&mut self, sidecar: &Sidecar, page: &Page, user: &str, password: &str) -> Page {
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("name=\"password\""), "a sign-in page: {}", page.body);
        let csrf = page.input("csrf_token");
        let fields =
            [("csrf_token", csrf.as_str()), ("step", "login"), ("username", user), ("password", password)];
        self.post(sidecar, &page.form_action(), &fields).await
    }
}

impl Browser {
    /// Like [`Browser::sign_in`] on a page that may carry any status.
    pub async fn sign_in_status(
        &mut self,
        sidecar: &Sidecar,
        page: &Page,
        user: &str,
        password: &str,
    ) -> Page {
        let csrf = page.input("csrf_token");
        let fields =
            [("csrf_token", csrf.as_str()), ("step", "login"), ("username", user), ("password", password)];
        self.post(sidecar, &page.form_action(), &fields).await
    }
}
