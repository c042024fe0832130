//! A browser as the account routes see it: one cookie jar (the session cookie, kept by
//! hand from `Set-Cookie`), the session's CSRF token, and the `Origin` a page of the
//! gateway would send. Real HTTP over a real socket; no browser engine.

use serde_json::Value;

/// One browser talking to one gateway.
#[derive(Debug, Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    /// `name=value` of the session cookie, once set.
    pub cookie: Option<String>,
    /// The session's CSRF token, once known.
    pub csrf: Option<String>,
    /// The `Origin` sent with POSTs (`None`: none, as a non-browser client).
    pub origin: Option<String>,
    /// Extra headers on every request.
    pub headers: Vec<(String, String)>,
    /// Other cookies the gateway set (name → value), sent back on every request (a browser
    /// would honour their paths; the tests only meet the single sign-on binding cookie).
    pub other_cookies: std::collections::BTreeMap<String, String>,
}

/// An answer: status, headers, JSON body (or `Value::Null`), raw text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            base: base.to_owned(),
            cookie: None,
            csrf: None,
            origin: Some(base.to_owned()),
            headers: Vec::new(),
            other_cookies: Default::default(),
        }
    }

    /// Sends a request; keeps a session cookie the answer sets (or clears).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
        csrf: bool,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let post = method != reqwest::Method::GET;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        let jar: Vec<String> = self
            .cookie
            .iter()
            .cloned()
            .chain(self.other_cookies.iter().map(|(k, v)| format!("{k}={v}")))
            .collect();
        if !jar.is_empty() {
            req = req.header("cookie", jar.join("; "));
        }
        if post && let Some(o) = &self.origin {
            req = req.header("origin", o);
        }
        if csrf && let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        for sc in headers.get_all("set-cookie") {
            let sc = sc.to_str().unwrap_or("");
            let pair = sc.split(';').next().unwrap_or("").trim();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if name.ends_with("metamcp_session") {
                self.cookie = (!value.is_empty()).then(|| pair.to_owned());
                if value.is_empty() {
                    self.csrf = None;
                }
            } else if value.is_empty() {
                self.other_cookies.remove(name);
            } else {
                self.other_cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(t) = json.get("csrfToken").and_then(Value::as_str) {
            self.csrf = Some(t.to_owned());
        }
        Answer {
            status,
            headers,
            json,
            text,
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, None, false).await
    }

    /// POSTs JSON with the CSRF token.
    pub async fn post(&mut self, path: &str, body: Value) -> Answer {
        self.send(
            "POST",
            path,
            Some(("application/json", body.to_string())),
            true,
        )
        .await
    }

    /// Sends JSON with `method`, with the CSRF token.
    pub async fn json(&mut self, method: &str, path: &str, body: Value) -> Answer {
        self.send(
            method,
            path,
            Some(("application/json", body.to_string())),
            true,
        )
        .await
    }

    /// POSTs a form (`application/x-www-form-urlencoded`).
    pub async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = url_encode(fields);
        self.send(
            "POST",
            path,
            Some(("application/x-www-form-urlencoded", body)),
            false,
        )
        .await
    }

    pub async fn sign_up(&mut self, email: &str, password: &str) -> Answer {
        self.post(
            "/api/auth/sign-up/email",
            serde_json::json!({ "email": email, "password": password, "name": email }),
        )
        .await
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> Answer {
        self.post(
            "/api/auth/sign-in/email",
            serde_json::json!({ "email": email, "password": password }),
        )
        .await
    }

    /// `GET /api/auth/get-session`'s user email, if signed in.
    pub async fn who(&mut self) -> Option<String> {
        let a = self.get("/api/auth/get-session").await;
        a.json["user"]["email"].as_str().map(str::to_owned)
    }
}

fn url_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
