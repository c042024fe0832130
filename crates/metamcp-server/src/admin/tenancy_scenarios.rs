//! Ownership and tenancy in the service layer, on SQLite and PostgreSQL: what members see and
//! may change, composition of private and public objects, members' server refusals, owners in
//! `apply`/`export --full` and `--prune`, and a user's removal.

use metamcp_core::ServerSpec;
use metamcp_core::declare::{Format, parse, render};
use metamcp_core::mangle::PrefixMode;
use metamcp_store::testing::Ctx;
use metamcp_store::{NewUser, Role, Store};

use super::declare::{self, Declared};
use super::{
    Actor, AdminError, ErrorClass, endpoints, keys, logs, namespaces, read, run, servers, settings,
    users,
};

metamcp_store::both_backends!(
    members_see_public_and_their_own_and_change_only_their_own,
    members_servers_are_refused_what_would_reach_the_host,
    owners_travel_through_apply_and_prune_spares_other_users,
);

const ME: Actor = Actor::LocalSuperuser;

fn spec(doc: serde_json::Value) -> ServerSpec {
    metamcp_core::spec::parse_import(&serde_json::json!({ "mcpServers": doc }).to_string())
        .unwrap()
        .pop()
        .unwrap()
}

fn http(name: &str, url: &str) -> ServerSpec {
    spec(serde_json::json!({ name: { "type": "streamable_http", "url": url } }))
}

fn stdio(name: &str) -> ServerSpec {
    spec(serde_json::json!({ name: { "command": "fixture" } }))
}

fn ns(name: &str, servers: &[&str], owner: Option<&str>) -> namespaces::NewNamespace {
    namespaces::NewNamespace {
        name: name.into(),
        servers: servers.iter().map(|s| (*s).to_owned()).collect(),
        inactive: Vec::new(),
        description: None,
        prefix: PrefixMode::Always,
        new_tools_enabled: None,
        max_name_length: None,
        owner: owner.map(str::to_owned),
    }
}

fn ep(name: &str, namespace: &str, owner: Option<&str>) -> endpoints::NewEndpoint {
    endpoints::NewEndpoint {
        name: name.into(),
        namespace: namespace.into(),
        api_key_auth: true,
        owner: owner.map(str::to_owned),
        ..endpoints::NewEndpoint::default()
    }
}

/// Users ada and bob (members), as actors.
async fn members(store: &Store) -> (Actor, Actor) {
    let mut out = Vec::new();
    for email in ["ada@example.com", "bob@example.com"] {
        let u = run(store, &ME, async |cx| {
            Ok(cx
                .tx
                .create_user(&NewUser {
                    email,
                    name: "M",
                    password_hash: None,
                    role: Role::Member,
                })
                .await?)
        })
        .await
        .unwrap();
        out.push(Actor::User {
            id: u.id,
            email: u.email,
            role: Role::Member,
        });
    }
    let bob = out.pop().unwrap();
    (out.pop().unwrap(), bob)
}

fn class<T: std::fmt::Debug>(r: Result<T, AdminError>) -> ErrorClass {
    r.unwrap_err().class()
}

const PUBLIC_URL: &str = "https://93.184.215.14/mcp";

async fn members_see_public_and_their_own_and_change_only_their_own(ctx: Ctx) {
    let store = ctx.open().await;
    let (ada, bob) = members(&store).await;
    run(&store, &ME, async |cx| {
        servers::import(cx, &[http("pub", PUBLIC_URL)]).await?;
        namespaces::create(cx, ns("pub-ns", &["pub"], None)).await?;
        endpoints::create(cx, ep("pub-ep", "pub-ns", None)).await?;
        keys::create(cx, "pub-key", false).await?;
        Ok(())
    })
    .await
    .unwrap();
    // Ada makes her own objects; they are hers without saying so.
    run(&store, &ada, async |cx| {
        servers::import(cx, &[http("ada-s", PUBLIC_URL)]).await?;
        namespaces::create(cx, ns("ada-ns", &["ada-s", "pub"], None)).await?;
        endpoints::create(cx, ep("ada-ep", "ada-ns", None)).await?;
        let k = keys::create(cx, "ada-key", false).await?;
        assert_eq!(k.info.owner.as_deref(), Some("ada@example.com"));
        Ok(())
    })
    .await
    .unwrap();
    let v = read(&store, &ada, async |cx| servers::get(cx, "ada-s").await)
        .await
        .unwrap();
    assert_eq!(v.owner.as_deref(), Some("ada@example.com"));

    // Bob sees the public objects only; Ada's are not there for him.
    let names = read(&store, &bob, async |cx| {
        let s: Vec<String> = servers::list(cx)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let n: Vec<String> = namespaces::list(cx)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let e: Vec<String> = endpoints::list(cx)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let k: Vec<String> = keys::list(cx).await?.into_iter().map(|s| s.name).collect();
        let d = declare::current(cx, false).await?;
        Ok((s, n, e, k, d))
    })
    .await
    .unwrap();
    assert_eq!(names.0, ["pub"]);
    assert_eq!(names.1, ["pub-ns"]);
    assert_eq!(names.2, ["pub-ep"]);
    assert_eq!(names.3, ["pub-key"]);
    assert_eq!(names.4.servers.keys().collect::<Vec<_>>(), ["pub"]);
    for r in [
        class(read(&store, &bob, async |cx| servers::get(cx, "ada-s").await).await),
        class(read(&store, &bob, async |cx| namespaces::get(cx, "ada-ns").await).await),
        class(read(&store, &bob, async |cx| endpoints::get(cx, "ada-ep").await).await),
        class(read(&store, &bob, async |cx| logs::tail(cx, "ada-s", 5).await).await),
        class(run(&store, &bob, async |cx| servers::remove(cx, "ada-s").await).await),
        class(run(&store, &bob, async |cx| servers::reset(cx, "ada-s").await).await),
        class(
            run(&store, &bob, async |cx| {
                namespaces::remove(cx, "ada-ns").await
            })
            .await,
        ),
        class(
            run(&store, &bob, async |cx| {
                endpoints::remove(cx, "ada-ep").await
            })
            .await,
        ),
        class(run(&store, &bob, async |cx| keys::revoke(cx, "ada-key").await).await),
        class(
            run(&store, &bob, async |cx| {
                namespaces::create(cx, ns("bob-ns", &["ada-s"], None)).await
            })
            .await,
        ),
        class(
            run(&store, &bob, async |cx| {
                endpoints::create(cx, ep("bob-ep", "ada-ns", None)).await
            })
            .await,
        ),
        class(
            run(&store, &bob, async |cx| {
                super::tools::list(cx, "ada-ns").await
            })
            .await,
        ),
    ] {
        assert_eq!(r, ErrorClass::NotFound);
    }
    // Taking Ada's server's name is a conflict, not a replacement.
    assert_eq!(
        class(
            run(&store, &bob, async |cx| servers::import(
                cx,
                &[http("ada-s", PUBLIC_URL)]
            )
            .await)
            .await
        ),
        ErrorClass::Conflict
    );
    // Public objects are read-only to members; admin matters are admins'.
    for r in [
        class(run(&store, &bob, async |cx| servers::remove(cx, "pub").await).await),
        class(run(&store, &bob, async |cx| servers::reset(cx, "pub").await).await),
        class(read(&store, &bob, async |cx| logs::tail(cx, "pub", 5).await).await),
        class(
            run(&store, &bob, async |cx| {
                servers::import(cx, &[http("pub", PUBLIC_URL)]).await
            })
            .await,
        ),
        class(
            run(&store, &bob, async |cx| {
                namespaces::remove(cx, "pub-ns").await
            })
            .await,
        ),
        class(
            run(&store, &bob, async |cx| {
                endpoints::remove(cx, "pub-ep").await
            })
            .await,
        ),
        class(run(&store, &bob, async |cx| keys::revoke(cx, "pub-key").await).await),
        class(run(&store, &bob, async |cx| keys::create(cx, "x", true).await).await),
        class(
            run(&store, &bob, async |cx| {
                keys::create_owned(cx, "x", false, Some("ada@example.com")).await
            })
            .await,
        ),
        class(read(&store, &bob, async |cx| settings::list(cx).await).await),
        class(
            run(&store, &bob, async |cx| {
                settings::set(cx, "MCP_TIMEOUT", "5000").await
            })
            .await,
        ),
        class(read(&store, &bob, async |cx| users::list(cx).await).await),
        class(
            run(&store, &bob, async |cx| {
                servers::set_owner(cx, "pub", Some("bob@example.com")).await
            })
            .await,
        ),
    ] {
        assert_eq!(r, ErrorClass::Forbidden);
    }
    // Ada reads her own logs; a private namespace holds hers and public servers only; a
    // public one holds public servers only (even an admin cannot mix them).
    read(&store, &ada, async |cx| logs::tail(cx, "ada-s", 5).await)
        .await
        .unwrap();
    run(&store, &bob, async |cx| {
        servers::import(cx, &[http("bob-s", PUBLIC_URL)]).await
    })
    .await
    .unwrap();
    assert_eq!(
        class(
            run(&store, &ME, async |cx| {
                namespaces::create(
                    cx,
                    ns("mixed", &["ada-s", "bob-s"], Some("ada@example.com")),
                )
                .await
            })
            .await
        ),
        ErrorClass::Invalid
    );
    assert_eq!(
        class(
            run(&store, &ME, async |cx| namespaces::create(
                cx,
                ns("pub2", &["ada-s"], None)
            )
            .await)
            .await
        ),
        ErrorClass::Invalid
    );
    assert_eq!(
        class(
            run(&store, &ME, async |cx| endpoints::create(
                cx,
                ep("pub-ep2", "ada-ns", None)
            )
            .await)
            .await
        ),
        ErrorClass::Invalid
    );
    assert_eq!(
        class(
            run(&store, &ME, async |cx| servers::set_owner(
                cx,
                "pub",
                Some("bob@example.com")
            )
            .await)
            .await
        ),
        ErrorClass::Invalid,
        "pub-ns (public) and ada-ns hold it"
    );
    assert_eq!(
        class(
            run(&store, &ME, async |cx| namespaces::create(
                cx,
                ns("x", &["pub"], Some("nobody@example.com"))
            )
            .await)
            .await
        ),
        ErrorClass::Invalid
    );
    // An admin may make objects for a user; the user then owns them.
    run(&store, &ME, async |cx| {
        namespaces::create(cx, ns("for-bob", &["bob-s"], Some("bob@example.com"))).await
    })
    .await
    .unwrap();
    run(&store, &bob, async |cx| {
        namespaces::remove(cx, "for-bob").await
    })
    .await
    .unwrap();

    // Removing Ada removes what she owns and says so.
    let gone = run(&store, &ME, async |cx| {
        users::remove(cx, "ada@example.com").await
    })
    .await
    .unwrap();
    assert_eq!(gone.servers, ["ada-s"]);
    assert_eq!(gone.namespaces, ["ada-ns"]);
    assert_eq!(gone.endpoints, ["ada-ep"]);
    assert_eq!(gone.api_keys, ["ada-key"]);
}

async fn members_servers_are_refused_what_would_reach_the_host(ctx: Ctx) {
    let store = ctx.open().await;
    let (ada, _) = members(&store).await;
    let try_import = |s: ServerSpec| {
        let store = store.clone();
        let ada = ada.clone();
        async move { run(&store, &ada, async |cx| servers::import(cx, &[s]).await).await }
    };
    assert_eq!(class(try_import(stdio("cmd")).await), ErrorClass::Forbidden);
    for url in [
        "http://127.0.0.1:9/mcp",
        "http://localhost:9/mcp",
        "http://10.0.0.1/mcp",
        "http://169.254.169.254/latest",
        "http://[fd00::1]/mcp",
        "http://100.64.1.1/mcp",
    ] {
        assert_eq!(
            class(try_import(http("net", url)).await),
            ErrorClass::Forbidden,
            "{url}"
        );
    }
    let with_ref = spec(serde_json::json!({ "r": {
        "type": "streamable_http", "url": PUBLIC_URL, "headers": { "X-Token": "${HOME}" }
    }}));
    assert_eq!(
        class(try_import(with_ref.clone()).await),
        ErrorClass::Forbidden
    );
    // Apply goes through the same rules.
    let file = "[servers.cmd]\ncommand = \"fixture\"\n";
    let desired: Declared = parse(file, Format::Toml).unwrap();
    let e = run(&store, &ada, async |cx| {
        declare::apply(cx, &desired, false).await
    })
    .await
    .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Forbidden, "{e}");
    // The admin allows both; references stay refused to members.
    run(&store, &ME, async |cx| {
        settings::set(cx, "MEMBERS_MAY_ADD_STDIO", "true").await?;
        settings::set(cx, "MEMBERS_MAY_USE_PRIVATE_NETWORKS", "true").await
    })
    .await
    .unwrap();
    try_import(stdio("cmd")).await.unwrap();
    try_import(http("net", "http://127.0.0.1:9/mcp"))
        .await
        .unwrap();
    assert_eq!(class(try_import(with_ref).await), ErrorClass::Forbidden);
    // Admins are bound by none of it.
    run(&store, &ME, async |cx| {
        settings::set(cx, "MEMBERS_MAY_ADD_STDIO", "false").await?;
        servers::import(
            cx,
            &[stdio("admin-cmd"), http("local", "http://127.0.0.1:9/mcp")],
        )
        .await
    })
    .await
    .unwrap();
    // Changing her stdio server is refused again now.
    assert_eq!(
        class(
            run(&store, &ada, async |cx| {
                let patch = servers::ConnectionPatch {
                    cap: Some(2),
                    ..servers::ConnectionPatch::default()
                };
                servers::update(cx, "cmd", patch).await
            })
            .await
        ),
        ErrorClass::Forbidden
    );
}

async fn owners_travel_through_apply_and_prune_spares_other_users(ctx: Ctx) {
    let store = ctx.open().await;
    members(&store).await;
    let file = format!(
        r#"
[servers.pub]
type = "streamable_http"
url = "{PUBLIC_URL}"

[servers.ada-s]
type = "streamable_http"
url = "{PUBLIC_URL}"
owner = "Ada@Example.com"

[servers.bob-s]
type = "streamable_http"
url = "{PUBLIC_URL}"
owner = "bob@example.com"

[namespaces.ada-ns]
servers = ["ada-s", "pub"]
owner = "ada@example.com"

[endpoints.ada-ep]
namespace = "ada-ns"
owner = "ada@example.com"
"#
    );
    let apply = |text: String, prune: bool| {
        let store = store.clone();
        async move {
            let d: Declared = parse(&text, Format::Toml).unwrap();
            run(&store, &ME, async |cx| declare::apply(cx, &d, prune).await).await
        }
    };
    apply(file.clone(), false).await.unwrap();
    let export = read(&store, &ME, async |cx| declare::current(cx, false).await)
        .await
        .unwrap();
    let text = render(&export, Format::Toml).unwrap();
    assert!(text.contains("owner = \"ada@example.com\""), "{text}");
    assert_eq!(export.servers["pub"].owner, None);
    assert!(
        apply(text.clone(), false).await.unwrap().is_empty(),
        "export → apply: no change"
    );

    // An unknown owner is named.
    let e = apply(file.replace("bob@example.com", "carol@example.com"), false)
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Invalid);
    assert!(e.to_string().contains("carol@example.com"), "{e}");

    // Moving a server, its namespace and endpoint to Bob in one file works (checked at the
    // end); making only the server Bob's while Ada's namespace holds it is refused.
    let e = apply(file.replace("Ada@Example.com", "bob@example.com"), false)
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Invalid, "{e}");

    // --prune with a file naming only public objects and Bob's: Ada's stay.
    let only = format!(
        "[servers.pub]\ntype = \"streamable_http\"\nurl = \"{PUBLIC_URL}\"\n\n\
         [servers.bob-s]\ntype = \"streamable_http\"\nurl = \"{PUBLIC_URL}\"\nowner = \"bob@example.com\"\n"
    );
    let changes = apply(only.clone(), true).await.unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    // Without Bob's server, naming Bob elsewhere: his server goes.
    let d: Declared = parse(
        &only.replace("[servers.bob-s]", "[servers.bob-t]"),
        Format::Toml,
    )
    .unwrap();
    let changes = run(&store, &ME, async |cx| declare::apply(cx, &d, true).await)
        .await
        .unwrap();
    let removed: Vec<String> = changes
        .iter()
        .filter(|c| c.op == '-')
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(removed, ["bob-s"], "{changes:?}");
    let left = read(&store, &ME, async |cx| servers::list(cx).await)
        .await
        .unwrap();
    assert!(
        left.iter().any(|s| s.name == "ada-s"),
        "Ada's server was pruned"
    );
}
