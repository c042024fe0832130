//! The live log: `GET /logs/stream`, a Server-Sent Events stream of the server log lines the
//! signed-in user may read (an admin every server's, a member their own), as they are
//! written.
//!
//! Lines are read from the store (where every gateway copies its servers' stderr and
//! lifecycle lines), so a browser sees the lines of every replica, whichever it is connected
//! to. Each stream polls once a second, re-checking the session: a sign-out or a disabled
//! user ends it within a second. Bounds: [`PER_USER`] streams per user and [`TOTAL`] in all
//! (a further one is refused with 429), at most [`BATCH`] lines per poll; the browser keeps
//! the newest 2,000.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use askama::Template;

use crate::admin::{self, servers};
use crate::dashboard::{Chrome, Gw, actor, chrome, render, signed_in};
use crate::state::Gateway;

/// Live-log streams one user may hold at once.
pub const PER_USER: usize = 4;
/// Live-log streams in all.
pub const TOTAL: usize = 256;
/// Lines read per poll.
pub const BATCH: usize = 500;
/// Lines sent when a stream opens (the newest).
pub const BACKLOG: usize = 200;

/// Open streams per user.
#[derive(Debug, Default)]
pub struct Streams {
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream; closing it (drop) frees its place.
#[derive(Debug)]
struct Slot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

impl Streams {
    fn take(&self, user: &str) -> Option<Slot> {
        let mut open = self.open.lock();
        let total: usize = open.values().sum();
        let mine = open.get(user).copied().unwrap_or(0);
        if total >= TOTAL || mine >= PER_USER {
            return None;
        }
        open.insert(user.to_owned(), mine + 1);
        Some(Slot {
            open: self.open.clone(),
            user: user.to_owned(),
        })
    }
}

/// `GET /logs/stream`.
pub async fn stream(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let s = match gw.accounts.signed_in(&gw.rt.store, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "live log: reading the session failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Some(slot) = gw.live.take(&s.user.id) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {PER_USER} live logs per user ({TOTAL} in all); close another"),
        )
            .into_response();
    };
    let state = (gw, headers, -1_i64, slot, true);
    let events = futures::stream::unfold(state, |(gw, headers, after, slot, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // The session is checked on every poll: signed out or disabled → the stream ends.
        let s = gw.accounts.signed_in(&gw.rt.store, &headers).await.ok()??;
        let actor = admin::Actor::User {
            id: s.user.id.clone(),
            email: s.user.email.clone(),
            role: s.user.role,
        };
        let limit = if first { BACKLOG } else { BATCH };
        let (lines, next) = admin::read(&gw.rt.store, &actor, async |cx| {
            admin::logs::since(cx, after, limit).await
        })
        .await
        .ok()?;
        let data = serde_json::to_string(&lines).unwrap_or_else(|_| "[]".into());
        let event: Result<Event, Infallible> = Ok(Event::default().event("lines").data(data));
        Some((event, (gw, headers, next, slot, false)))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

// ---- the page ----

#[derive(Template)]
#[template(path = "dash/live.html")]
struct LivePage {
    chrome: Chrome,
    /// Servers whose logs the user may read.
    servers: Vec<String>,
}

pub(crate) async fn live_page(State(gw): Gw, headers: HeaderMap) -> Response {
    let s = match signed_in(&gw, &headers, "/logs").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let a = actor(&s);
    let servers = admin::read(&gw.rt.store, &a, async |cx| servers::list(cx).await)
        .await
        .map(|l| {
            l.into_iter()
                .filter(|v| a.is_admin() || v.owner.as_deref() == Some(s.user.email.as_str()))
                .map(|v| v.name)
                .collect()
        })
        .unwrap_or_default();
    let chrome = chrome(&gw, &s, &headers, "/logs", None);
    render(StatusCode::OK, &LivePage { chrome, servers })
}
