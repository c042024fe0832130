//! Endpoints (`endpoints` table): the public names under which a namespace is served
//! (`/metamcp/<endpoint>/…`) and how callers must authenticate there.
//!
//! An endpoint belongs to exactly one namespace and disappears with it (cascade). Its rate
//! limits (`rate_*`, `client_rate_*`, migration 0005) are stored as two nullable numbers each.

use metamcp_core::{RateLimit, validate_object_name};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{bit, flag, new_id, now_ms};
use crate::error::on_unique;
use crate::{Owner, StoreError, Tx, namespaces};

fn select() -> String {
    format!(
        "SELECT e.id, e.name, e.namespace_id, n.name AS namespace_name, \
         e.description, e.api_key_auth, e.query_auth, e.oauth_auth, e.created_at, \
         e.rate_max, e.rate_seconds, e.client_rate_max, e.client_rate_seconds, {} \
         FROM endpoints e JOIN namespaces n ON n.id = e.namespace_id",
        crate::owners::columns("e")
    )
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRecord {
    pub id: String,
    pub name: String,
    pub namespace_id: String,
    pub namespace_name: String,
    pub description: Option<String>,
    /// Callers must present a valid API key.
    pub api_key_auth: bool,
    /// The key may also be given as a URL query parameter (clients that cannot set headers).
    pub query_auth: bool,
    /// Callers may present an OAuth access token issued for this endpoint (the gateway is
    /// the authorization server; migration 0013).
    pub oauth: bool,
    pub created_at: i64,
    /// At most this many requests on the whole endpoint (`None`: unlimited).
    pub rate: Option<RateLimit>,
    /// At most this many requests per client: API key, else client IP (`None`: unlimited).
    pub client_rate: Option<RateLimit>,
    /// `None`: public.
    pub owner: Option<Owner>,
}

/// The rate limits of an endpoint, as set at creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointLimits {
    pub rate: Option<RateLimit>,
    pub client_rate: Option<RateLimit>,
}

/// A change of an endpoint's rate limits: `None` leaves a limit alone, `Some(None)` removes
/// it, `Some(Some(l))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsUpdate {
    pub rate: Option<Option<RateLimit>>,
    pub client_rate: Option<Option<RateLimit>>,
}

impl Tx {
    /// Creates an endpoint serving `namespace`. `NotFound` if the namespace does not exist,
    /// `Duplicate` if the name is taken.
    pub async fn create_endpoint(
        &mut self,
        name: &str,
        namespace: &str,
        description: Option<&str>,
        api_key_auth: bool,
        query_auth: bool,
        limits: EndpointLimits,
    ) -> Result<EndpointRecord, StoreError> {
        validate_object_name("endpoint", name)?;
        let (rate_max, rate_seconds) = columns(limits.rate);
        let (client_max, client_seconds) = columns(limits.client_rate);
        let (id, now) = (new_id(), now_ms());
        let conn = self.write_conn()?;
        let namespace_id = namespaces::id_by_name(conn, namespace).await?;
        sqlx::query(
            "INSERT INTO endpoints (id, name, namespace_id, description, api_key_auth, \
             query_auth, created_at, rate_max, rate_seconds, client_rate_max, \
             client_rate_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(name)
        .bind(&namespace_id)
        .bind(description)
        .bind(bit(api_key_auth))
        .bind(bit(query_auth))
        .bind(now)
        .bind(rate_max)
        .bind(rate_seconds)
        .bind(client_max)
        .bind(client_seconds)
        .execute(conn)
        .await
        .map_err(on_unique("endpoint", name))?;
        self.mark_changed();
        Ok(EndpointRecord {
            id,
            name: name.to_owned(),
            namespace_id,
            namespace_name: namespace.to_owned(),
            description: description.map(str::to_owned),
            api_key_auth,
            query_auth,
            oauth: false,
            created_at: now,
            rate: limits.rate,
            client_rate: limits.client_rate,
            owner: None,
        })
    }

    /// Changes an endpoint's rate limits (running gateways apply them within a second) and
    /// returns the endpoint as it is now. `NotFound` if there is no such endpoint.
    pub async fn update_endpoint_limits(
        &mut self,
        name: &str,
        update: LimitsUpdate,
    ) -> Result<EndpointRecord, StoreError> {
        let conn = self.write_conn()?;
        let found = sqlx::query("SELECT id FROM endpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(StoreError::not_found("endpoint", name));
        }
        if let Some(rate) = update.rate {
            let (max, seconds) = columns(rate);
            sqlx::query("UPDATE endpoints SET rate_max = $1, rate_seconds = $2 WHERE name = $3")
                .bind(max)
                .bind(seconds)
                .bind(name)
                .execute(&mut *conn)
                .await?;
        }
        if let Some(rate) = update.client_rate {
            let (max, seconds) = columns(rate);
            sqlx::query(
                "UPDATE endpoints SET client_rate_max = $1, client_rate_seconds = $2 \
                 WHERE name = $3",
            )
            .bind(max)
            .bind(seconds)
            .bind(name)
            .execute(&mut *conn)
            .await?;
        }
        let rec = reread(conn, name).await?;
        self.mark_changed();
        Ok(rec)
    }

    /// Sets whether an endpoint needs an API key and whether it takes one as `?api_key=`
    /// (running gateways apply it within a second); returns the endpoint as it is now.
    /// `NotFound` if there is no such endpoint.
    pub async fn update_endpoint_auth(
        &mut self,
        name: &str,
        api_key_auth: bool,
        query_auth: bool,
    ) -> Result<EndpointRecord, StoreError> {
        let conn = self.write_conn()?;
        let done =
            sqlx::query("UPDATE endpoints SET api_key_auth = $1, query_auth = $2 WHERE name = $3")
                .bind(bit(api_key_auth))
                .bind(bit(query_auth))
                .bind(name)
                .execute(&mut *conn)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("endpoint", name));
        }
        let rec = reread(conn, name).await?;
        self.mark_changed();
        Ok(rec)
    }

    /// Turns OAuth access tokens on or off for an endpoint (running gateways apply it
    /// within a second); returns the endpoint as it is now. `NotFound` if there is none.
    pub async fn set_endpoint_oauth(
        &mut self,
        name: &str,
        on: bool,
    ) -> Result<EndpointRecord, StoreError> {
        let conn = self.write_conn()?;
        let done = sqlx::query("UPDATE endpoints SET oauth_auth = $1 WHERE name = $2")
            .bind(bit(on))
            .bind(name)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("endpoint", name));
        }
        let rec = reread(conn, name).await?;
        self.mark_changed();
        Ok(rec)
    }

    /// All endpoints, ordered by name.
    pub async fn list_endpoints(&mut self) -> Result<Vec<EndpointRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select()))
            .fetch_all(self.conn())
            .await?;
        let mut out = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn get_endpoint(&mut self, name: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE e.name = $1",
            select()
        )))
        .bind(name)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(record).transpose()
    }

    pub async fn remove_endpoint(&mut self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM endpoints WHERE name = $1")
            .bind(name)
            .execute(self.write_conn()?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("endpoint", name));
        }
        self.mark_changed();
        Ok(())
    }
}

/// The endpoint `name` as it is now, within the caller's transaction.
async fn reread(conn: &mut sqlx::AnyConnection, name: &str) -> Result<EndpointRecord, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{} WHERE e.name = $1",
        select()
    )))
    .bind(name)
    .fetch_one(conn)
    .await?;
    record(&row)
}

fn record(row: &AnyRow) -> Result<EndpointRecord, StoreError> {
    Ok(EndpointRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        namespace_id: row.try_get("namespace_id")?,
        namespace_name: row.try_get("namespace_name")?,
        description: row.try_get("description")?,
        api_key_auth: flag(row.try_get("api_key_auth")?),
        query_auth: flag(row.try_get("query_auth")?),
        oauth: flag(row.try_get("oauth_auth")?),
        created_at: row.try_get("created_at")?,
        rate: limit(row.try_get("rate_max")?, row.try_get("rate_seconds")?),
        client_rate: limit(
            row.try_get("client_rate_max")?,
            row.try_get("client_rate_seconds")?,
        ),
        owner: crate::owners::from_row(row)?,
    })
}

/// A limit as its two stored numbers (both NULL for none).
fn columns(limit: Option<RateLimit>) -> (Option<i64>, Option<i64>) {
    match limit {
        Some(l) => (Some(i64::from(l.max)), Some(i64::from(l.per_seconds))),
        None => (None, None),
    }
}

/// The two stored numbers as a limit; anything but two numbers in range means none (only
/// [`columns`] writes them).
fn limit(max: Option<i64>, seconds: Option<i64>) -> Option<RateLimit> {
    let max = u32::try_from(max?).ok()?;
    let seconds = u32::try_from(seconds?).ok()?;
    RateLimit::new(max, seconds)
}
