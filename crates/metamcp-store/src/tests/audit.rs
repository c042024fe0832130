//! The audit log and key hygiene: records appended, filtered and paged newest first,
//! pruned by age and count, none of it a configuration change; keys' last use and expiry.

use super::*;

crate::both_backends!(
    audit_is_filtered_paged_and_pruned,
    audit_pages_and_prunes_across_batches,
    keys_last_use_and_expiry
);

fn call(ts_ms: i64, key: &str, tool: &str, outcome: &str) -> AuditRecord {
    AuditRecord {
        ts_ms,
        kind: "tool_call".into(),
        face: Some("mcp".into()),
        principal: Some(key.into()),
        user_id: (key == "ada-key").then(|| "u-ada".into()),
        endpoint: Some("ep".into()),
        namespace: Some("ns".into()),
        server: Some(tool.split("__").next().unwrap_or_default().into()),
        tool: Some(tool.into()),
        duration_us: Some(1234),
        outcome: outcome.to_owned().into(),
        error: (outcome != "ok").then(|| "is_error".to_owned()),
        client: Some("127.0.0.1".into()),
        detail: None,
    }
}

async fn audit_is_filtered_paged_and_pruned(ctx: Ctx) {
    let store = ctx.open().await;
    let v0 = store.config_version().await.unwrap();
    let mut batch = Vec::new();
    for i in 0..10 {
        let key = if i % 2 == 0 { "ci" } else { "ada-key" };
        let tool = if i % 3 == 0 {
            "github__delete_repo"
        } else {
            "memory__read_graph"
        };
        let outcome = if i == 7 { "tool_error" } else { "ok" };
        batch.push(call(1_000 + i, key, tool, outcome));
    }
    store.append_audit(batch.clone()).await.unwrap();
    store.append_audit(Vec::<AuditRecord>::new()).await.unwrap();
    assert_eq!(
        store.config_version().await.unwrap(),
        v0,
        "audit is no config"
    );

    let q = |f: AuditFilter| {
        let store = store.clone();
        async move { r!(store, audit(&f)).await.unwrap() }
    };
    let all = q(AuditFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(all[0].record, batch[9]);

    let deletes = q(AuditFilter {
        tool: Some("github__delete_repo".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    let who: Vec<(i64, &str)> = deletes
        .iter()
        .map(|r| (r.record.ts_ms, r.record.principal.as_deref().unwrap()))
        .collect();
    assert_eq!(
        who,
        [
            (1009, "ada-key"),
            (1006, "ci"),
            (1003, "ada-key"),
            (1000, "ci")
        ]
    );

    let errors = q(AuditFilter {
        errors_only: true,
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].record.ts_ms, 1007);

    let mine = q(AuditFilter {
        user_id: Some("u-ada".into()),
        since_ms: Some(1005),
        server: Some("memory".into()),
        endpoint: Some("ep".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    let ts: Vec<i64> = mine.iter().map(|r| r.record.ts_ms).collect();
    assert_eq!(ts, [1007, 1005]);

    // Paging: 4 per page, each page before the last id of the previous one.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = q(AuditFilter {
            before_id: before,
            limit: 4,
            ..Default::default()
        })
        .await;
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| r.id);
        pages.push(page.len());
    }
    assert_eq!(pages, [4, 4, 2]);

    // Admin changes commit with their record, in the caller's transaction.
    let admin = AuditRecord {
        ts_ms: 2_000,
        kind: "admin".into(),
        face: Some("cli".into()),
        principal: Some("cli".into()),
        tool: Some("key create".into()),
        outcome: "ok".into(),
        ..Default::default()
    };
    store
        .write(async |tx: &mut Tx| {
            tx.create_api_key("ops", false).await?;
            tx.record_audit(&admin).await
        })
        .await
        .unwrap();
    let top = q(AuditFilter {
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(top[0].record, admin);
    // A read transaction cannot write one.
    assert!(r!(store, record_audit(&admin)).await.is_err());

    // Retention: by age, then by count.
    assert_eq!(store.prune_audit(1_003, 1_000).await.unwrap(), 3);
    assert_eq!(store.prune_audit(0, 5).await.unwrap(), 3);
    let left: Vec<i64> = q(AuditFilter {
        limit: 100,
        ..Default::default()
    })
    .await
    .iter()
    .map(|r| r.record.ts_ms)
    .collect();
    assert_eq!(left, [2000, 1009, 1008, 1007, 1006]);
    assert_eq!(store.prune_audit(0, 5).await.unwrap(), 0);

    // A large batch, in several statements (two records of 2.5 MB each exceed one
    // statement's text), with texts that need escaping and a U+0000 (refused by PostgreSQL
    // text: recorded as U+FFFD rather than failing the batch): everything arrives, in order.
    let odd = "q\"\\\n\u{0}é😀'); DROP TABLE audit_log; --";
    let mut big = Vec::new();
    for i in 0..3_000_i64 {
        let mut r = call(10_000 + i, "ci", odd, "ok");
        r.duration_us = Some(i64::MAX - i);
        r.detail = match i {
            5 | 6 => Some("d".repeat(5 << 19)),
            7 => None,
            _ => Some(format!("{{\"n\":{i}}}")),
        };
        big.push(r);
    }
    store.append_audit(big.clone()).await.unwrap();
    let got = q(AuditFilter {
        since_ms: Some(10_000),
        limit: 5_000,
        ..Default::default()
    })
    .await;
    assert_eq!(got.len(), 3_000);
    for (row, want) in got.iter().rev().zip(&big) {
        let mut want = want.clone();
        want.tool = Some(odd.replace('\0', "\u{fffd}").into());
        want.server.clone_from(&want.tool);
        assert_eq!(row.record, want);
    }
    assert!(
        got.windows(2)
            .all(|w| w[0].id > w[1].id && w[0].record.ts_ms > w[1].record.ts_ms)
    );
}

/// Records written in several batches (SQLite keeps a batch as one row): pages cut through
/// batches, pruning by age and by count cuts through them too, and no record changes id.
async fn audit_pages_and_prunes_across_batches(ctx: Ctx) {
    let store = ctx.open().await;
    // Times in write order; 25 is a long call, finished (and written) after later ones.
    let batches: [&[i64]; 4] = [&[10, 11, 12], &[13], &[14, 25, 16, 17], &[18, 19]];
    for b in batches {
        let records: Vec<AuditRecord> = b.iter().map(|&ts| call(ts, "ci", "a__b", "ok")).collect();
        store.append_audit(records).await.unwrap();
    }
    let page = |before: Option<i64>, limit: usize| {
        let store = store.clone();
        async move {
            r!(
                store,
                audit(&AuditFilter {
                    before_id: before,
                    limit,
                    ..Default::default()
                })
            )
            .await
            .unwrap()
        }
    };
    let written_order = [19, 18, 17, 16, 25, 14, 13, 12, 11, 10];
    let ts = |rows: &[AuditRow]| rows.iter().map(|r| r.record.ts_ms).collect::<Vec<_>>();
    let all = page(None, 100).await;
    assert_eq!(ts(&all), written_order, "newest written first");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    // Pages of 3: each starts after the last id of the one before, through batch edges.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let p = page(before, 3).await;
        if p.is_empty() {
            break;
        }
        assert!(p.len() <= 3);
        before = p.last().map(|r| r.id);
        paged.extend(p);
    }
    assert_eq!(paged, all);
    // `since` counts records, not batches: 25 is in a batch with older records.
    let recent = r!(
        store,
        audit(&AuditFilter {
            since_ms: Some(17),
            limit: 100,
            ..Default::default()
        })
    )
    .await
    .unwrap();
    assert_eq!(ts(&recent), [19, 18, 17, 25]);

    // By age: 10-13 go (the first two batches whole) and 14 from the third; the rest
    // keep their ids.
    assert_eq!(store.prune_audit(15, 1_000).await.unwrap(), 5);
    let left = page(None, 100).await;
    assert_eq!(ts(&left), [19, 18, 17, 16, 25]);
    assert!(left.iter().all(|r| all.contains(r)), "ids unchanged");
    // By count: the newest 3 stay, the edge falls inside the third batch.
    assert_eq!(store.prune_audit(0, 3).await.unwrap(), 2);
    let left = page(None, 100).await;
    assert_eq!(ts(&left), [19, 18, 17]);
    assert!(left.iter().all(|r| all.contains(r)), "ids unchanged");
    assert_eq!(store.prune_audit(0, 3).await.unwrap(), 0);
    // Everything pruned, then a new record: its id is above every id handed out before.
    assert_eq!(store.prune_audit(i64::MAX, 3).await.unwrap(), 3);
    assert!(page(None, 100).await.is_empty());
    store
        .append_audit(vec![call(30, "ci", "a__b", "ok")])
        .await
        .unwrap();
    let new = page(None, 100).await;
    assert_eq!(ts(&new), [30]);
    assert!(new[0].id > all[0].id, "ids are never reused");
}

async fn keys_last_use_and_expiry(ctx: Ctx) {
    let store = ctx.open().await;
    let (ci, _) = w!(store, create_api_key("ci", false)).await.unwrap();
    assert_eq!(ci.last_used_at, None);
    assert_eq!(ci.expires_at, None);
    let v = store.config_version().await.unwrap();
    store
        .touch_api_keys(&[(ci.id.clone(), 5_000)])
        .await
        .unwrap();
    // Never moved back; an unknown id is ignored.
    store
        .touch_api_keys(&[(ci.id.clone(), 4_000), ("nope".into(), 1)])
        .await
        .unwrap();
    assert_eq!(
        store.config_version().await.unwrap(),
        v,
        "a stamp is no config"
    );
    let listed = r!(store, list_api_keys()).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(5_000));

    w!(store, set_api_key_expiry("ci", Some(9_000)))
        .await
        .unwrap();
    assert!(
        store.config_version().await.unwrap() > v,
        "expiry is config"
    );
    let active = r!(store, active_api_keys()).await.unwrap();
    assert_eq!(active[0].expires_at, Some(9_000));
    assert!(matches!(
        w!(store, set_api_key_expiry("nope", None)).await,
        Err(StoreError::NotFound { .. })
    ));
}
