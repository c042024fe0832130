//! Namespaces through transactions: members (changed by difference), cascades, tool rules.

use super::*;

crate::both_backends!(
    namespaces_and_cascades,
    tool_shaping,
    members_change_by_difference,
);

async fn namespaces_and_cascades(ctx: Ctx) {
    let store = ctx.open().await;
    for name in ["alpha", "beta", "gamma"] {
        w!(store, create_server(&stdio(name, &[]))).await.unwrap();
    }
    let v = store.config_version().await.unwrap();
    let err = w!(
        store,
        create_namespace(
            "ns1",
            None,
            &["alpha".into(), "missing".into()],
            PrefixMode::Always
        )
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "server", ref name } if name == "missing"),
        "{err}"
    );
    // The failed create left nothing behind and did not count as a change.
    assert!(r!(store, get_namespace("ns1")).await.unwrap().is_none());
    assert_eq!(store.config_version().await.unwrap(), v);

    let ns = w!(
        store,
        create_namespace(
            "ns1",
            Some("first"),
            &["gamma".into(), "alpha".into(), "gamma".into()],
            PrefixMode::Always
        )
    )
    .await
    .unwrap();
    assert_eq!(ns.name, "ns1");
    assert_eq!(ns.description.as_deref(), Some("first"));
    let members: Vec<_> = ns
        .servers
        .iter()
        .map(|m| (m.server_name.as_str(), m.active))
        .collect();
    assert_eq!(members, [("gamma", true), ("alpha", true)]);
    assert_eq!(r!(store, get_namespace("ns1")).await.unwrap().unwrap(), ns);
    assert!(matches!(
        w!(
            store,
            create_namespace("ns1", None, &[], PrefixMode::Always)
        )
        .await,
        Err(StoreError::Duplicate {
            kind: "namespace",
            ..
        })
    ));
    assert!(matches!(
        w!(
            store,
            create_namespace("bad name", None, &[], PrefixMode::Always)
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    w!(
        store,
        create_namespace("empty", None, &[], PrefixMode::Always)
    )
    .await
    .unwrap();

    w!(store, set_namespace_server_active("ns1", "alpha", false))
        .await
        .unwrap();
    w!(store, add_namespace_server("ns1", "beta"))
        .await
        .unwrap();
    assert!(matches!(
        w!(store, add_namespace_server("ns1", "beta")).await,
        Err(StoreError::Duplicate { .. })
    ));
    assert!(matches!(
        w!(store, add_namespace_server("nope", "beta")).await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    assert!(matches!(
        w!(store, set_namespace_server_active("empty", "beta", true)).await,
        Err(StoreError::NotFound { .. })
    ));
    let ns = r!(store, get_namespace("ns1")).await.unwrap().unwrap();
    let members: Vec<_> = ns
        .servers
        .iter()
        .map(|m| (m.server_name.as_str(), m.active))
        .collect();
    assert_eq!(members, [("gamma", true), ("alpha", false), ("beta", true)]);

    w!(store, remove_namespace_server("ns1", "gamma"))
        .await
        .unwrap();
    // Removing a server drops its memberships.
    w!(store, remove_server("alpha")).await.unwrap();
    let ns = r!(store, get_namespace("ns1")).await.unwrap().unwrap();
    let members: Vec<_> = ns.servers.iter().map(|m| m.server_name.as_str()).collect();
    assert_eq!(members, ["beta"]);

    let names: Vec<_> = r!(store, list_namespaces())
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["empty", "ns1"]);

    // Removing a namespace removes its endpoints, not other namespaces' ones.
    w!(
        store,
        create_endpoint("ep1", "ns1", None, true, false, EndpointLimits::default())
    )
    .await
    .unwrap();
    w!(
        store,
        create_endpoint("ep2", "ns1", None, true, false, EndpointLimits::default())
    )
    .await
    .unwrap();
    w!(
        store,
        create_endpoint("ep3", "empty", None, true, false, EndpointLimits::default())
    )
    .await
    .unwrap();
    w!(store, remove_namespace("ns1")).await.unwrap();
    let eps: Vec<_> = r!(store, list_endpoints())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(eps, ["ep3"]);
    assert!(matches!(
        w!(store, remove_namespace("ns1")).await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    // The servers stay.
    assert!(r!(store, get_server("beta")).await.unwrap().is_some());
}

async fn tool_shaping(ctx: Ctx) {
    let store = ctx.open().await;
    w!(store, create_server(&stdio("a", &[]))).await.unwrap();
    w!(store, create_server(&stdio("b", &[]))).await.unwrap();
    w!(
        store,
        create_namespace("ns", None, &["a".to_owned()], PrefixMode::Always)
    )
    .await
    .unwrap();
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    assert!(ns.new_tools_enabled && ns.max_name_length.is_none() && ns.tools.is_empty());

    let v0 = store.config_version().await.unwrap();
    let off = ToolRuleRecord {
        server_name: "a".into(),
        tool: "add".into(),
        status: Some("INACTIVE".into()),
        ..ToolRuleRecord::default()
    };
    let renamed = ToolRuleRecord {
        server_name: "a".into(),
        tool: "echo".into(),
        name: Some("say".into()),
        annotations: Some(r#"{"readOnlyHint":true}"#.into()),
        ..ToolRuleRecord::default()
    };
    w!(
        store,
        change_shaping(
            "ns",
            &ShapingChange {
                new_tools_enabled: Some(false),
                max_name_length: Some(Some(64)),
                rules: vec![off.clone(), renamed.clone()],
            },
        )
    )
    .await
    .unwrap();
    assert_eq!(
        store.config_version().await.unwrap(),
        v0 + 1,
        "one change, one bump"
    );
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    assert!(!ns.new_tools_enabled);
    assert_eq!(ns.max_name_length, Some(64));
    let got: Vec<(String, String, Option<String>, Option<String>)> = ns
        .tools
        .iter()
        .map(|r| {
            (
                r.server_name.clone(),
                r.tool.clone(),
                r.status.clone(),
                r.name.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), "add".into(), Some("INACTIVE".into()), None),
            ("a".into(), "echo".into(), None, Some("say".into())),
        ]
    );
    assert_eq!(
        ns.tools[1].annotations.as_deref(),
        Some(r#"{"readOnlyHint":true}"#)
    );

    // Rewriting a rule replaces it whole; an empty rule deletes it; the limit can be removed.
    w!(
        store,
        change_shaping(
            "ns",
            &ShapingChange {
                max_name_length: Some(None),
                rules: vec![
                    ToolRuleRecord {
                        status: Some("ACTIVE".into()),
                        ..off
                    },
                    ToolRuleRecord {
                        server_name: "a".into(),
                        tool: "echo".into(),
                        ..ToolRuleRecord::default()
                    },
                ],
                ..ShapingChange::default()
            },
        )
    )
    .await
    .unwrap();
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    assert_eq!(ns.max_name_length, None);
    assert!(!ns.new_tools_enabled, "untouched when not asked");
    assert_eq!(ns.tools.len(), 1);
    assert_eq!(ns.tools[0].status.as_deref(), Some("ACTIVE"));

    // A rule for a server outside the namespace, or an unknown namespace, is refused.
    let foreign = ShapingChange {
        rules: vec![ToolRuleRecord {
            server_name: "b".into(),
            tool: "x".into(),
            status: Some("INACTIVE".into()),
            ..ToolRuleRecord::default()
        }],
        ..ShapingChange::default()
    };
    assert!(matches!(
        w!(store, change_shaping("ns", &foreign)).await,
        Err(StoreError::NotFound {
            kind: "namespace member",
            ..
        })
    ));
    assert!(matches!(
        w!(store, change_shaping("nope", &ShapingChange::default())).await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    // Rules go with their server and their namespace.
    w!(store, remove_server("a")).await.unwrap();
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    assert!(ns.tools.is_empty());
}

async fn members_change_by_difference(ctx: Ctx) {
    let store = ctx.open().await;
    for name in ["a", "b", "c", "d"] {
        w!(store, create_server(&stdio(name, &[]))).await.unwrap();
    }
    w!(
        store,
        create_namespace(
            "ns",
            None,
            &["a".into(), "b".into(), "c".into()],
            PrefixMode::Always
        )
    )
    .await
    .unwrap();
    w!(
        store,
        change_shaping(
            "ns",
            &ShapingChange {
                rules: vec![ToolRuleRecord {
                    server_name: "b".into(),
                    tool: "echo".into(),
                    status: Some("INACTIVE".into()),
                    ..ToolRuleRecord::default()
                }],
                ..ShapingChange::default()
            }
        )
    )
    .await
    .unwrap();
    let raw = async |store: &Store| -> Vec<(String, String, i64)> {
        sqlx::query_as(
            "SELECT s.name, m.status, m.position FROM namespace_servers m \
             JOIN servers s ON s.id = m.server_id ORDER BY m.position, s.name",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    };
    let members = |list: &[(&str, bool)]| -> Vec<(String, bool)> {
        list.iter().map(|(s, a)| ((*s).to_owned(), *a)).collect()
    };
    let v = store.config_version().await.unwrap();
    // Remove a, keep b (now inactive) and c, append d: kept rows keep their positions.
    w!(
        store,
        set_namespace_members("ns", &members(&[("b", false), ("c", true), ("d", true)]))
    )
    .await
    .unwrap();
    assert_eq!(
        raw(&store).await,
        [
            ("b".to_owned(), "INACTIVE".to_owned(), 1),
            ("c".to_owned(), "ACTIVE".to_owned(), 2),
            ("d".to_owned(), "ACTIVE".to_owned(), 3),
        ]
    );
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    // The same list again changes nothing and bumps nothing.
    w!(
        store,
        set_namespace_members("ns", &members(&[("b", false), ("c", true), ("d", true)]))
    )
    .await
    .unwrap();
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    // A member put before kept ones renumbers them.
    let first = members(&[("a", true), ("b", false), ("c", true), ("d", true)]);
    w!(store, set_namespace_members("ns", &first))
        .await
        .unwrap();
    let order: Vec<String> = raw(&store).await.into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(order, ["a", "b", "c", "d"]);
    // A new order renumbers.
    w!(
        store,
        set_namespace_members("ns", &members(&[("d", true), ("b", true), ("c", true)]))
    )
    .await
    .unwrap();
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    let got: Vec<(&str, bool)> = ns
        .servers
        .iter()
        .map(|m| (m.server_name.as_str(), m.active))
        .collect();
    assert_eq!(got, [("d", true), ("b", true), ("c", true)]);
    // b's tool rule survived: membership was never dropped and re-added.
    assert_eq!(ns.tools.len(), 1);
    assert_eq!(ns.tools[0].server_name, "b");
    // Unknown servers are refused and change nothing.
    assert!(matches!(
        w!(
            store,
            set_namespace_members("ns", &members(&[("ghost", true)]))
        )
        .await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
    assert_eq!(
        r!(store, get_namespace("ns"))
            .await
            .unwrap()
            .unwrap()
            .servers
            .len(),
        3
    );
}
