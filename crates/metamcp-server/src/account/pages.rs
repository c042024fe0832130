//! Server-rendered account pages (askama: templates compiled into the binary, checked at
//! build time, HTML-escaped by default) — sign-in, sign-up, the signed-in page and error
//! pages that name the cause and, when there is one, the variable to fix. Every page is sent
//! with a strict Content-Security-Policy (no script, no inline anything, forms only to this
//! origin, never framed).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The sign-in page.
#[derive(Template)]
#[template(path = "login.html")]
pub struct Login<'a> {
    pub lang: crate::dashboard::i18n::Lang,
    pub error: Option<&'a str>,
    pub password_enabled: bool,
    pub signup_enabled: bool,
    /// The SSO provider id when single sign-on is configured.
    pub sso_provider: Option<&'a str>,
    pub return_to: &'a str,
}

/// The sign-up page.
#[derive(Template)]
#[template(path = "register.html")]
pub struct Register<'a> {
    pub lang: crate::dashboard::i18n::Lang,
    pub error: Option<&'a str>,
    /// The first account will become admin.
    pub first_admin: bool,
    /// …and needs the setup token (the request is not from the gateway's machine).
    pub needs_setup_token: bool,
}

/// The signed-in page: who, and the password form.
#[derive(Template)]
#[template(path = "account.html")]
pub struct Account<'a> {
    pub chrome: crate::dashboard::Chrome,
    pub email: &'a str,
    pub has_password: bool,
}

/// An error page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub lang: crate::dashboard::i18n::Lang,
    pub title: &'a str,
    pub message: &'a str,
    /// The environment variable to fix, when the cause is a setting.
    pub variable: Option<&'a str>,
}

/// Scripts, styles and images only from this origin, nothing inline, never framed, forms
/// only to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The same without `form-action`: the sign-in page's single sign-on form is answered with a
/// redirect to the identity provider, which Chrome checks against `form-action` and blocks.
const CSP_SIGN_IN: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                           img-src 'self' data:; media-src data:; connect-src 'self'; frame-ancestors 'none'; \
                           base-uri 'none'";

/// `template` rendered as an HTML response with `status` and the pages' security headers.
pub fn html(status: StatusCode, template: &impl Template) -> Response {
    with_csp(status, template, CSP)
}

/// The OAuth consent page: its form is answered with a redirect to the client (another
/// origin), so it has the sign-in page's policy without `form-action`.
pub fn consent_html(status: StatusCode, template: &impl Template) -> Response {
    with_csp(status, template, CSP_SIGN_IN)
}

/// The sign-in page (see [`CSP_SIGN_IN`]).
pub fn sign_in_html(status: StatusCode, template: &impl Template) -> Response {
    with_csp(status, template, CSP_SIGN_IN)
}

fn with_csp(status: StatusCode, template: &impl Template, csp: &'static str) -> Response {
    match template.render() {
        Ok(body) => {
            let mut resp = (status, body).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(csp),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// An error page as a response.
pub fn error(status: StatusCode, title: &str, message: &str, variable: Option<&str>) -> Response {
    html(
        status,
        &ErrorPage {
            lang: crate::dashboard::i18n::Lang::current(),
            title,
            message,
            variable,
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let page = ErrorPage {
            lang: crate::dashboard::i18n::Lang::default(),
            title: "Sign-in failed",
            message: "<script>alert(1)</script>",
            variable: Some("OIDC_DISCOVERY_URL"),
        }
        .render()
        .unwrap();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&#60;script&#62;") || page.contains("&lt;script&gt;"));
        assert!(page.contains("<code>OIDC_DISCOVERY_URL</code>"));
        let login = Login {
            lang: crate::dashboard::i18n::Lang::default(),
            error: None,
            password_enabled: false,
            signup_enabled: false,
            sso_provider: Some("oidc"),
            return_to: "\"><b>",
        }
        .render()
        .unwrap();
        assert!(!login.contains("name=\"password\""), "password sign-in off");
        assert!(login.contains("sign-in/oauth2"));
        assert!(!login.contains("\"><b>"));
    }
}
