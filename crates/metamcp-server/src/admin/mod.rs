//! The operations an operator performs, shared by the CLI, the admin API (`api`) and
//! `metamcp apply` (`declare`) so that no rule is written twice. Each takes a [`Cx`] — who
//! acts ([`Actor`]) and the store transaction to act in — checks the request and reads and
//! writes through that transaction, returning typed (serde-serializable) results the caller
//! formats: the CLI as text, the API as JSON.
//!
//! [`run`] begins a write transaction, runs one or many operations in it and commits, or
//! rolls everything back when one fails; [`read`] does the same read-only. So an operation,
//! or a whole `apply`, is all or nothing, and a running gateway never sees half of it.
//!
//! Who may do what is asked in one place, [`Actor::may`] (what kind of operation) and
//! [`Actor::may_touch`] (which object, by its owner); operations state what they need with
//! [`Cx::require`] and, for an object, [`Cx::require_object`]. Whose a new object is, is
//! decided by [`Cx::owner_for_new`]; what private objects may be combined with, and what
//! members' servers may point at, by [`tenancy`].

pub mod api;
pub mod audit;
pub mod declare;
pub mod endpoints;
pub mod keys;
pub mod logs;
pub mod namespaces;
pub mod oauth;
pub mod openapi;
pub mod servers;
pub mod settings;
pub mod tenancy;
pub mod tools;
pub mod users;

use metamcp_store::{Owner, Role, Store, StoreError, Tx};

/// Who performs an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The operator on the gateway's machine: the CLI, which can read the data directory
    /// (and so the database and its key) anyway.
    LocalSuperuser,
    /// A request to the admin API, authenticated with this admin key.
    AdminKey { id: String, name: String },
    /// A signed-in person (browser session).
    User {
        id: String,
        email: String,
        role: Role,
    },
    /// Someone creating their own account on the sign-up form: may do nothing else.
    SignUp,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::LocalSuperuser => f.write_str("the local superuser"),
            Actor::AdminKey { name, .. } => write!(f, "admin key {name:?}"),
            Actor::User { email, role, .. } => write!(f, "{role} {email}"),
            Actor::SignUp => f.write_str("a sign-up"),
        }
    }
}

/// What an operation needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// See the configuration and the state of servers (never secret values).
    Read,
    /// Change servers, namespaces, tool shaping, endpoints and settings.
    Configure,
    /// Create and revoke API keys.
    ManageKeys,
    /// Create, change and remove user accounts.
    ManageUsers,
    /// See what a server does on the host: its logs, pid, errors; reset its failures.
    Inspect,
    /// Run the instance: global settings, ownership of objects, every session's details.
    Administer,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Read => "read the configuration",
            Access::Configure => "change the configuration",
            Access::ManageKeys => "manage API keys",
            Access::ManageUsers => "manage users",
            Access::Inspect => "inspect",
            Access::Administer => "administer the instance",
        })
    }
}

impl Actor {
    /// Whether this actor may do `access` at all: the one place that question is answered.
    /// The CLI, admin keys and admin users may do everything; a member may read, configure,
    /// manage keys and inspect — on public objects and their own, narrowed per object by
    /// [`Actor::may_touch`] — but not manage users or administer the instance; a sign-up may
    /// do nothing but create its own account.
    pub fn may(&self, access: Access) -> bool {
        if self.is_admin() {
            return true;
        }
        match self {
            Actor::User {
                role: Role::Member, ..
            } => matches!(
                access,
                Access::Read | Access::Configure | Access::ManageKeys | Access::Inspect
            ),
            _ => false,
        }
    }

    /// The CLI, an admin key, or a signed-in admin: everything, every object.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Actor::LocalSuperuser
                | Actor::AdminKey { .. }
                | Actor::User {
                    role: Role::Admin,
                    ..
                }
        )
    }

    /// The user acting, if a user acts.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Actor::User { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether this actor may know an object owned by `owner` (`None`: public) exists:
    /// admins see everything, others public objects and their own.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        self.is_admin() || owner.is_none() || owner == self.user_id()
    }

    /// Whether this actor may do `access` to an object owned by `owner`: reading what it
    /// sees; anything else only to its own objects (admins: to every object).
    pub fn may_touch(&self, access: Access, owner: Option<&str>) -> bool {
        self.may(access)
            && self.sees(owner)
            && (access == Access::Read || self.is_admin() || owner == self.user_id())
    }
}

/// The context of an operation: who acts, and the transaction it acts in.
#[derive(Debug)]
pub struct Cx<'a> {
    pub actor: &'a Actor,
    pub tx: &'a mut Tx,
}

impl Cx<'_> {
    /// Refuses `access` to the `kind` named `name`, owned by `owner` (`None`: public), unless
    /// the actor may: an object the actor may not see is answered as if it did not exist
    /// (`NotFound`, worded as for a missing one), one it sees but may not change is
    /// `Forbidden`.
    pub fn require_object(
        &self,
        access: Access,
        kind: &str,
        name: &str,
        owner: Option<&Owner>,
    ) -> Result<(), AdminError> {
        let owner = owner.map(|o| o.id.as_str());
        self.require(access)?;
        if !self.actor.sees(owner) {
            return Err(AdminError::NotFound(format!("no {kind} named {name:?}")));
        }
        if !self.actor.may_touch(access, owner) {
            let whose = if owner.is_none() {
                "public (only an admin may)"
            } else {
                "another user's"
            };
            return Err(AdminError::Forbidden(format!(
                "{} may not {access} here: {kind} {name:?} is {whose}",
                self.actor
            )));
        }
        Ok(())
    }

    /// The owner (a user id; `None`: public) of an object the actor creates, given the
    /// owner it asks for by email (`None`: the default — public for admins, the member
    /// themselves for a member). A member may own only what they create; an unknown email
    /// is an error naming it.
    pub async fn owner_for_new(
        &mut self,
        email: Option<&str>,
    ) -> Result<Option<String>, AdminError> {
        let email = email.map(str::trim).filter(|e| !e.is_empty());
        if self.actor.is_admin() {
            return match email {
                None => Ok(None),
                Some(e) => Ok(Some(tenancy::user_by_email(self.tx, e).await?.id)),
            };
        }
        let Actor::User {
            id, email: mine, ..
        } = self.actor
        else {
            return Err(AdminError::Forbidden(format!(
                "{} may not own anything",
                self.actor
            )));
        };
        match email {
            Some(e) if !e.eq_ignore_ascii_case(mine) => Err(AdminError::Forbidden(format!(
                "{} may create only objects they own themselves, not ones owned by {e:?}",
                self.actor
            ))),
            _ => Ok(Some(id.clone())),
        }
    }

    /// Refuses the operation unless the actor may do `access`.
    pub fn require(&self, access: Access) -> Result<(), AdminError> {
        if self.actor.may(access) {
            Ok(())
        } else {
            Err(AdminError::Forbidden(format!(
                "{} may not {access}",
                self.actor
            )))
        }
    }
}

/// Runs `f` in one write transaction as `actor`: everything it did commits together (one
/// configuration version), or nothing when it fails.
pub async fn run<T>(
    store: &Store,
    actor: &Actor,
    f: impl AsyncFnOnce(&mut Cx<'_>) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    let (mut tx, out) = begin_and_run(store, actor, f).await?;
    // why: a change commits with its audit record, or not at all.
    let out = match out {
        Ok(v) if tx.is_changed() => {
            let record = audit::change_record(actor, || "change".to_owned(), audit::now_ms());
            tx.record_audit(&record)
                .await
                .map(|()| v)
                .map_err(AdminError::from)
        }
        other => other,
    };
    match out {
        Ok(v) => {
            if let Some(version) = tx.commit().await? {
                tracing::info!(actor = %actor, version, "configuration changed");
            }
            Ok(v)
        }
        Err(e) => {
            if let Err(rb) = tx.rollback().await {
                tracing::debug!(error = %rb, "rollback failed; the connection discards it");
            }
            Err(e)
        }
    }
}

/// Runs `f` in one write transaction as `actor`, then rolls everything back: a dry run that
/// checks a change with every rule, writes included, and keeps nothing.
pub async fn rehearse<T>(
    store: &Store,
    actor: &Actor,
    f: impl AsyncFnOnce(&mut Cx<'_>) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    let (tx, out) = begin_and_run(store, actor, f).await?;
    tx.rollback().await?;
    out
}

/// Begins a write transaction and runs `f` in it; the caller ends the transaction.
async fn begin_and_run<T>(
    store: &Store,
    actor: &Actor,
    f: impl AsyncFnOnce(&mut Cx<'_>) -> Result<T, AdminError>,
) -> Result<(Tx, Result<T, AdminError>), AdminError> {
    let mut tx = store.begin().await?;
    let out = f(&mut Cx { actor, tx: &mut tx }).await;
    Ok((tx, out))
}

/// Runs `f` in one read-only transaction (one consistent view) as `actor`.
pub async fn read<T>(
    store: &Store,
    actor: &Actor,
    f: impl AsyncFnOnce(&mut Cx<'_>) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    store
        .read(async |tx: &mut Tx| f(&mut Cx { actor, tx }).await)
        .await
}

/// Why an operator's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotFound(String),
    /// The actor may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    /// Two tools would get the same exposed name.
    #[error("{0}")]
    Collision(String),
}

/// How the admin API classifies an [`AdminError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request names something that does not exist (404).
    NotFound,
    /// The actor may not do this (403).
    Forbidden,
    /// The name is taken, or the change would make names clash (409).
    Conflict,
    /// The request is well-formed but its values are refused (422).
    Invalid,
    /// The store failed; details are logged, never shown (500).
    Internal,
}

impl AdminError {
    /// The same refusal with its message prefixed by where it happened (`namespace main:
    /// …`); internal errors stay as they are (their details are only logged).
    pub fn within(self, place: impl std::fmt::Display) -> AdminError {
        let message = format!("{place}: {self}");
        match self.class() {
            ErrorClass::NotFound => AdminError::NotFound(message),
            ErrorClass::Forbidden => AdminError::Forbidden(message),
            ErrorClass::Conflict => AdminError::Collision(message),
            ErrorClass::Invalid => AdminError::Invalid(message),
            ErrorClass::Internal => self,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            AdminError::NotFound(_) | AdminError::Store(StoreError::NotFound { .. }) => {
                ErrorClass::NotFound
            }
            AdminError::Collision(_) | AdminError::Store(StoreError::Duplicate { .. }) => {
                ErrorClass::Conflict
            }
            AdminError::Invalid(_) | AdminError::Store(StoreError::Invalid(_)) => {
                ErrorClass::Invalid
            }
            AdminError::Forbidden(_) => ErrorClass::Forbidden,
            AdminError::Store(_) => ErrorClass::Internal,
        }
    }
}

#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tenancy_scenarios;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_without_leaking_the_store() {
        let nf = StoreError::NotFound {
            kind: "server",
            name: "x".into(),
        };
        assert_eq!(AdminError::from(nf).class(), ErrorClass::NotFound);
        let dup = StoreError::Duplicate {
            kind: "namespace",
            name: "x".into(),
        };
        assert_eq!(AdminError::from(dup).class(), ErrorClass::Conflict);
        assert_eq!(
            AdminError::from(StoreError::Invalid("bad name".into())).class(),
            ErrorClass::Invalid
        );
        assert_eq!(
            AdminError::Collision("a".into()).class(),
            ErrorClass::Conflict
        );
        assert_eq!(AdminError::Invalid("a".into()).class(), ErrorClass::Invalid);
        assert_eq!(
            AdminError::NotFound("a".into()).class(),
            ErrorClass::NotFound
        );
        assert_eq!(
            AdminError::from(StoreError::Decrypt("wrong key".into())).class(),
            ErrorClass::Internal
        );
        assert_eq!(
            AdminError::from(StoreError::Config("x".into())).class(),
            ErrorClass::Internal
        );
        assert_eq!(
            AdminError::Forbidden("a".into()).class(),
            ErrorClass::Forbidden
        );
        // Context keeps the class, and internal errors keep their (logged-only) details.
        let nf = AdminError::from(StoreError::NotFound {
            kind: "server",
            name: "x".into(),
        })
        .within("namespace main");
        assert_eq!(nf.class(), ErrorClass::NotFound);
        assert_eq!(nf.to_string(), "namespace main: no server named \"x\"");
        let internal = AdminError::from(StoreError::ReadOnly).within("x");
        assert!(matches!(internal, AdminError::Store(StoreError::ReadOnly)));
    }

    #[test]
    fn admins_may_do_everything() {
        let key = Actor::AdminKey {
            id: "1".into(),
            name: "ops".into(),
        };
        for actor in [Actor::LocalSuperuser, key] {
            for access in [Access::Read, Access::Configure, Access::ManageKeys] {
                assert!(actor.may(access), "{actor} may not {access}");
            }
        }
        assert_eq!(
            Actor::AdminKey {
                id: "1".into(),
                name: "ops".into()
            }
            .to_string(),
            "admin key \"ops\""
        );
    }
}
