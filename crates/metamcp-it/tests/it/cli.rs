//! The CLI: clear one-line errors, idempotent import, export without secrets, key format,
//! and secrets never stored in clear.

use metamcp_it::{Env, fixture_stdio};
use serde_json::json;

#[test]
fn errors_are_one_line_and_non_zero() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["namespace", "create", "ns", "--server", "ghost"],
            "ghost",
        ),
        (
            vec!["endpoint", "create", "ep", "--namespace", "ghost"],
            "ghost",
        ),
        (vec!["server", "remove", "ghost"], "ghost"),
        (vec!["key", "revoke", "ghost"], "ghost"),
        (vec!["logs", "ghost"], "ghost"),
        (
            vec!["namespace", "create", "bad name", "--server", "alpha"],
            "bad name",
        ),
    ];
    for (args, needle) in cases {
        let o = env.cli(&args);
        assert!(!o.ok, "{args:?} succeeded");
        assert_eq!(o.stderr.trim().lines().count(), 1, "{args:?}: {}", o.stderr);
        assert!(
            o.stderr.starts_with("error: ") && o.stderr.contains(needle),
            "{args:?}: {}",
            o.stderr
        );
    }
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    let dup = env.cli(&["namespace", "create", "ns", "--server", "alpha"]);
    assert!(!dup.ok && dup.stderr.contains("ns"), "{}", dup.stderr);
    env.key("k");
    let dup = env.cli(&["key", "create", "k"]);
    assert!(!dup.ok, "duplicate key name accepted");

    let bad = env.dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"mcpServers\": {\n    \"x\": {\"command\": \"a\",}\n  }\n}",
    )
    .unwrap();
    let o = env.cli(&["import", bad.to_str().unwrap()]);
    assert!(!o.ok);
    assert!(
        o.stderr.contains("line 3") && o.stderr.contains("column"),
        "{}",
        o.stderr
    );
}

#[test]
fn import_is_idempotent_and_export_hides_secrets() {
    let env = Env::new();
    let mut spec = fixture_stdio("alpha", &[]);
    spec["env"] = json!({"TOKEN": "tok-secret-9c1"});
    let servers = json!({
        "alpha": spec,
        "remote": {"type": "http", "url": "http://127.0.0.1:9/mcp", "bearerToken": "bearer-secret-77", "headers": {"X-Key": "hdr-secret-55"}},
        "legacy": {"type": "sse", "url": "http://127.0.0.1:9/sse"},
    });
    let first = env.import(servers.clone());
    assert!(first.contains("3 created"), "{first}");
    let second = env.import(servers);
    assert!(second.contains("3 unchanged"), "{second}");

    let out = env.cli_ok(&["export"]);
    for secret in ["tok-secret-9c1", "bearer-secret-77", "hdr-secret-55"] {
        assert!(!out.contains(secret), "export leaked {secret}");
    }
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["mcpServers"]["remote"]["type"], "streamable_http");
    assert_eq!(v["mcpServers"]["legacy"]["type"], "sse");
    let full = env.cli_ok(&["export", "--include-secrets"]);
    assert!(
        full.contains("tok-secret-9c1")
            && full.contains("bearer-secret-77")
            && full.contains("hdr-secret-55")
    );

    // Nothing secret is stored in clear: not in the database file, not in its WAL.
    for entry in std::fs::read_dir(env.data_dir()).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["tok-secret-9c1", "bearer-secret-77", "hdr-secret-55"] {
            assert!(
                !text.contains(secret),
                "{} holds {secret} in clear",
                entry.path().display()
            );
        }
    }
    let list = env.cli_ok(&["server", "list"]);
    assert!(
        list.contains("alpha") && list.contains("TOKEN") && !list.contains("tok-secret-9c1"),
        "{list}"
    );
}

#[test]
fn keys_are_printed_once_and_stored_hashed() {
    let env = Env::new();
    let out = env.cli_ok(&["key", "create", "laptop"]);
    let key = out.lines().last().unwrap().trim();
    assert!(key.starts_with("sk_mt_") && key.len() == 70, "{key}");
    assert!(key[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
    let other = env.key("phone");
    assert_ne!(key, other);
    let list = env.cli_ok(&["key", "list"]);
    assert!(list.contains("laptop") && !list.contains(key), "{list}");
    for entry in std::fs::read_dir(env.data_dir()).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&key[6..]),
            "{} holds the key",
            entry.path().display()
        );
    }
    env.cli_ok(&["key", "revoke", "laptop"]);
    assert!(
        env.cli_ok(&["key", "list"])
            .lines()
            .any(|l| l.starts_with("laptop") && l.contains("revoked"))
    );
}
