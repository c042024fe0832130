//! A server's captured stderr and lifecycle lines.

use serde::Serialize;

use super::{Access, AdminError, Cx};

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    /// Epoch milliseconds.
    pub ts_ms: i64,
    /// The same time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub time: String,
    pub line: String,
}

/// The newest `lines` lines of the server, oldest first (empty before a gateway started it).
///
/// What a server writes on stderr describes the host and its secrets' failures: only admins
/// and the server's owner may read it.
pub async fn tail(cx: &mut Cx<'_>, server: &str, lines: usize) -> Result<Vec<LogView>, AdminError> {
    let rec = cx
        .tx
        .get_server(server)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no server named {server:?}")))?;
    cx.require_object(Access::Inspect, "server", server, rec.owner.as_ref())?;
    Ok(cx
        .tx
        .server_logs(server, lines)
        .await?
        .into_iter()
        .map(|l| LogView {
            time: utc_timestamp(l.ts_ms),
            ts_ms: l.ts_ms,
            line: l.line,
        })
        .collect())
}

/// A line of the live log.
#[derive(Debug, Clone, Serialize)]
pub struct LiveLine {
    pub id: i64,
    pub server: String,
    pub time: String,
    pub line: String,
}

/// Up to `limit` lines written after `after_id` (< 0: the newest `limit`) of the servers
/// whose logs the actor may read — an admin every server's, a member only their own — and
/// the id to continue after (the last line read, shown or not).
pub async fn since(
    cx: &mut Cx<'_>,
    after_id: i64,
    limit: usize,
) -> Result<(Vec<LiveLine>, i64), AdminError> {
    cx.require(Access::Read)?;
    let owners: std::collections::HashMap<String, Option<String>> = cx
        .tx
        .list_servers()
        .await?
        .into_iter()
        .map(|r| (r.spec.name.clone(), r.owner.map(|o| o.id)))
        .collect();
    let entries = cx.tx.server_logs_since(after_id, limit).await?;
    let next = entries.last().map_or(after_id.max(0), |e| e.id);
    let lines = entries
        .into_iter()
        .filter(|e| {
            owners
                .get(&e.server)
                .is_some_and(|o| cx.actor.may_touch(Access::Inspect, o.as_deref()))
        })
        .map(|e| LiveLine {
            id: e.id,
            time: utc_timestamp(e.ts_ms),
            server: e.server,
            line: e.line,
        })
        .collect();
    Ok((lines, next))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for epoch milliseconds (proleptic Gregorian, UTC).
pub fn utc_timestamp(ts_ms: i64) -> String {
    let days = ts_ms.div_euclid(86_400_000);
    let ms_of_day = ts_ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, sec, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::utc_timestamp;

    #[test]
    fn formats_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(1_795_598_275_348), "2026-11-25T09:17:55.348Z");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
