//! Reading the audit log: `metamcp audit` and `GET /api/v1/audit`, with the same filters
//! and paging. Admins (the CLI, admin keys, admin users) read every record; a member reads
//! only records of their own (calls made with their keys, their own sign-ins and changes).
//!
//! Paging is newest first by a cursor the reader cannot forge: the id to continue before,
//! with an HMAC (a key derived from the master key) over that id, the filters and the
//! reader. A cursor that does not verify — edited, from another query or another reader — is
//! refused.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use metamcp_store::{AuditFilter, AuditRecord, AuditRow};
use serde::{Deserialize, Serialize};

use super::{Access, Actor, AdminError, Cx};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Records per page unless asked otherwise, and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1_000;

/// The outcomes a record can have (`--outcome` also takes `error`: any but `ok`).
pub const OUTCOMES: &[&str] = &[
    "ok",
    "tool_error",
    "upstream_error",
    "timeout",
    "rate_limited",
    "denied",
    "cancelled",
];

/// What to read, as the CLI and the API take it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub endpoint: Option<String>,
    pub server: Option<String>,
    pub tool: Option<String>,
    /// A key name or a user's email.
    pub principal: Option<String>,
    /// A duration back from now: `90s`, `15m`, `1h`, `2d`, `1w`.
    pub since: Option<String>,
    /// One of [`OUTCOMES`], or `error` (any but `ok`).
    pub outcome: Option<String>,
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One record as shown.
#[derive(Debug, Clone, Serialize)]
pub struct AuditView {
    pub id: i64,
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub time: String,
    pub ts_ms: i64,
    pub kind: String,
    pub face: Option<String>,
    pub principal: Option<Arc<str>>,
    pub endpoint: Option<Arc<str>>,
    pub namespace: Option<Arc<str>>,
    pub server: Option<Arc<str>>,
    pub tool: Option<Arc<str>>,
    pub duration_ms: Option<f64>,
    pub outcome: String,
    pub error: Option<String>,
    pub client: Option<Arc<str>>,
    pub detail: Option<String>,
}

/// A page of records, newest first, and the cursor of the next (older) page.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub records: Vec<AuditView>,
    pub next_cursor: Option<String>,
}

fn view(r: AuditRow) -> AuditView {
    let AuditRow { id, record: r } = r;
    AuditView {
        id,
        time: super::logs::utc_timestamp(r.ts_ms),
        ts_ms: r.ts_ms,
        kind: r.kind.into_owned(),
        face: r.face.map(std::borrow::Cow::into_owned),
        principal: r.principal,
        endpoint: r.endpoint,
        namespace: r.namespace,
        server: r.server,
        tool: r.tool,
        // why: microseconds as milliseconds with three decimals.
        duration_ms: r.duration_us.map(|us| us as f64 / 1000.0),
        outcome: r.outcome.into_owned(),
        error: r.error,
        client: r.client,
        detail: r.detail,
    }
}

/// `90s`, `15m`, `1h`, `2d`, `1w` as milliseconds; `None` for anything else (zero included).
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// A page of the records matching `q` that the actor may read, at `now_ms`.
pub async fn query(cx: &mut Cx<'_>, q: &AuditQuery, now_ms: i64) -> Result<AuditPage, AdminError> {
    cx.require(Access::Read)?;
    let mut f = AuditFilter {
        endpoint: q.endpoint.clone(),
        server: q.server.clone(),
        tool: q.tool.clone(),
        principal: q.principal.clone(),
        limit: q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
        ..AuditFilter::default()
    };
    if !cx.actor.is_admin() {
        // Members read their own records only; nobody else reads any.
        let Some(id) = cx.actor.user_id() else {
            return Err(AdminError::Forbidden(format!(
                "{} may not read the audit log",
                cx.actor
            )));
        };
        f.user_id = Some(id.to_owned());
    }
    if let Some(since) = &q.since {
        let ms = parse_duration_ms(since).ok_or_else(|| {
            AdminError::Invalid(format!(
                "since must be a duration such as 90s, 15m, 1h, 2d or 1w, not {since:?}"
            ))
        })?;
        f.since_ms = Some(now_ms.saturating_sub(ms));
    }
    match q.outcome.as_deref() {
        None => {}
        Some("error") => f.errors_only = true,
        Some(o) if OUTCOMES.contains(&o) => f.outcome = Some(o.to_owned()),
        Some(o) => {
            return Err(AdminError::Invalid(format!(
                "outcome must be error or one of {}, not {o:?}",
                OUTCOMES.join(", ")
            )));
        }
    }
    let key = cx.tx.derive_key("audit cursor v1");
    // why: the cursor binds the query as first asked (the duration, not the time it gave),
    // so the same query's next page verifies.
    let bound = binding(cx.actor, q, &f);
    if let Some(c) = &q.cursor {
        f.before_id = Some(open_cursor(&key, &bound, c).ok_or_else(|| {
            AdminError::Invalid(
                "invalid cursor: it does not belong to this query (pass next_cursor unchanged, \
                 with the same filters)"
                    .into(),
            )
        })?);
    }
    let rows = cx.tx.audit(&f).await?;
    let next_cursor = (rows.len() == f.limit)
        .then(|| rows.last().map(|r| seal_cursor(&key, &bound, r.id)))
        .flatten();
    Ok(AuditPage {
        records: rows.into_iter().map(view).collect(),
        next_cursor,
    })
}

/// What a cursor is bound to: the reader and the filters.
fn binding(actor: &Actor, q: &AuditQuery, f: &AuditFilter) -> String {
    format!(
        "{actor}\0{:?}\0{:?}\0{:?}\0{:?}\0{:?}\0{:?}\0{:?}\0{}",
        f.user_id, q.endpoint, q.server, q.tool, q.principal, q.since, q.outcome, f.limit
    )
}

fn mac(key: &[u8; 32], bound: &str, id: i64) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"metamcp audit cursor v1\0");
    mac.update(&id.to_be_bytes());
    mac.update(bound.as_bytes());
    mac
}

fn seal_cursor(key: &[u8; 32], bound: &str, id: i64) -> String {
    let tag = mac(key, bound, id).finalize().into_bytes();
    let mut raw = id.to_be_bytes().to_vec();
    raw.extend_from_slice(&tag[..16]);
    URL_SAFE_NO_PAD.encode(raw)
}

fn open_cursor(key: &[u8; 32], bound: &str, cursor: &str) -> Option<i64> {
    let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    if raw.len() != 24 {
        return None;
    }
    let id = i64::from_be_bytes(raw[..8].try_into().ok()?);
    mac(key, bound, id).verify_truncated_left(&raw[8..]).ok()?;
    Some(id)
}

tokio::task_local! {
    /// The face (`cli`, `api`) and operation (`key create`, `POST /api/v1/keys`) of the
    /// admin change being made, for its audit record.
    static OP: (String, String);
}

/// Runs `f` with `face` and `op` named as the admin change it makes (see [`super::run`]).
pub async fn with_op<T>(face: &str, op: String, f: impl Future<Output = T>) -> T {
    OP.scope((face.to_owned(), op), f).await
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    crate::audit::now_ms()
}

/// The record (outcome `ok`) of the admin change `actor` is making, named as [`with_op`]
/// named it (`key create`, `PATCH /api/v1/servers/x`); else — the dashboard — face told by
/// who acts (`web` for a signed-in user) and operation `what()`.
pub fn change_record(actor: &Actor, what: impl FnOnce() -> String, now_ms: i64) -> AuditRecord {
    let (face, op) = OP.try_with(Clone::clone).unwrap_or_else(|_| {
        let face = match actor {
            Actor::LocalSuperuser => "cli",
            Actor::AdminKey { .. } => "api",
            Actor::User { .. } | Actor::SignUp => "web",
        };
        (face.to_owned(), what())
    });
    let (principal, user_id): (Option<&str>, Option<&str>) = match actor {
        Actor::LocalSuperuser => (Some("cli"), None),
        Actor::AdminKey { name, .. } => (Some(name), None),
        Actor::User { id, email, .. } => (Some(email), Some(id)),
        Actor::SignUp => (None, None),
    };
    AuditRecord {
        ts_ms: now_ms,
        kind: "admin".into(),
        face: Some(face.into()),
        principal: principal.map(Into::into),
        user_id: user_id.map(Into::into),
        tool: Some(op.into()),
        outcome: "ok".into(),
        ..AuditRecord::default()
    }
}

#[cfg(test)]
mod scenarios {
    //! Who reads what, on both backends: admins everything, members their own records.

    use metamcp_store::Role;
    use metamcp_store::testing::Ctx;

    use super::*;

    metamcp_store::both_backends!(members_read_only_their_own_records);

    fn call(principal: &str, user_id: Option<&str>) -> AuditRecord {
        AuditRecord {
            ts_ms: now_ms(),
            kind: "tool_call".into(),
            principal: Some(principal.into()),
            user_id: user_id.map(Into::into),
            tool: Some("a__echo".into()),
            outcome: "ok".into(),
            ..AuditRecord::default()
        }
    }

    async fn members_read_only_their_own_records(ctx: Ctx) {
        let store = ctx.open().await;
        store
            .append_audit(vec![
                call("ada-key", Some("u-ada")),
                call("bob-key", Some("u-bob")),
                call("public-key", None),
                call("ada-key", Some("u-ada")),
            ])
            .await
            .unwrap();
        let page = async |actor: &Actor, q: &AuditQuery| {
            super::super::read(&store, actor, async |cx| query(cx, q, now_ms()).await).await
        };
        let principals = |p: &AuditPage| -> Vec<String> {
            p.records
                .iter()
                .filter_map(|r| r.principal.as_deref().map(str::to_owned))
                .collect()
        };
        let all = page(&Actor::LocalSuperuser, &AuditQuery::default())
            .await
            .unwrap();
        assert_eq!(all.records.len(), 4);
        let ada = Actor::User {
            id: "u-ada".into(),
            email: "ada@example.com".into(),
            role: Role::Member,
        };
        let mine = page(&ada, &AuditQuery::default()).await.unwrap();
        assert_eq!(principals(&mine), ["ada-key", "ada-key"]);
        // A filter naming someone else's key finds nothing, rather than their records.
        let q = AuditQuery {
            principal: Some("bob-key".into()),
            ..AuditQuery::default()
        };
        assert!(page(&ada, &q).await.unwrap().records.is_empty());
        // A member's cursor does not open an admin's query, nor the other way round.
        let q = AuditQuery {
            limit: Some(1),
            ..AuditQuery::default()
        };
        let first = page(&ada, &q).await.unwrap();
        let next = AuditQuery {
            cursor: first.next_cursor.clone(),
            ..q.clone()
        };
        assert_eq!(principals(&page(&ada, &next).await.unwrap()), ["ada-key"]);
        let e = page(&Actor::LocalSuperuser, &next).await.unwrap_err();
        assert_eq!(e.class(), super::super::ErrorClass::Invalid, "{e}");
        let admin_user = Actor::User {
            id: "u-root".into(),
            email: "root@example.com".into(),
            role: Role::Admin,
        };
        assert_eq!(
            page(&admin_user, &AuditQuery::default())
                .await
                .unwrap()
                .records
                .len(),
            4
        );
        let e = page(&Actor::SignUp, &AuditQuery::default())
            .await
            .unwrap_err();
        assert_eq!(e.class(), super::super::ErrorClass::Forbidden);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("90d"), Some(90 * 86_400_000));
        assert_eq!(parse_duration_ms("1w"), Some(7 * 86_400_000));
        for bad in [
            "",
            "h",
            "0h",
            "1",
            "1y",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursors_verify_only_for_their_query() {
        let key = [7u8; 32];
        let c = seal_cursor(&key, "a", 42);
        assert_eq!(open_cursor(&key, "a", &c), Some(42));
        assert_eq!(open_cursor(&key, "b", &c), None, "another query");
        assert_eq!(open_cursor(&[8u8; 32], "a", &c), None, "another key");
        // Another id with the same tag.
        let mut raw = URL_SAFE_NO_PAD.decode(&c).unwrap();
        raw[7] ^= 1;
        assert_eq!(open_cursor(&key, "a", &URL_SAFE_NO_PAD.encode(&raw)), None);
        assert_eq!(open_cursor(&key, "a", "not base64!"), None);
        assert_eq!(open_cursor(&key, "a", ""), None);
    }
}
