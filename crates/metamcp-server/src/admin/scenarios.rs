//! The service layer against real databases, each scenario once on SQLite and once on
//! PostgreSQL (`metamcp_store::testing`): `apply` is one transaction checked by the same rules
//! as the CLI and the admin API.

use metamcp_core::ServerSpec;
use metamcp_core::declare::{Format, parse, render};
use metamcp_store::testing::Ctx;
use metamcp_store::{DiscoveredTool, Store};

use super::declare::{self, Declared};
use super::{Actor, AdminError, ErrorClass, namespaces, run, servers, tools};

metamcp_store::both_backends!(
    a_refused_apply_changes_nothing,
    apply_refuses_a_rename_exactly_like_the_cli,
    apply_changes_members_and_prefix_as_one,
    references_to_gateway_secrets_are_refused,
    url_credentials_are_kept_but_never_shown,
);

const ME: Actor = Actor::LocalSuperuser;

fn stdio(name: &str) -> ServerSpec {
    let doc = format!(r#"{{"mcpServers":{{"{name}":{{"command":"fixture","args":["{name}"]}}}}}}"#);
    metamcp_core::spec::parse_import(&doc)
        .ok()
        .and_then(|mut v| v.pop())
        .unwrap_or_else(|| panic!("spec {name}"))
}

fn tool(name: &str) -> DiscoveredTool {
    DiscoveredTool {
        name: name.into(),
        title: None,
        description: None,
        input_schema: serde_json::json!({"type": "object"}),
        annotations: None,
    }
}

/// Servers `alpha` and `beta`, both with tools `echo` and `add` (as a gateway records them)
/// and `beta` also `extra`; namespace `main` holds both, prefixed.
async fn seed(store: &Store) {
    run(store, &ME, async |cx| {
        servers::import(cx, &[stdio("alpha"), stdio("beta")]).await?;
        namespaces::create(
            cx,
            namespaces::NewNamespace {
                name: "main".into(),
                servers: vec!["alpha".into(), "beta".into()],
                inactive: Vec::new(),
                description: None,
                prefix: metamcp_core::mangle::PrefixMode::Always,
                new_tools_enabled: None,
                max_name_length: None,
                owner: None,
            },
        )
        .await?;
        Ok(())
    })
    .await
    .unwrap();
    let ids = run(store, &ME, async |cx| {
        let a = cx.tx.get_server("alpha").await?.map(|r| r.id);
        let b = cx.tx.get_server("beta").await?.map(|r| r.id);
        Ok((a.unwrap_or_default(), b.unwrap_or_default()))
    })
    .await
    .unwrap();
    store
        .sync_tools(&ids.0, &[tool("echo"), tool("add")])
        .await
        .unwrap();
    store
        .sync_tools(&ids.1, &[tool("echo"), tool("add"), tool("extra")])
        .await
        .unwrap();
}

/// The whole configuration as `export --full --include-secrets` writes it.
async fn export(store: &Store) -> String {
    let d = super::read(store, &ME, async |cx| declare::current(cx, true).await)
        .await
        .unwrap();
    render(&d, Format::Toml).unwrap()
}

async fn apply(store: &Store, text: &str) -> Result<Vec<declare::Change>, AdminError> {
    let desired: Declared = parse(text, Format::Toml).unwrap();
    run(store, &ME, async |cx| {
        declare::apply(cx, &desired, false).await
    })
    .await
}

/// Everything the file says after a valid server change is refused at a namespace whose
/// names clash without prefixes: nothing of it is written, the version does not move.
async fn a_refused_apply_changes_nothing(ctx: Ctx) {
    let store = ctx.open().await;
    seed(&store).await;
    let before = export(&store).await;
    let version = store.config_version().await.unwrap();
    let file = r#"
[settings]
MCP_TIMEOUT = "12345"

[servers.alpha]
command = "fixture"
args = ["alpha", "--changed"]

[servers.gamma]
command = "fixture"

[namespaces.main]
servers = ["alpha", "gamma"]

[namespaces.bare]
servers = ["alpha", "beta"]
prefix = "never"

[endpoints.bare]
namespace = "bare"
"#;
    let err = apply(&store, file).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("namespace bare: without prefixes these tool names clash")
            && msg.contains("add (alpha, beta)")
            && msg.contains("echo (alpha, beta)"),
        "{msg}"
    );
    assert_eq!(
        export(&store).await,
        before,
        "a refused apply wrote something"
    );
    assert_eq!(store.config_version().await.unwrap(), version);

    // The dry run (rehearsal) reports the same refusal; with `conditional` the same file is
    // fine, and a dry run of it still writes nothing.
    let desired = parse(file, Format::Toml).unwrap();
    let err = super::rehearse(&store, &ME, async |cx| {
        declare::apply(cx, &desired, false).await
    })
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), msg);
    let fixed = file.replace("prefix = \"never\"", "prefix = \"conditional\"");
    let desired = parse(&fixed, Format::Toml).unwrap();
    let changes = super::rehearse(&store, &ME, async |cx| {
        declare::apply(cx, &desired, false).await
    })
    .await
    .unwrap();
    assert_eq!(changes.len(), 6, "{changes:?}");
    assert_eq!(export(&store).await, before);
    apply(&store, &fixed).await.unwrap();
    assert_eq!(
        store.config_version().await.unwrap(),
        version + 1,
        "one bump"
    );
    let after = export(&store).await;
    assert!(
        after.contains("[namespaces.bare]") && after.contains("\"--changed\""),
        "{after}"
    );
}

/// A rename onto another tool's name is refused by `apply` with the very message the CLI's
/// `tool override` gets, and changes nothing.
async fn apply_refuses_a_rename_exactly_like_the_cli(ctx: Ctx) {
    let store = ctx.open().await;
    seed(&store).await;
    let before = export(&store).await;
    let cli = run(&store, &ME, async |cx| {
        let patch = tools::OverridePatch {
            name: Some("add".into()),
            ..tools::OverridePatch::default()
        };
        tools::override_tool(cx, "main", "beta__echo", patch).await
    })
    .await
    .unwrap_err();
    assert_eq!(cli.class(), ErrorClass::Conflict);
    let file = r#"
[servers.alpha]
command = "fixture"
args = ["alpha"]

[servers.beta]
command = "fixture"
args = ["beta"]

[namespaces.main]
servers = ["alpha", "beta"]

[namespaces.main.tools.beta__echo]
name = "add"
"#;
    let applied = apply(&store, file).await.unwrap_err();
    assert_eq!(applied.class(), ErrorClass::Conflict);
    assert_eq!(applied.to_string(), format!("namespace main: {cli}"));
    assert!(cli.to_string().contains("beta__add"), "{cli}");
    assert_eq!(export(&store).await, before);
    // A rename onto a free name goes through both ways.
    apply(&store, &file.replace("name = \"add\"", "name = \"say\""))
        .await
        .unwrap();
    assert!(export(&store).await.contains("name = \"say\""));
}

/// Members and prefix mode change together, checked once on the result: going from
/// `never` with one server to `always` with two clashing ones is fine (an order of two
/// separate steps would have refused it), the reverse is refused; memberships change by
/// difference, so a kept member's tool rules stay.
async fn apply_changes_members_and_prefix_as_one(ctx: Ctx) {
    let store = ctx.open().await;
    seed(&store).await;
    let file = |servers: &str, prefix: &str| {
        format!(
            "[servers.alpha]\ncommand = \"fixture\"\nargs = [\"alpha\"]\n\
             [servers.beta]\ncommand = \"fixture\"\nargs = [\"beta\"]\n\
             [namespaces.solo]\nservers = {servers}\nprefix = \"{prefix}\"\n\
             [namespaces.solo.tools.beta__extra]\nenabled = false\n"
        )
    };
    apply(&store, &file("[\"beta\"]", "never")).await.unwrap();
    apply(&store, &file("[\"alpha\", \"beta\"]", "always"))
        .await
        .unwrap();
    let ns = super::read(&store, &ME, async |cx| namespaces::get(cx, "solo").await)
        .await
        .unwrap();
    let members: Vec<&str> = ns.servers.iter().map(|m| m.server.as_str()).collect();
    assert_eq!(members, ["alpha", "beta"]);
    assert_eq!(ns.prefix, "always");
    let err = apply(&store, &file("[\"beta\", \"alpha\"]", "never"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    // Back to beta alone, unprefixed: allowed, and beta's rule survived every step.
    apply(&store, &file("[\"beta\"]", "never")).await.unwrap();
    let t = super::read(&store, &ME, async |cx| tools::list(cx, "solo").await)
        .await
        .unwrap();
    let extra = t.tools.iter().find(|v| v.canonical == "beta__extra");
    assert!(
        extra.is_some_and(|v| !v.enabled && v.explicit),
        "{:?}",
        t.tools
    );
}

fn import_doc(doc: &str) -> Vec<ServerSpec> {
    servers::parse_import(doc).unwrap()
}

/// `${NAME}` may not name the gateway's own secrets, wherever it is written and however it
/// arrives (import, apply); other references are fine.
async fn references_to_gateway_secrets_are_refused(ctx: Ctx) {
    let store = ctx.open().await;
    for doc in [
        r#"{"mcpServers":{"s":{"command":"x","env":{"K":"${METAMCP_SECRET_KEY}"}}}}"#,
        r#"{"mcpServers":{"s":{"url":"https://h/m","headers":{"H":"${DATABASE_URL}"}}}}"#,
        r#"{"mcpServers":{"s":{"url":"https://h/m","bearerToken":"${oidc_client_secret}"}}}"#,
        r#"{"mcpServers":{"s":{"url":"https://h/m?region=${PGPASSWORD}"}}}"#,
    ] {
        let specs = import_doc(doc);
        let err = run(&store, &ME, async |cx| servers::import(cx, &specs).await)
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Invalid, "{doc}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains("secret of the gateway itself")
                && msg.contains("METAMCP_*")
                && !msg.contains('\n'),
            "{msg}"
        );
    }
    let err = apply(
        &store,
        "[servers.s]\ncommand = \"x\"\nenv = { T = \"${BOOTSTRAP_ADMIN_TOKEN}\" }\n",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("${BOOTSTRAP_ADMIN_TOKEN}"),
        "{err}"
    );
    assert!(
        export(&store).await.trim().is_empty(),
        "something was stored"
    );
    let fine = import_doc(r#"{"mcpServers":{"s":{"command":"x","env":{"K":"${GITHUB_TOKEN}"}}}}"#);
    run(&store, &ME, async |cx| servers::import(cx, &fine).await)
        .await
        .unwrap();
}

/// A URL's credentials are kept whole for the connection, shown redacted by every view and
/// export without secrets, and an export applied back keeps them.
async fn url_credentials_are_kept_but_never_shown(ctx: Ctx) {
    let store = ctx.open().await;
    let full = "https://me:pw-123@h.example/mcp?api_key=key-456&region=eu";
    let specs = import_doc(&format!(r#"{{"mcpServers":{{"r":{{"url":"{full}"}}}}}}"#));
    run(&store, &ME, async |cx| servers::import(cx, &specs).await)
        .await
        .unwrap();
    let view = super::read(&store, &ME, async |cx| servers::get(cx, "r").await)
        .await
        .unwrap();
    assert_eq!(
        view.target,
        "https://<redacted>@h.example/mcp?api_key=<redacted>&region=eu"
    );
    let (closed, open) = super::read(&store, &ME, async |cx| {
        Ok((
            servers::export(cx, false).await?,
            servers::export(cx, true).await?,
        ))
    })
    .await
    .unwrap();
    assert!(!closed.to_string().contains("pw-123") && !closed.to_string().contains("key-456"));
    assert_eq!(open["mcpServers"]["r"]["url"], full);
    let exported = export_without_secrets(&store).await;
    assert!(exported.contains("https://<redacted>@h.example/mcp?api_key=<redacted>&region=eu"));
    assert_eq!(apply(&store, &exported).await.unwrap(), []);
    let stored = super::read(&store, &ME, async |cx| Ok(cx.tx.get_server("r").await?))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.spec, specs[0]);
}

async fn export_without_secrets(store: &Store) -> String {
    let d = super::read(store, &ME, async |cx| declare::current(cx, false).await)
        .await
        .unwrap();
    render(&d, Format::Toml).unwrap()
}
