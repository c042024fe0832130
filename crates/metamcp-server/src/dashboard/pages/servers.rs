//! Servers: the list with live state, add/edit (secrets kept as `<redacted>`), import,
//! reset, delete, and a server's captured log.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::dashboard::*;

// ---- servers ----

#[derive(Template)]
#[template(path = "dash/servers.html")]
pub(crate) struct ServersPage {
    chrome: Chrome,
    servers: Vec<servers::ServerView>,
    import_text: String,
}

pub(crate) async fn servers_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<Refusal>,
    import_text: String,
) -> Response {
    let list = admin::read(&gw.rt.store, &actor(s), async |cx| servers::list(cx).await).await;
    let mut chrome = chrome(gw, s, headers, "/servers", query);
    let (status, servers) = settle(&mut chrome, list, error);
    render(
        status,
        &ServersPage {
            chrome,
            servers,
            import_text,
        },
    )
}

pub(crate) async fn servers_page(
    State(gw): Gw,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match signed_in(&gw, &headers, "/servers").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    servers_view(&gw, &s, &headers, q.as_deref(), None, String::new()).await
}

pub(crate) async fn import_servers(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let text = first(&fields, "json").to_owned();
    let result = match servers::parse_import(&text) {
        Ok(specs) => {
            let owner = owner_choice(&s, &fields);
            write(&gw, &s, async |cx| {
                servers::import_owned(cx, &specs, owner.as_deref()).await
            })
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/servers?done=imported").into_response(),
        Err(e) => servers_view(&gw, &s, &headers, None, Some(Refusal::of(&e)), text).await,
    }
}

pub(crate) async fn server_action(
    gw: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
    name: &str,
    reset: bool,
) -> Response {
    let (s, _) = match form(gw, headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result = write(gw, &s, async |cx| {
        if reset {
            servers::reset(cx, name).await
        } else {
            servers::remove(cx, name).await
        }
    })
    .await;
    match result {
        Ok(()) if reset => Redirect::to("/servers?done=reset").into_response(),
        Ok(()) => Redirect::to("/servers?done=deleted").into_response(),
        Err(e) => servers_view(gw, &s, headers, None, Some(Refusal::of(&e)), String::new()).await,
    }
}

pub(crate) async fn reset_server(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    server_action(&gw, &headers, &body, &name, true).await
}

pub(crate) async fn delete_server(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    server_action(&gw, &headers, &body, &name, false).await
}

// ---- adding and editing a server ----

/// The server form's fields, as text (what the browser sent, or the stored server with its
/// secrets shown as `<redacted>`).
#[derive(Debug, Default, Clone)]
pub(crate) struct ServerForm {
    name: String,
    description: String,
    kind: String,
    command: String,
    args: String,
    env: String,
    url: String,
    headers: String,
    has_bearer: bool,
}

#[derive(Template)]
#[template(path = "dash/server_form.html")]
pub(crate) struct ServerFormPage {
    chrome: Chrome,
    editing: bool,
    f: ServerForm,
}

impl ServerForm {
    /// From one `mcpServers` entry of an export without secrets.
    fn from_export(name: &str, e: &serde_json::Value) -> ServerForm {
        let text = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        let lines = |k: &str, sep: &str| {
            e.get(k)
                .and_then(|v| v.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}{sep}{}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        };
        let kind = match e.get("type").and_then(|v| v.as_str()) {
            Some(t) if t.eq_ignore_ascii_case("sse") => "sse",
            Some(t) if !t.eq_ignore_ascii_case("stdio") => "streamable_http",
            _ if e.get("url").is_some() => "streamable_http",
            _ => "stdio",
        };
        ServerForm {
            name: name.to_owned(),
            description: text("description"),
            kind: kind.to_owned(),
            command: text("command"),
            args: e
                .get("args")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            env: lines("env", "="),
            url: text("url"),
            headers: lines("headers", ": "),
            has_bearer: e.get("bearerToken").is_some(),
        }
    }

    /// From the posted fields.
    fn from_fields(fields: &BTreeMap<String, Vec<String>>) -> ServerForm {
        ServerForm {
            name: first(fields, "name").trim().to_owned(),
            description: first(fields, "description").trim().to_owned(),
            kind: first(fields, "kind").to_owned(),
            command: first(fields, "command").trim().to_owned(),
            args: first(fields, "args").to_owned(),
            env: first(fields, "env").to_owned(),
            url: first(fields, "url").trim().to_owned(),
            headers: first(fields, "headers").to_owned(),
            has_bearer: first(fields, "has_bearer") == "1",
        }
    }

    /// The `mcpServers` document this form describes, for the import parser (which checks
    /// everything the CLI's import checks).
    fn to_import(&self, bearer: &str, clear_bearer: bool) -> Result<String, AdminError> {
        fn pairs(
            text: &str,
            sep: char,
            what: &str,
        ) -> Result<serde_json::Map<String, serde_json::Value>, AdminError> {
            let mut m = serde_json::Map::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                let Some((k, v)) = line.split_once(sep) else {
                    return Err(AdminError::Invalid(format!(
                        "{what}, line {}: expected NAME{sep}value",
                        i + 1
                    )));
                };
                let v = if sep == ':' { v.trim_start() } else { v };
                m.insert(k.trim().to_owned(), serde_json::Value::String(v.to_owned()));
            }
            Ok(m)
        }
        let mut e = serde_json::Map::new();
        if !self.description.is_empty() {
            e.insert("description".into(), self.description.clone().into());
        }
        match self.kind.as_str() {
            "stdio" => {
                e.insert("type".into(), "stdio".into());
                e.insert("command".into(), self.command.clone().into());
                let args: Vec<serde_json::Value> = self
                    .args
                    .lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| !l.is_empty())
                    .map(|l| l.to_owned().into())
                    .collect();
                e.insert("args".into(), args.into());
                e.insert("env".into(), pairs(&self.env, '=', "environment")?.into());
            }
            "streamable_http" | "sse" => {
                e.insert("type".into(), self.kind.clone().into());
                e.insert("url".into(), self.url.clone().into());
                e.insert(
                    "headers".into(),
                    pairs(&self.headers, ':', "headers")?.into(),
                );
                if !bearer.is_empty() {
                    e.insert("bearerToken".into(), bearer.to_owned().into());
                } else if self.has_bearer && !clear_bearer {
                    e.insert("bearerToken".into(), metamcp_core::spec::REDACTED.into());
                }
            }
            other => return Err(AdminError::Invalid(format!("unknown kind {other:?}"))),
        }
        let mut servers = serde_json::Map::new();
        servers.insert(self.name.clone(), e.into());
        Ok(serde_json::json!({ "mcpServers": servers }).to_string())
    }
}

pub(crate) async fn new_server(State(gw): Gw, headers: HeaderMap) -> Response {
    let s = match signed_in(&gw, &headers, "/servers/new").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = ServerForm {
        kind: "stdio".into(),
        ..ServerForm::default()
    };
    let chrome = chrome(&gw, &s, &headers, "/servers", None);
    render(
        StatusCode::OK,
        &ServerFormPage {
            chrome,
            editing: false,
            f,
        },
    )
}

pub(crate) async fn edit_server(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match signed_in(&gw, &headers, &format!("/servers/{name}/edit")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let got = admin::read(&gw.rt.store, &actor(&s), async |cx| {
        servers::get(cx, &name).await?;
        servers::export(cx, false).await
    })
    .await;
    match got {
        Ok(doc) => {
            let entry = doc["mcpServers"][name.as_str()].clone();
            let f = ServerForm::from_export(&name, &entry);
            let chrome = chrome(&gw, &s, &headers, "/servers", None);
            render(
                StatusCode::OK,
                &ServerFormPage {
                    chrome,
                    editing: true,
                    f,
                },
            )
        }
        Err(e) => {
            crate::account::pages::error(status_of(&e), "Server not available", &words(&e), None)
        }
    }
}

pub(crate) async fn save_server(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let f = ServerForm::from_fields(&fields);
    let editing = first(&fields, "editing") == "1";
    let bearer = first(&fields, "bearer").to_owned();
    let clear = first(&fields, "clear_bearer") == "1";
    let result = match f.to_import(&bearer, clear) {
        Ok(doc) => match servers::parse_import(&doc) {
            Ok(specs) => {
                let owner = owner_choice(&s, &fields);
                write(&gw, &s, async |cx| {
                    let exists = servers::get(cx, &f.name).await.is_ok();
                    if exists != editing {
                        return Err(if exists {
                            AdminError::Collision(format!(
                                "a server named {:?} exists already",
                                f.name
                            ))
                        } else {
                            AdminError::NotFound(format!("no server named {:?}", f.name))
                        });
                    }
                    servers::import_owned(cx, &specs, owner.as_deref()).await
                })
                .await
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/servers?done=saved-server").into_response(),
        Err(e) => {
            let mut chrome = chrome(&gw, &s, &headers, "/servers", None);
            chrome.error = Some(words(&e));
            render(status_of(&e), &ServerFormPage { chrome, editing, f })
        }
    }
}

// ---- server logs ----

#[derive(Template)]
#[template(path = "dash/logs.html")]
pub(crate) struct LogsPage {
    chrome: Chrome,
    server: String,
    lines: Vec<crate::admin::logs::LogView>,
}

pub(crate) async fn server_logs(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match signed_in(&gw, &headers, &format!("/servers/{name}/logs")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let got = admin::read(&gw.rt.store, &actor(&s), async |cx| {
        crate::admin::logs::tail(cx, &name, 500).await
    })
    .await;
    let mut chrome = chrome(&gw, &s, &headers, "/servers", None);
    let (status, lines) = settle(&mut chrome, got, None);
    render(
        status,
        &LogsPage {
            chrome,
            server: name,
            lines,
        },
    )
}

/// `GET /servers/export`: the servers the user sees as a Claude-Desktop JSON download,
/// secrets as `<redacted>` (a browser never receives a secret value).
pub(crate) async fn export_servers(State(gw): Gw, headers: HeaderMap) -> Response {
    let s = match signed_in(&gw, &headers, "/servers").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let got = admin::read(&gw.rt.store, &actor(&s), async |cx| {
        servers::export(cx, false).await
    })
    .await;
    match got {
        Ok(doc) => {
            let body = serde_json::to_string_pretty(&doc).unwrap_or_default();
            let mut r = (StatusCode::OK, body).into_response();
            let h = r.headers_mut();
            h.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            h.insert(
                axum::http::header::CONTENT_DISPOSITION,
                axum::http::HeaderValue::from_static(
                    "attachment; filename=\"metamcp-servers.json\"",
                ),
            );
            h.insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) => crate::account::pages::error(status_of(&e), "Export failed", &words(&e), None),
    }
}
