//! The dashboard's languages: English, Chinese (simplified) and Korean, as MetaMCP offers.
//!
//! The language is the `metamcp_lang` cookie's (set by `GET /lang/{code}`, the switch in
//! every page's header), else the best of the browser's `Accept-Language`, else English. A
//! middleware on the page routes puts it in a task-local for the request, so every page —
//! error pages included — renders in it ([`Lang::current`]). Texts are looked up by their
//! English wording (gettext style): a text without a translation shows in English, and a
//! unit test fails when a template uses a text the catalogs lack. Messages that come from
//! the service layer (refusal reasons) stay in English.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

mod catalog;

/// A language of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Zh,
    Ko,
}

/// The languages offered: (code, name in that language).
pub const LANGUAGES: &[(&str, &str)] = &[("en", "English"), ("zh", "中文"), ("ko", "한국어")];

/// The cookie remembering a chosen language.
const COOKIE: &str = "metamcp_lang";

tokio::task_local! {
    static CURRENT: Lang;
}

static ZH: LazyLock<HashMap<&'static str, &'static str>> =
    LazyLock::new(|| catalog::ZH.iter().copied().collect());
static KO: LazyLock<HashMap<&'static str, &'static str>> =
    LazyLock::new(|| catalog::KO.iter().copied().collect());

impl Lang {
    /// The BCP 47 code (`<html lang>`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
            Lang::Ko => "ko",
        }
    }

    fn from_code(code: &str) -> Option<Lang> {
        let primary = code.split(['-', '_']).next()?.trim().to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            "ko" => Some(Lang::Ko),
            _ => None,
        }
    }

    /// The request's language: the cookie, else `Accept-Language`, else English.
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(l) =
            crate::account::browser::cookie_value(headers, COOKIE).and_then(|v| Lang::from_code(&v))
        {
            return l;
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map_or(Lang::En, negotiate)
    }

    /// The language of the request being served (English outside a page request).
    pub fn current() -> Lang {
        CURRENT.try_with(|l| *l).unwrap_or_default()
    }

    /// `en` in this language (`en` itself when there is no translation).
    pub fn t(self, en: &str) -> &str {
        let table = match self {
            Lang::En => return en,
            Lang::Zh => &ZH,
            Lang::Ko => &KO,
        };
        table.get(en).copied().unwrap_or(en)
    }

    /// [`Lang::t`] of a text with one `{}`, filled with `arg`.
    pub fn tf(self, en: &str, arg: &str) -> String {
        self.t(en).replacen("{}", arg, 1)
    }
}

/// The best supported language of an `Accept-Language` value (highest q; ties: first).
fn negotiate(accept: &str) -> Lang {
    let mut best: Option<(f32, Lang)> = None;
    for part in accept.split(',').take(32) {
        let mut it = part.split(';');
        let Some(tag) = it.next().map(str::trim) else {
            continue;
        };
        let q = it
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if let Some(l) = Lang::from_code(tag)
            && q > 0.0
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, l));
        }
    }
    best.map_or(Lang::En, |(_, l)| l)
}

/// Middleware of the page routes: serves the request in its language.
pub async fn scope(req: Request, next: Next) -> Response {
    let lang = Lang::of(req.headers());
    CURRENT.scope(lang, next.run(req)).await
}

/// `GET /lang/{code}`: remembers the language (a cookie for a year) and goes back to the
/// page the switch was on (the same-origin `Referer`'s path; else `/`).
pub async fn switch(Path(code): Path<String>, headers: HeaderMap) -> Response {
    let Some(lang) = Lang::from_code(&code) else {
        return (StatusCode::NOT_FOUND, "no such language").into_response();
    };
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .filter(|u| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|h| u.host_str().is_some() && u.authority() == h)
        })
        .map(|u| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        })
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/".to_owned());
    let mut resp = Redirect::to(&back).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
        lang.code()
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_language_is_negotiated() {
        assert_eq!(negotiate("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh);
        assert_eq!(negotiate("en-US,ko;q=0.9"), Lang::En);
        assert_eq!(negotiate("fr, ko;q=0.5, en;q=0.4"), Lang::Ko);
        assert_eq!(negotiate("fr, de"), Lang::En);
        assert_eq!(negotiate("ko;q=0, zh-TW;q=0.2"), Lang::Zh);
        assert_eq!(negotiate(""), Lang::En);
    }

    #[test]
    fn untranslated_texts_show_in_english() {
        assert_eq!(Lang::Zh.t("Servers"), "服务器");
        assert_eq!(Lang::Ko.t("Servers"), "서버");
        assert_eq!(Lang::Zh.t("no such text"), "no such text");
        assert_eq!(
            Lang::En.tf(
                "Delete server {}? Its processes stop and it leaves every namespace.",
                "a"
            ),
            "Delete server a? Its processes stop and it leaves every namespace."
        );
    }

    /// Every text a template or the dashboard's code passes to `t`/`tf` has a Chinese and a
    /// Korean translation, each with as many `{}` as the English.
    #[test]
    fn the_catalogs_cover_every_text() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts: Vec<String> = Vec::new();
        let mut sources = Vec::new();
        for sub in [
            "templates",
            "templates/dash",
            "src/dashboard",
            "src/dashboard/pages",
        ] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                let p = entry.unwrap().path();
                // (this file's own tests use texts on purpose missing from the catalogs)
                if p.is_file() && p.file_name().is_some_and(|n| n != "i18n.rs") {
                    sources.push(std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        let re = regex::Regex::new(r#"\.t[f]?\("((?:[^"\\]|\\.)*)""#).unwrap();
        for src in &sources {
            for c in re.captures_iter(src) {
                texts.push(c[1].replace("\\\"", "\""));
            }
        }
        // Texts passed through variables (nav, notices, states, settings, script strings).
        texts.extend(catalog::DYNAMIC.iter().map(|s| s.to_string()));
        texts.extend(crate::settings::KEYS.iter().map(|(_, m, _)| m.to_string()));
        texts.extend(
            crate::dashboard::pages::inspector::SCRIPT_TEXTS
                .iter()
                .map(|s| s.to_string()),
        );
        texts.sort();
        texts.dedup();
        let mut missing = Vec::new();
        for t in &texts {
            for (name, table) in [("zh", &*ZH), ("ko", &*KO)] {
                match table.get(t.as_str()) {
                    None => missing.push(format!("{name}: {t:?}")),
                    Some(tr) if tr.matches("{}").count() != t.matches("{}").count() => {
                        missing.push(format!("{name} (placeholders differ): {t:?}"));
                    }
                    Some(_) => {}
                }
            }
        }
        assert!(missing.is_empty(), "untranslated:\n{}", missing.join("\n"));
        assert!(texts.len() > 150, "found only {} texts", texts.len());
    }
}
