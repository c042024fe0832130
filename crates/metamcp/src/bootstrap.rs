//! `BOOTSTRAP_*`: a container that starts fully configured, with MetaMCP's variables — users,
//! API keys, namespaces, endpoints, the registration switches, `ONLY_FIRST_RUN`, `FAIL_HARD`,
//! the password-change warning — plus servers (`BOOTSTRAP_SERVERS`, the import format).
//!
//! Everything is parsed before anything is written: a bad value is one line naming its
//! variable (and entry). Then it is applied as the local superuser through the same service
//! functions as the CLI, in one transaction: all of it or none. With `BOOTSTRAP_FAIL_HARD`
//! a failure stops `serve`; without, it is logged and the gateway starts with the store as
//! it was. Objects that exist are left alone unless their entry says `update` (namespaces,
//! endpoints; default true, as MetaMCP); keys are kept (`BOOTSTRAP_PRESERVE_API_KEYS`). A
//! user whose stored password no longer matches the environment's is not changed (it was
//! probably changed on purpose) but warned about, unless `BOOTSTRAP_RECREATE_USER` resets
//! it. Passwords are never logged; new API keys are printed once on stdout, as `metamcp key
//! create` does, never to the log.

use std::fmt::Write as _;

use metamcp_core::ServerSpec;
use metamcp_core::mangle::PrefixMode;
use metamcp_server::account::password::{self, Hasher};
use metamcp_server::account::{normalize_email, normalize_name};
use metamcp_server::admin::{
    self, Actor, AdminError, endpoints as ep_admin, keys as key_admin, namespaces as ns_admin,
    servers as srv_admin, settings as set_admin, users,
};
use metamcp_store::{Role, Store};
use serde::Deserialize;

/// The `meta` marker of a bootstrap that ran (`BOOTSTRAP_ONLY_FIRST_RUN`).
const DONE_MARKER: &str = "bootstrap_complete";

/// A bad `BOOTSTRAP_*` value: the variable and why.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct BootstrapError {
    pub variable: &'static str,
    pub message: String,
}

fn bad(variable: &'static str, message: impl Into<String>) -> BootstrapError {
    BootstrapError {
        variable,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    email: String,
    password: String,
    name: Option<String>,
    /// `admin` or `member` (ours); `is_admin`/`admin: true` also accepted.
    role: Option<String>,
    #[serde(alias = "is_admin")]
    admin: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    #[serde(default)]
    admin: bool,
    is_public: Option<bool>,
    #[serde(alias = "owner")]
    user_email: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceEntry {
    name: String,
    description: Option<String>,
    #[serde(default)]
    servers: Vec<String>,
    is_public: Option<bool>,
    #[serde(alias = "owner")]
    user_email: Option<String>,
    #[serde(default = "yes")]
    update: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointEntry {
    name: String,
    description: Option<String>,
    namespace: Option<String>,
    #[serde(default = "yes")]
    enable_auth: bool,
    #[serde(default)]
    enable_auth_query: bool,
    #[serde(default)]
    enable_auth_oauth: bool,
    is_public: Option<bool>,
    #[serde(alias = "owner")]
    user_email: Option<String>,
    #[serde(default = "yes")]
    update: bool,
}

fn yes() -> bool {
    true
}

/// A user to make sure of, validated.
#[derive(Debug, Clone)]
struct User {
    email: String,
    name: String,
    password: String,
    role: Option<Role>,
}

/// What the environment asks for.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    fail_hard: bool,
    only_first_run: bool,
    warn_password_change: bool,
    recreate_user: bool,
    delete_other_users: bool,
    preserve_api_keys: bool,
    disable_signup: Option<bool>,
    disable_sso_signup: Option<bool>,
    users: Vec<User>,
    keys: Vec<KeyEntry>,
    namespaces: Vec<NamespaceEntry>,
    endpoints: Vec<EndpointEntry>,
    servers: Vec<ServerSpec>,
}

impl Plan {
    /// Whether a failure must stop `serve`.
    pub fn fail_hard(&self) -> bool {
        self.fail_hard
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.keys.is_empty()
            && self.namespaces.is_empty()
            && self.endpoints.is_empty()
            && self.servers.is_empty()
            && self.disable_signup.is_none()
            && self.disable_sso_signup.is_none()
    }
}

fn flag(
    get: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, BootstrapError> {
    match get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        None => Ok(default),
        Some(v) => metamcp_server::settings::parse_bool(&v)
            .ok_or_else(|| bad(name, format!("{v:?} is not true or false"))),
    }
}

fn json_list<T: serde::de::DeserializeOwned>(
    get: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Vec<T>, BootstrapError> {
    match get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_str::<Vec<T>>(&v).map_err(|e| {
            bad(
                name,
                format!("not a JSON list of entries as documented: {e}"),
            )
        }),
    }
}

/// Reads `BOOTSTRAP_*`; `None` when bootstrapping is off or asks for nothing.
pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Plan>, BootstrapError> {
    if !flag(get, "BOOTSTRAP_ENABLE", true)? {
        return Ok(None);
    }
    let mut plan = Plan {
        fail_hard: flag(get, "BOOTSTRAP_FAIL_HARD", false)?,
        only_first_run: flag(get, "BOOTSTRAP_ONLY_FIRST_RUN", false)?,
        warn_password_change: flag(get, "BOOTSTRAP_WARN_PASSWORD_CHANGE", true)?,
        recreate_user: flag(get, "BOOTSTRAP_RECREATE_USER", false)?,
        delete_other_users: flag(get, "BOOTSTRAP_DELETE_OTHER_USERS", false)?,
        preserve_api_keys: flag(get, "BOOTSTRAP_PRESERVE_API_KEYS", true)?,
        ..Plan::default()
    };
    let opt_flag = |name: &'static str| -> Result<Option<bool>, BootstrapError> {
        if get(name).is_some_and(|v| !v.trim().is_empty()) {
            flag(get, name, false).map(Some)
        } else {
            Ok(None)
        }
    };
    plan.disable_signup = opt_flag("BOOTSTRAP_DISABLE_REGISTRATION_UI")?;
    plan.disable_sso_signup = opt_flag("BOOTSTRAP_DISABLE_REGISTRATION_SSO")?;

    let mut entries: Vec<(UserEntry, &'static str, usize)> =
        json_list::<UserEntry>(get, "BOOTSTRAP_USERS")?
            .into_iter()
            .enumerate()
            .map(|(i, u)| (u, "BOOTSTRAP_USERS", i + 1))
            .collect();
    if let Some(email) = get("BOOTSTRAP_USER_EMAIL").filter(|v| !v.trim().is_empty()) {
        let password = get("BOOTSTRAP_USER_PASSWORD")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                bad(
                    "BOOTSTRAP_USER_PASSWORD",
                    "must be set with BOOTSTRAP_USER_EMAIL",
                )
            })?;
        entries.push((
            UserEntry {
                email,
                password,
                name: Some(get("BOOTSTRAP_USER_NAME").unwrap_or_else(|| "Administrator".into())),
                role: None,
                admin: Some(true),
            },
            "BOOTSTRAP_USER_EMAIL",
            1,
        ));
    }
    for (u, var, n) in entries {
        let at = |m: String| bad(var, format!("entry {n}: {m}"));
        let email = normalize_email(&u.email).map_err(at)?;
        password::check_new(&u.password).map_err(|m| at(format!("{email}: {m}")))?;
        let name = normalize_name(u.name.as_deref(), email.split('@').next().unwrap_or("user"))
            .map_err(at)?;
        let role = match (u.role.as_deref(), u.admin) {
            (Some(r), _) => Some(
                Role::parse(r).ok_or_else(|| at(format!("role {r:?} is not admin or member")))?,
            ),
            (None, Some(true)) => Some(Role::Admin),
            (None, Some(false)) => Some(Role::Member),
            (None, None) => None,
        };
        if plan.users.iter().any(|x| x.email == email) {
            return Err(at(format!("{email} is listed twice")));
        }
        plan.users.push(User {
            email,
            name,
            password: u.password,
            role,
        });
    }
    plan.keys = json_list(get, "BOOTSTRAP_API_KEYS")?;
    plan.namespaces = json_list(get, "BOOTSTRAP_NAMESPACES")?;
    plan.endpoints = json_list(get, "BOOTSTRAP_ENDPOINTS")?;
    for (i, e) in plan.endpoints.iter().enumerate() {
        if e.namespace.is_none() {
            return Err(bad(
                "BOOTSTRAP_ENDPOINTS",
                format!("entry {} ({}): namespace is required", i + 1, e.name),
            ));
        }
    }
    check_owners(&mut plan)?;
    if let Some(text) = get("BOOTSTRAP_SERVERS").filter(|v| !v.trim().is_empty()) {
        plan.servers = srv_admin::parse_import(&text).map_err(|e| {
            bad(
                "BOOTSTRAP_SERVERS",
                format!("{e} (expected {{\"mcpServers\": {{…}}}})"),
            )
        })?;
    }
    Ok((!plan.is_empty()).then_some(plan))
}

/// The owner an entry asks for: `user_email` (alias `owner`), or public. `is_public: false`
/// without an email, or `is_public: true` with one, is refused rather than guessed.
fn owner_of(
    var: &'static str,
    n: usize,
    is_public: Option<bool>,
    email: Option<&String>,
) -> Result<Option<String>, BootstrapError> {
    match (is_public, email) {
        (Some(true), Some(_)) => Err(bad(
            var,
            format!("entry {n}: is_public true and user_email contradict each other"),
        )),
        (Some(false), None) => Err(bad(
            var,
            format!("entry {n}: a private object (is_public false) needs user_email, its owner"),
        )),
        (_, Some(e)) => normalize_email(e)
            .map(Some)
            .map_err(|m| bad(var, format!("entry {n}: user_email {m}"))),
        (_, None) => Ok(None),
    }
}

/// Every owner is a valid email, normalised (whether the user exists is checked when
/// applying).
fn check_owners(plan: &mut Plan) -> Result<(), BootstrapError> {
    for (i, k) in plan.keys.iter_mut().enumerate() {
        k.user_email = owner_of(
            "BOOTSTRAP_API_KEYS",
            i + 1,
            k.is_public,
            k.user_email.as_ref(),
        )?;
    }
    for (i, k) in plan.namespaces.iter_mut().enumerate() {
        k.user_email = owner_of(
            "BOOTSTRAP_NAMESPACES",
            i + 1,
            k.is_public,
            k.user_email.as_ref(),
        )?;
    }
    for (i, k) in plan.endpoints.iter_mut().enumerate() {
        k.user_email = owner_of(
            "BOOTSTRAP_ENDPOINTS",
            i + 1,
            k.is_public,
            k.user_email.as_ref(),
        )?;
    }
    Ok(())
}

/// What a bootstrap did, to print.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    /// New API keys (name, value), printed once.
    pub new_keys: Vec<(String, String)>,
}

/// Applies `plan` in one transaction. Passwords are hashed before it begins.
pub async fn apply(store: &Store, plan: &Plan) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let done = store
        .read(async |tx| tx.meta_value(DONE_MARKER).await)
        .await?;
    if plan.only_first_run && done.is_some() {
        report
            .lines
            .push("bootstrap: skipped (BOOTSTRAP_ONLY_FIRST_RUN and it ran before)".into());
        return Ok(report);
    }
    let hasher = Hasher::new(2, plan.users.len())?;
    // Per user: the hash to create it with, or (exists) whether the environment's password
    // still matches the stored one.
    let mut prepared = Vec::with_capacity(plan.users.len());
    for u in &plan.users {
        let existing = store.user_credentials(&u.email).await?;
        let matches = match &existing {
            Some(c) => {
                hasher
                    .verify(&u.password, c.password_hash.as_deref())
                    .await?
            }
            None => false,
        };
        let hash = if existing.is_none() || (!matches && plan.recreate_user) {
            Some(hasher.hash(&u.password).await?)
        } else {
            None
        };
        prepared.push((u, existing.is_some(), matches, hash));
    }

    let me = Actor::LocalSuperuser;
    let mut lines = Vec::new();
    let mut new_keys = Vec::new();
    admin::run(store, &me, async |cx| {
        if let Some(v) = plan.disable_signup {
            set_admin::set(cx, "DISABLE_SIGNUP", &v.to_string()).await?;
            lines.push(format!("bootstrap: DISABLE_SIGNUP={v}"));
        }
        if let Some(v) = plan.disable_sso_signup {
            set_admin::set(cx, "DISABLE_SSO_SIGNUP", &v.to_string()).await?;
            lines.push(format!("bootstrap: DISABLE_SSO_SIGNUP={v}"));
        }
        if !plan.servers.is_empty() {
            let r = srv_admin::import(cx, &plan.servers).await?;
            lines.push(format!(
                "bootstrap: servers: {} created, {} updated, {} unchanged",
                r.created, r.updated, r.unchanged
            ));
        }
        let mut admins = cx.tx.count_active_admins().await?;
        for (u, exists, matches, hash) in &prepared {
            if !exists {
                // Unless stated, the first bootstrapped user of an instance without an
                // admin becomes admin; the others are members.
                let role = u.role.unwrap_or(if admins == 0 { Role::Admin } else { Role::Member });
                users::create(
                    cx,
                    &users::Create {
                        email: &u.email,
                        name: Some(&u.name),
                        password_hash: hash.as_deref(),
                        role,
                    },
                )
                .await?;
                if role == Role::Admin {
                    admins += 1;
                }
                lines.push(format!("bootstrap: user {} created ({role})", u.email));
            } else if !matches {
                if let Some(h) = hash {
                    users::update(
                        cx,
                        &u.email,
                        &users::Change {
                            password_hash: Some(h),
                            ..Default::default()
                        },
                    )
                    .await?;
                    lines.push(format!(
                        "bootstrap: user {}: password reset to the environment's (BOOTSTRAP_RECREATE_USER)",
                        u.email
                    ));
                } else if plan.warn_password_change {
                    lines.push(format!(
                        "bootstrap: warning: user {} exists and its password is not the one in the \
                         environment; left as it is (set BOOTSTRAP_RECREATE_USER=true to reset it, \
                         or BOOTSTRAP_WARN_PASSWORD_CHANGE=false to silence this)",
                        u.email
                    ));
                }
            }
        }
        if plan.delete_other_users {
            for other in cx.tx.list_users().await? {
                if !plan.users.iter().any(|u| u.email == other.email) {
                    users::remove(cx, &other.email).await?;
                    lines.push(format!(
                        "bootstrap: user {} removed (BOOTSTRAP_DELETE_OTHER_USERS)",
                        other.email
                    ));
                }
            }
        }
        for ns in &plan.namespaces {
            match cx.tx.get_namespace(&ns.name).await? {
                None => {
                    ns_admin::create(
                        cx,
                        ns_admin::NewNamespace {
                            name: ns.name.clone(),
                            servers: ns.servers.clone(),
                            inactive: Vec::new(),
                            description: ns.description.clone(),
                            prefix: PrefixMode::default(),
                            new_tools_enabled: None,
                            max_name_length: None,
                            owner: ns.user_email.clone(),
                        },
                    )
                    .await
                    .map_err(|e| e.within(format!("BOOTSTRAP_NAMESPACES {}", ns.name)))?;
                    lines.push(format!("bootstrap: namespace {} created", ns.name));
                }
                Some(current) if ns.update => {
                    if ns.description.is_some() && ns.description != current.description {
                        ns_admin::set_description(cx, &ns.name, ns.description.as_deref()).await?;
                    }
                    let missing: Vec<String> = ns
                        .servers
                        .iter()
                        .filter(|s| !current.servers.iter().any(|m| &m.server_name == *s))
                        .cloned()
                        .collect();
                    if !missing.is_empty() {
                        ns_admin::add_servers(cx, &ns.name, &missing)
                            .await
                            .map_err(|e| e.within(format!("BOOTSTRAP_NAMESPACES {}", ns.name)))?;
                    }
                    lines.push(format!("bootstrap: namespace {} up to date", ns.name));
                }
                Some(_) => {}
            }
        }
        for ep in &plan.endpoints {
            let namespace = ep.namespace.clone().unwrap_or_default();
            let want = ep_admin::NewEndpoint {
                name: ep.name.clone(),
                namespace: namespace.clone(),
                description: ep.description.clone(),
                api_key_auth: ep.enable_auth,
                query_auth: ep.enable_auth_query,
                oauth: ep.enable_auth_oauth,
                rate: None,
                client_rate: None,
                owner: ep.user_email.clone(),
            };
            match cx.tx.get_endpoint(&ep.name).await? {
                None => {
                    ep_admin::create(cx, want)
                        .await
                        .map_err(|e| e.within(format!("BOOTSTRAP_ENDPOINTS {}", ep.name)))?;
                    lines.push(format!("bootstrap: endpoint {} created", ep.name));
                }
                Some(cur)
                    if ep.update
                        && (cur.namespace_name != namespace
                            || cur.api_key_auth != ep.enable_auth
                            || cur.query_auth != ep.enable_auth_query
                            || cur.oauth != ep.enable_auth_oauth) =>
                {
                    ep_admin::remove(cx, &ep.name).await?;
                    ep_admin::create(cx, want)
                        .await
                        .map_err(|e| e.within(format!("BOOTSTRAP_ENDPOINTS {}", ep.name)))?;
                    lines.push(format!("bootstrap: endpoint {} updated", ep.name));
                }
                Some(_) => {}
            }
        }
        let existing = key_admin::list(cx).await?;
        for k in &plan.keys {
            let active = existing.iter().find(|e| e.name == k.name && e.active);
            if active.is_some() && plan.preserve_api_keys {
                continue;
            }
            if active.is_some() {
                key_admin::revoke(cx, &k.name).await?;
            }
            let made = key_admin::create_owned(cx, &k.name, k.admin, k.user_email.as_deref())
                .await
                .map_err(|e| e.within(format!("BOOTSTRAP_API_KEYS {}", k.name)))?;
            lines.push(format!("bootstrap: API key {} created ({}…)", k.name, made.info.prefix));
            new_keys.push((k.name.clone(), made.key));
        }
        cx.tx.set_meta_value(DONE_MARKER, 1).await?;
        Ok::<_, AdminError>(())
    })
    .await?;
    report.lines = lines;
    report.new_keys = new_keys;
    Ok(report)
}

/// The report as printed on stdout (new key values included, once).
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for l in &report.lines {
        let _ = writeln!(out, "metamcp {l}");
    }
    for (name, key) in &report.new_keys {
        let _ = writeln!(
            out,
            "metamcp bootstrap: API key {name} (shown once; store it now): {key}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn plan(vars: &[(&str, &str)]) -> Result<Option<Plan>, BootstrapError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        from_env(&|k: &str| m.get(k).cloned())
    }

    #[test]
    fn nothing_asked_nothing_done() {
        assert!(plan(&[]).unwrap().is_none());
        assert!(
            plan(&[
                ("BOOTSTRAP_ENABLE", "false"),
                ("BOOTSTRAP_USERS", "nonsense")
            ])
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn bad_values_name_their_variable_and_entry() {
        let e = plan(&[("BOOTSTRAP_USERS", "{\"email\":1}")]).unwrap_err();
        assert_eq!(e.variable, "BOOTSTRAP_USERS");
        let e = plan(&[("BOOTSTRAP_USERS", r#"[{"email":"a@x.io","password":"longenough"},{"email":"bad","password":"longenough"}]"#)]).unwrap_err();
        assert!(
            e.to_string().starts_with("BOOTSTRAP_USERS: entry 2: email"),
            "{e}"
        );
        let e = plan(&[("BOOTSTRAP_USER_EMAIL", "a@x.io")]).unwrap_err();
        assert_eq!(e.variable, "BOOTSTRAP_USER_PASSWORD");
        let e = plan(&[("BOOTSTRAP_FAIL_HARD", "maybe")]).unwrap_err();
        assert_eq!(e.variable, "BOOTSTRAP_FAIL_HARD");
        let e = plan(&[("BOOTSTRAP_ENDPOINTS", r#"[{"name":"e"}]"#)]).unwrap_err();
        assert!(e.to_string().contains("namespace is required"), "{e}");
        let e = plan(&[("BOOTSTRAP_NAMESPACES", r#"[{"name":"n","colour":"red"}]"#)]).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = plan(&[("BOOTSTRAP_SERVERS", "[]")]).unwrap_err();
        assert_eq!(e.variable, "BOOTSTRAP_SERVERS");
        let e = plan(&[(
            "BOOTSTRAP_USERS",
            r#"[{"email":"a@x.io","password":"short"}]"#,
        )])
        .unwrap_err();
        assert!(e.to_string().contains("at least 8"), "{e}");
        assert!(
            !e.to_string().contains("short\""),
            "the password is not echoed: {e}"
        );
    }

    #[test]
    fn owners_are_explicit() {
        let e = plan(&[(
            "BOOTSTRAP_NAMESPACES",
            r#"[{"name":"n","is_public":false}]"#,
        )])
        .unwrap_err();
        assert!(e.to_string().contains("needs user_email"), "{e}");
        let e = plan(&[(
            "BOOTSTRAP_API_KEYS",
            r#"[{"name":"k","is_public":true,"user_email":"a@x.io"}]"#,
        )])
        .unwrap_err();
        assert!(e.to_string().contains("contradict"), "{e}");
        let e = plan(&[(
            "BOOTSTRAP_ENDPOINTS",
            r#"[{"name":"e","namespace":"n","owner":"nope"}]"#,
        )])
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("BOOTSTRAP_ENDPOINTS: entry 1: user_email"),
            "{e}"
        );
        let p = plan(&[(
            "BOOTSTRAP_NAMESPACES",
            r#"[{"name":"n","user_email":"Dev@X.io"}]"#,
        )])
        .unwrap()
        .unwrap();
        assert_eq!(p.namespaces[0].user_email.as_deref(), Some("dev@x.io"));
    }

    #[test]
    fn legacy_single_user_is_an_admin() {
        let p = plan(&[
            ("BOOTSTRAP_USER_EMAIL", "Ops@Example.com"),
            ("BOOTSTRAP_USER_PASSWORD", "changeme-please"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(p.users[0].email, "ops@example.com");
        assert_eq!(p.users[0].name, "Administrator");
        assert_eq!(p.users[0].role, Some(Role::Admin));
        assert!(p.preserve_api_keys && p.warn_password_change && !p.fail_hard);
    }
}
