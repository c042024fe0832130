//! `metamcp user …`: user accounts from the gateway's machine, acting as the local superuser
//! through the same service functions as `/api/v1/users`. Passwords come from stdin
//! (`--password-stdin`) or are generated and printed once; they never appear in arguments
//! (which other users of the machine can read in the process list).

use std::fmt::Write as _;
use std::io::BufRead as _;

use anyhow::Context;
use metamcp_server::account::password::{self, Hasher};
use metamcp_server::admin::{self, Actor, users};
use metamcp_store::{Role, Store};

use crate::cli::UserCmd;

const ME: Actor = Actor::LocalSuperuser;

/// A password from stdin's first line, or a fresh random one (returned to print).
fn password(from_stdin: bool) -> anyhow::Result<(String, Option<String>)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let pw = line.trim_end_matches(['\r', '\n']).to_owned();
        password::check_new(&pw).map_err(anyhow::Error::msg)?;
        Ok((pw, None))
    } else {
        let pw = metamcp_server::account::browser::new_token()[..24].to_owned();
        Ok((pw.clone(), Some(pw)))
    }
}

async fn hash(pw: &str) -> anyhow::Result<String> {
    let hasher = Hasher::new(1, 0)?;
    Ok(hasher.hash(pw).await?)
}

pub async fn command(store: &Store, c: UserCmd) -> anyhow::Result<String> {
    let mut out = String::new();
    match c {
        UserCmd::Create {
            email,
            name,
            admin: make_admin,
            password_stdin,
            sso_only,
        } => {
            let (hash, shown) = if sso_only {
                (None, None)
            } else {
                let (pw, shown) = password(password_stdin)?;
                (Some(hash(&pw).await?), shown)
            };
            let role = if make_admin {
                Role::Admin
            } else {
                Role::Member
            };
            let u = admin::run(store, &ME, async |cx| {
                users::create(
                    cx,
                    &users::Create {
                        email: &email,
                        name: name.as_deref(),
                        password_hash: hash.as_deref(),
                        role,
                    },
                )
                .await
            })
            .await?;
            let _ = writeln!(out, "created {} {} ({})", u.role, u.email, u.name);
            if let Some(pw) = shown {
                let _ = writeln!(out, "password (shown once; store it now):\n{pw}");
            }
        }
        UserCmd::List => {
            let list = admin::read(store, &ME, async |cx| users::list(cx).await).await?;
            if list.is_empty() {
                out.push_str("no users\n");
            }
            for u in list {
                let state = if u.disabled { "disabled" } else { "active" };
                let login = if u.has_password {
                    "password"
                } else {
                    "sso-only"
                };
                let _ = writeln!(out, "{}\t{}\t{}\t{state}\t{login}", u.email, u.role, u.name);
            }
        }
        UserCmd::SetRole { email, role } => {
            let role = Role::parse(&role).context("role must be admin or member")?;
            let u = change(
                store,
                &email,
                users::Change {
                    role: Some(role),
                    ..Default::default()
                },
            )
            .await?;
            let _ = writeln!(out, "{} is now {}", u.email, u.role);
        }
        UserCmd::SetPassword {
            email,
            password_stdin,
        } => {
            let (pw, shown) = password(password_stdin)?;
            let h = hash(&pw).await?;
            let u = change(
                store,
                &email,
                users::Change {
                    password_hash: Some(&h),
                    ..Default::default()
                },
            )
            .await?;
            let _ = writeln!(
                out,
                "password of {} changed; their browser sessions ended",
                u.email
            );
            if let Some(pw) = shown {
                let _ = writeln!(out, "password (shown once; store it now):\n{pw}");
            }
        }
        UserCmd::Disable { email } => {
            let u = change(
                store,
                &email,
                users::Change {
                    disabled: Some(true),
                    ..Default::default()
                },
            )
            .await?;
            let _ = writeln!(out, "disabled {}; their browser sessions ended", u.email);
        }
        UserCmd::Enable { email } => {
            let u = change(
                store,
                &email,
                users::Change {
                    disabled: Some(false),
                    ..Default::default()
                },
            )
            .await?;
            let _ = writeln!(out, "enabled {}", u.email);
        }
        UserCmd::Remove { email } => {
            let gone = admin::run(store, &ME, async |cx| users::remove(cx, &email).await).await?;
            let _ = writeln!(out, "removed {email}");
            for (kind, names) in [
                ("server", &gone.servers),
                ("namespace", &gone.namespaces),
                ("endpoint", &gone.endpoints),
                ("API key", &gone.api_keys),
            ] {
                for n in names {
                    let _ = writeln!(out, "  removed their {kind} {n}");
                }
            }
        }
    }
    Ok(out)
}

async fn change(
    store: &Store,
    email: &str,
    change: users::Change<'_>,
) -> anyhow::Result<metamcp_store::UserRecord> {
    Ok(admin::run(store, &ME, async |cx| {
        users::update(cx, email, &change).await
    })
    .await?)
}
