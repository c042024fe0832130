//! Accounts against the real gateway: the first admin (loopback or setup token), members,
//! browser sessions and their end (sign-out, password change, disabled user), CSRF, the
//! sign-in throttle, the `DISABLE_*` switches, the pages, `metamcp user …` and
//! `/api/v1/users` — on SQLite and on PostgreSQL.

use metamcp_it::browser::Browser;
use metamcp_it::{Env, Gateway};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

async fn fresh(env: &Env) -> (Gateway, Browser) {
    let gw = env.serve().await;
    let b = Browser::new(&gw.base);
    (gw, b)
}

#[tokio::test]
async fn first_local_sign_up_is_admin_later_ones_members_sqlite() {
    first_local_sign_up_is_admin_later_ones_members(Env::new()).await;
}

#[tokio::test]
async fn first_local_sign_up_is_admin_later_ones_members_postgres() {
    if let Some(env) = Env::new_pg().await {
        first_local_sign_up_is_admin_later_ones_members(env).await;
    }
}

async fn first_local_sign_up_is_admin_later_ones_members(env: Env) {
    let (gw, mut admin) = fresh(&env).await;
    assert!(
        gw.setup_token().is_some(),
        "a fresh instance prints a setup token"
    );
    let a = admin.sign_up("Admin@Example.com", PW).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["user"]["role"], "admin");
    assert_eq!(
        a.json["user"]["email"], "admin@example.com",
        "emails are lower-cased"
    );
    let cookie = a.headers["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "APP_URL is http here: {cookie}");
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    assert_eq!(token.len(), 43, "256 random bits, base64url");
    assert_eq!(admin.who().await.as_deref(), Some("admin@example.com"));

    let mut member = Browser::new(&gw.base);
    let m = member.sign_up("member@example.com", PW).await;
    assert_eq!(m.status, 200, "{}", m.text);
    assert_eq!(m.json["user"]["role"], "member");
    let dup = Browser::new(&gw.base)
        .sign_up("MEMBER@example.com", PW)
        .await;
    assert_eq!(dup.status, 409, "{}", dup.text);

    // The admin API with a session: admins manage users, members may not.
    let list = admin.get("/api/v1/users").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.json.as_array().unwrap().len(), 2);
    assert!(!list.text.contains("argon2"), "never a password hash");
    assert_eq!(member.get("/api/v1/users").await.status, 403);
    assert_eq!(
        member.get("/api/v1/servers").await.status,
        200,
        "members may read"
    );
    let c = member
        .post("/api/v1/keys", json!({ "name": "mine", "admin": true }))
        .await;
    assert_eq!(c.status, 403, "{}", c.text);

    // Changes need the CSRF token, from a page of this gateway.
    let body = json!({ "email": "made@example.com", "password": PW });
    let no_csrf = admin
        .send(
            "POST",
            "/api/v1/users",
            Some(("application/json", body.to_string())),
            false,
        )
        .await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.text);
    assert_eq!(no_csrf.json["error"], "csrf_token_invalid");
    let mut evil = admin.clone();
    evil.origin = Some("http://evil.example".into());
    assert_eq!(evil.post("/api/v1/users", body.clone()).await.status, 403);
    let mut other_session = admin.clone();
    other_session.csrf = member.csrf.clone();
    assert_eq!(
        other_session
            .post("/api/v1/users", body.clone())
            .await
            .status,
        403,
        "another session's CSRF token"
    );
    let made = admin.post("/api/v1/users", body).await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.json["role"], "member");

    // The last admin cannot be demoted through the API; the CLI can always repair.
    let demote = admin
        .json(
            "PATCH",
            "/api/v1/users/admin@example.com",
            json!({ "role": "member" }),
        )
        .await;
    assert_eq!(demote.status, 422, "{}", demote.text);
    // Members become admins, admins manage.
    let promote = admin
        .json(
            "PATCH",
            "/api/v1/users/member@example.com",
            json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(promote.status, 200, "{}", promote.text);
    assert_eq!(
        member.get("/api/v1/users").await.status,
        200,
        "role applies at once"
    );
}

#[tokio::test]
async fn first_sign_up_from_elsewhere_needs_the_setup_token() {
    let env = Env::new();
    let (gw, _) = fresh(&env).await;
    let token = gw.setup_token().expect("setup token");
    let mut remote = Browser::new(&gw.base);
    // A forwarded request is not local, whatever its TCP peer.
    remote
        .headers
        .push(("x-forwarded-for".into(), "203.0.113.9".into()));
    let page = remote.get("/register").await;
    assert!(page.text.contains("name=\"setupToken\""), "{}", page.text);
    let refused = remote.sign_up("first@example.com", PW).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.json["message"]
            .as_str()
            .unwrap()
            .contains("setup token")
    );
    let wrong = remote
        .post(
            "/api/auth/sign-up/email",
            json!({ "email": "first@example.com", "password": PW, "setupToken": "nope" }),
        )
        .await;
    assert_eq!(wrong.status, 403);
    let ok = remote
        .post(
            "/api/auth/sign-up/email",
            json!({ "email": "first@example.com", "password": PW, "setupToken": token }),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json["user"]["role"], "admin");
    // Spent: the next account from anywhere is a member, and the token is void.
    let mut next = Browser::new(&gw.base);
    next.headers
        .push(("x-forwarded-for".into(), "203.0.113.10".into()));
    let n = next
        .post(
            "/api/auth/sign-up/email",
            json!({ "email": "second@example.com", "password": PW, "setupToken": token }),
        )
        .await;
    assert_eq!(n.json["user"]["role"], "member", "{}", n.text);
    drop(gw);
    let again = env.serve().await;
    assert!(
        again.setup_token().is_none(),
        "no token once an admin exists"
    );
}

#[tokio::test]
async fn sign_in_failures_are_vague_throttled_and_never_lock() {
    let env = Env::new();
    env.cli_stdin(
        &["user", "create", "ada@example.com", "--password-stdin"],
        &format!("{PW}\n"),
    );
    let (gw, _) = fresh(&env).await;
    let mut b = Browser::new(&gw.base);
    let unknown = b.sign_in("nobody@example.com", "whatever-pass").await;
    let wrong = b.sign_in("ada@example.com", "wrong password").await;
    assert_eq!((unknown.status, wrong.status), (401, 401));
    assert_eq!(
        unknown.json, wrong.json,
        "the answer never tells whether the email exists"
    );
    // Five failures per account and per client are free; beyond that a delay starts (this
    // client has failed six times after these four).
    for _ in 0..4 {
        assert_eq!(
            b.sign_in("ada@example.com", "wrong password").await.status,
            401
        );
    }
    let slowed = b.sign_in("ada@example.com", PW).await;
    assert_eq!(slowed.status, 429, "{}", slowed.text);
    let wait: u64 = slowed.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait));
    // Delayed, not locked: after the wait the right password works.
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let ok = b.sign_in("ada@example.com", PW).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(b.who().await.as_deref(), Some("ada@example.com"));
}

#[tokio::test]
async fn sessions_end_on_sign_out_password_change_and_disable() {
    let env = Env::new();
    let (gw, mut a) = fresh(&env).await;
    assert_eq!(a.sign_up("ada@example.com", PW).await.status, 200);
    let mut a2 = Browser::new(&gw.base);
    assert_eq!(a2.sign_in("ada@example.com", PW).await.status, 200);
    assert_ne!(a.cookie, a2.cookie, "every sign-in gets its own session");

    // A forged cookie is no session.
    let mut forged = Browser::new(&gw.base);
    forged.cookie = Some(format!("metamcp_session={}", "A".repeat(43)));
    assert_eq!(forged.who().await, None);
    assert_eq!(forged.get("/api/v1/users").await.status, 401);

    // Sign-out ends one session, and needs its CSRF token.
    let stale = a.clone();
    let no_csrf = a
        .send(
            "POST",
            "/api/auth/sign-out",
            Some(("application/json", "{}".into())),
            false,
        )
        .await;
    assert_eq!(no_csrf.status, 403);
    let out = a.post("/api/auth/sign-out", json!({})).await;
    assert_eq!(out.status, 200, "{}", out.text);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(stale.clone().who().await, None, "the old cookie is dead");
    assert_eq!(a2.who().await.as_deref(), Some("ada@example.com"));

    // A password change ends every session and signs this browser in again.
    let mut a3 = Browser::new(&gw.base);
    assert_eq!(a3.sign_in("ada@example.com", PW).await.status, 200);
    let ch = a2
        .post(
            "/api/auth/change-password",
            json!({ "currentPassword": PW, "newPassword": "a brand new password" }),
        )
        .await;
    assert_eq!(ch.status, 200, "{}", ch.text);
    assert_eq!(a3.who().await, None, "other sessions ended");
    assert_eq!(a2.who().await.as_deref(), Some("ada@example.com"));
    assert_eq!(a3.sign_in("ada@example.com", PW).await.status, 401);

    // The CLI: a new password ends sessions; disabling ends them and refuses sign-in.
    let out = env.cli_stdin(
        &[
            "user",
            "set-password",
            "ada@example.com",
            "--password-stdin",
        ],
        "third password here\n",
    );
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(a2.who().await, None);
    assert_eq!(
        a2.sign_in("ada@example.com", "third password here")
            .await
            .status,
        200
    );
    env.cli_ok(&["user", "disable", "ada@example.com"]);
    assert_eq!(a2.who().await, None, "disabled: sessions end at once");
    let d = a2.sign_in("ada@example.com", "third password here").await;
    assert_eq!(d.status, 403, "{}", d.text);
    env.cli_ok(&["user", "enable", "ada@example.com"]);
    assert_eq!(
        a2.sign_in("ada@example.com", "third password here")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn signup_switches_and_password_recovery() {
    let env = Env::new();
    env.cli_stdin(
        &[
            "user",
            "create",
            "root@example.com",
            "--admin",
            "--password-stdin",
        ],
        &format!("{PW}\n"),
    );
    // An admin from the CLI closes web setup: no token is printed.
    let gw = env.serve_with(&[("DISABLE_BASIC_AUTH", "true")]).await;
    assert!(gw.setup_token().is_none());
    let mut b = Browser::new(&gw.base);
    let a = b.sign_in("root@example.com", PW).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert!(
        a.json["message"]
            .as_str()
            .unwrap()
            .contains("DISABLE_BASIC_AUTH")
    );
    assert_eq!(b.sign_up("new@example.com", PW).await.status, 403);
    let login = b.get("/login").await;
    assert!(
        !login.text.contains("name=\"password\""),
        "no password form"
    );
    drop(gw);

    // DISABLE_SIGNUP as a stored setting: sign-in works, sign-up does not.
    env.cli_ok(&["settings", "set", "DISABLE_SIGNUP", "true"]);
    let gw = env.serve().await;
    let mut b = Browser::new(&gw.base);
    let s = b.sign_up("new@example.com", PW).await;
    assert_eq!(s.status, 403, "{}", s.text);
    assert!(
        s.json["message"]
            .as_str()
            .unwrap()
            .contains("DISABLE_SIGNUP")
    );
    let page = b.get("/register").await;
    assert_eq!(page.status, 403);
    assert!(
        page.text.contains("<code>DISABLE_SIGNUP</code>"),
        "{}",
        page.text
    );
    assert_eq!(b.sign_in("root@example.com", PW).await.status, 200);
}

#[tokio::test]
async fn a_bad_switch_value_names_its_variable() {
    let env = Env::new();
    let mut cmd = std::process::Command::new(metamcp_it::bin("metamcp"));
    cmd.arg("--data-dir")
        .arg(env.data_dir())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DISABLE_SIGNUP", "sometimes")
        .env_remove("DATABASE_URL");
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DISABLE_SIGNUP=\"sometimes\""), "{err}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let env = Env::new();
    let (gw, mut b) = fresh(&env).await;
    let long_email = format!("{}@example.com", "a".repeat(250));
    let cases: Vec<(Value, u16)> = vec![
        (json!({ "email": "not-an-email", "password": PW }), 422),
        (json!({ "email": long_email, "password": PW }), 422),
        (
            json!({ "email": "a@example.com", "password": "short" }),
            422,
        ),
        (
            json!({ "email": "a@example.com", "password": "p".repeat(129) }),
            422,
        ),
        (
            json!({ "email": "a@example.com", "password": PW, "name": "bell\u{7}" }),
            422,
        ),
        (json!({ "email": ["a@example.com"], "password": PW }), 400),
        (json!("just a string"), 400),
    ];
    for (body, status) in cases {
        let a = b.post("/api/auth/sign-up/email", body.clone()).await;
        assert_eq!(a.status, status, "{body}: {}", a.text);
        assert!(a.json["message"].is_string(), "{}", a.text);
    }
    let raw = b
        .send(
            "POST",
            "/api/auth/sign-up/email",
            Some(("application/json", "{\"email\":".into())),
            false,
        )
        .await;
    assert_eq!(raw.status, 400);
    let ct = b
        .send(
            "POST",
            "/api/auth/sign-in/email",
            Some(("text/plain", "x".into())),
            false,
        )
        .await;
    assert_eq!(ct.status, 415);
    // Cross-site sign-in (login CSRF) is refused.
    let mut evil = Browser::new(&gw.base);
    evil.origin = Some("http://evil.example".into());
    assert_eq!(evil.sign_in("a@example.com", PW).await.status, 403);
    assert!(env.cli_ok(&["user", "list"]).contains("no users"));
}

#[tokio::test]
async fn pages_and_forms() {
    let env = Env::new();
    let (_gw, mut b) = fresh(&env).await;
    let login = b.get("/login").await;
    assert_eq!(login.status, 200);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(
        login.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        b.get("/account").await.status,
        303,
        "not signed in → /login"
    );

    let up = b
        .form(
            "/api/auth/sign-up/email",
            &[
                ("email", "ada@example.com"),
                ("password", PW),
                ("name", "<b>Ada</b>"),
            ],
        )
        .await;
    assert_eq!(up.status, 303, "{}", up.text);
    assert_eq!(up.headers["location"], "/account");
    let page = b.get("/account").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("&#60;b&#62;Ada") || page.text.contains("&lt;b&gt;Ada"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("<b>Ada</b>"));
    // The page's sign-out form carries the CSRF token.
    let token = page
        .text
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let out = b
        .form("/api/auth/sign-out", &[("csrf_token", &token)])
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(b.who().await, None);
    // A form sign-in with a foreign return path lands on /account instead.
    let inn = b
        .form(
            "/api/auth/sign-in/email",
            &[
                ("email", "ada@example.com"),
                ("password", PW),
                ("return_to", "//evil.example/x"),
            ],
        )
        .await;
    assert_eq!(inn.status, 303);
    assert_eq!(inn.headers["location"], "/account");
    let bad = b
        .form(
            "/api/auth/sign-in/email",
            &[("email", "ada@example.com"), ("password", "nope nope")],
        )
        .await;
    assert_eq!(bad.status, 401);
    assert!(
        bad.text.contains("invalid email or password"),
        "the page again, with the error"
    );
}

#[tokio::test]
async fn user_cli() {
    let env = Env::new();
    let out = env.cli_ok(&[
        "user",
        "create",
        "ops@example.com",
        "--admin",
        "--name",
        "Ops",
    ]);
    let generated = out.lines().last().unwrap().trim().to_owned();
    assert!(generated.len() >= 20, "{out}");
    let sso = env.cli_ok(&["user", "create", "sso@example.com", "--sso-only"]);
    assert!(!sso.contains("password"), "{sso}");
    let bad = env.cli_stdin(
        &["user", "create", "x@example.com", "--password-stdin"],
        "short\n",
    );
    assert!(
        !bad.ok && bad.stderr.contains("at least 8"),
        "{}",
        bad.stderr
    );
    let list = env.cli_ok(&["user", "list"]);
    assert!(
        list.contains("ops@example.com\tadmin\tOps\tactive\tpassword"),
        "{list}"
    );
    assert!(list.contains("sso@example.com\tmember"), "{list}");
    env.cli_ok(&["user", "set-role", "sso@example.com", "admin"]);
    // The CLI may remove even the last admin of a kind; the API may not (tested above).
    env.cli_ok(&["user", "remove", "sso@example.com"]);
    let gone = env.cli(&["user", "remove", "sso@example.com"]);
    assert!(
        !gone.ok && gone.stderr.contains("no user"),
        "{}",
        gone.stderr
    );
    let gw = env.serve().await;
    let mut b = Browser::new(&gw.base);
    assert_eq!(b.sign_in("ops@example.com", &generated).await.status, 200);
}

/// The configuration version as the database holds it.
async fn config_version(env: &Env) -> i64 {
    use sqlx::Connection;
    let url = env.database_url.as_deref().expect("a PostgreSQL env");
    let mut c = sqlx::postgres::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT value FROM meta WHERE key = 'config_version'")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn sessions_hold_across_replicas_and_end_on_all_at_once() {
    let Some(env) = Env::new_pg().await else {
        return;
    };
    let (one, two) = (env.serve().await, env.serve().await);
    let mut a = Browser::new(&one.base);
    assert_eq!(a.sign_up("ada@example.com", PW).await.status, 200);
    let v = config_version(&env).await;

    // The cookie and its CSRF token work on the other replica.
    let mut on_two = a.clone();
    on_two.base = two.base.clone();
    on_two.origin = Some(two.base.clone());
    assert_eq!(on_two.who().await.as_deref(), Some("ada@example.com"));
    let made = on_two
        .post(
            "/api/v1/users",
            json!({ "email": "bo@example.com", "password": PW }),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let v = v + 1;

    // Sign-ins and sign-outs are not configuration.
    let mut b = Browser::new(&two.base);
    assert_eq!(b.sign_in("bo@example.com", PW).await.status, 200);
    let mut b_on_one = b.clone();
    b_on_one.base = one.base.clone();
    b_on_one.origin = Some(one.base.clone());
    assert_eq!(b_on_one.who().await.as_deref(), Some("bo@example.com"));
    assert_eq!(b.post("/api/auth/sign-out", json!({})).await.status, 200);
    assert_eq!(
        config_version(&env).await,
        v,
        "no version bump for sign-in or sign-out"
    );
    // Signed out on one replica: refused on the other at the next request.
    assert_eq!(b_on_one.who().await, None);

    // Disabled through one replica's API: the user's sessions end everywhere at once.
    let mut again = Browser::new(&one.base);
    assert_eq!(again.sign_in("bo@example.com", PW).await.status, 200);
    let d = a
        .json(
            "PATCH",
            "/api/v1/users/bo@example.com",
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.text);
    let mut again_on_two = again.clone();
    again_on_two.base = two.base.clone();
    assert_eq!(again_on_two.who().await, None);
    assert_eq!(again.who().await, None);
}
