//! Ownership rules beyond "who may touch this object" ([`super::Actor::may_touch`]):
//!
//! - **Composition.** A public namespace holds only public servers; a private namespace its
//!   owner's servers or public ones. A public endpoint serves only a public namespace; a
//!   private endpoint its owner's namespace or a public one. ([`fits`], checked where members
//!   or namespaces are chosen, and over everything by [`check_all`] after an ownership change
//!   or an `apply`.)
//! - **Members' servers.** A member (not an admin) may not create or change a stdio server —
//!   it runs a command on the gateway's host — unless the admin setting
//!   `MEMBERS_MAY_ADD_STDIO` is true; may not use `${NAME}` references anywhere in a server
//!   (they would send the gateway's environment where the member chooses); and may not point
//!   an HTTP/SSE server at a loopback, private, link-local, CGNAT or unspecified address
//!   unless `MEMBERS_MAY_USE_PRIVATE_NETWORKS` is true (no SSRF into the gateway's network).
//!   A host name is resolved when the server is written, within [`RESOLVE_TIMEOUT`], and
//!   refused if any address it resolves to is such an address, or if it does not resolve.
//!   A name whose DNS answers change later (DNS rebinding) is not re-checked when the
//!   gateway connects: that check would belong in the upstream transport.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use metamcp_core::spec::{ServerSpec, Transport};
use metamcp_store::{Owner, Tx, UserRecord};

use super::{Actor, AdminError, Cx};
use crate::account::normalize_email;
use crate::settings::parse_bool;

/// How long a member's server URL may take to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The setting that lets members add stdio servers.
pub const MEMBERS_MAY_ADD_STDIO: &str = "MEMBERS_MAY_ADD_STDIO";
/// The setting that lets members' servers reach private networks.
pub const MEMBERS_MAY_USE_PRIVATE_NETWORKS: &str = "MEMBERS_MAY_USE_PRIVATE_NETWORKS";

/// The owner's id, for comparisons.
pub fn id(owner: Option<&Owner>) -> Option<&str> {
    owner.map(|o| o.id.as_str())
}

/// The owner's email, for views (`None`: public).
pub fn email(owner: Option<&Owner>) -> Option<String> {
    owner.map(|o| o.email.clone())
}

/// The user with this email, or an error naming it.
pub async fn user_by_email(tx: &mut Tx, email: &str) -> Result<UserRecord, AdminError> {
    let normal =
        normalize_email(email).map_err(|e| AdminError::Invalid(format!("owner {email:?}: {e}")))?;
    match tx.user_by_email(&normal).await {
        Ok(u) => Ok(u),
        Err(metamcp_store::StoreError::NotFound { .. }) => Err(AdminError::Invalid(format!(
            "owner {email:?}: there is no user with this email"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The owner record of the user with id `id` (`None`: public), for checks and messages.
pub async fn owner_of(tx: &mut Tx, id: Option<&str>) -> Result<Option<Owner>, AdminError> {
    match id {
        None => Ok(None),
        Some(id) => {
            let u = tx.user_by_id(id).await?;
            Ok(Some(Owner {
                id: u.id,
                email: u.email,
                disabled: u.disabled,
            }))
        }
    }
}

/// Whether a part owned by `part` (a server in a namespace, a namespace behind an endpoint)
/// may belong to a container owned by `container`: public parts anywhere, private parts only
/// in their owner's containers.
pub fn fits(container: Option<&str>, part: Option<&str>) -> bool {
    part.is_none() || part == container
}

fn whose(owner: Option<&Owner>) -> String {
    match owner {
        None => "public".to_owned(),
        Some(o) => format!("owned by {}", o.email),
    }
}

/// Checks that the servers named may be members of namespace `ns` owned by `owner`: each
/// exists and is visible to the actor (else `NotFound`, as for a missing one) and fits.
pub async fn check_members(
    cx: &mut Cx<'_>,
    ns: &str,
    owner: Option<&Owner>,
    servers: &[String],
) -> Result<(), AdminError> {
    for name in servers {
        let server = cx.tx.get_server(name).await?;
        let Some(server) = server.filter(|s| cx.actor.sees(id(s.owner.as_ref()))) else {
            return Err(AdminError::NotFound(format!("no server named {name:?}")));
        };
        if !fits(id(owner), id(server.owner.as_ref())) {
            return Err(AdminError::Invalid(format!(
                "namespace {ns:?} is {}; it may hold only public servers{}, and server {name:?} is {}",
                whose(owner),
                if owner.is_some() {
                    " and its owner's"
                } else {
                    ""
                },
                whose(server.owner.as_ref()),
            )));
        }
    }
    Ok(())
}

/// Checks that endpoint `ep` owned by `owner` may serve namespace `ns` (visible to the actor,
/// else `NotFound`).
pub async fn check_endpoint(
    cx: &mut Cx<'_>,
    ep: &str,
    owner: Option<&Owner>,
    ns: &str,
) -> Result<(), AdminError> {
    let namespace = cx.tx.get_namespace(ns).await?;
    let Some(namespace) = namespace.filter(|n| cx.actor.sees(id(n.owner.as_ref()))) else {
        return Err(AdminError::NotFound(format!("no namespace named {ns:?}")));
    };
    if !fits(id(owner), id(namespace.owner.as_ref())) {
        return Err(AdminError::Invalid(format!(
            "endpoint {ep:?} is {}; it may serve only a public namespace{}, and namespace {ns:?} is {}",
            whose(owner),
            if owner.is_some() {
                " or its owner's"
            } else {
                ""
            },
            whose(namespace.owner.as_ref()),
        )));
    }
    Ok(())
}

/// Checks every namespace and endpoint against the composition rule (after ownership
/// changes, and at the end of an `apply`, whose steps may pass through mixed states).
pub async fn check_all(tx: &mut Tx) -> Result<(), AdminError> {
    let servers = tx.list_servers().await?;
    let namespaces = tx.list_namespaces().await?;
    for ns in &namespaces {
        for m in &ns.servers {
            let server = servers.iter().find(|s| s.id == m.server_id);
            let owner = server.and_then(|s| s.owner.as_ref());
            if !fits(id(ns.owner.as_ref()), id(owner)) {
                return Err(AdminError::Invalid(format!(
                    "namespace {:?} is {} and may not hold server {:?}, which is {}",
                    ns.name,
                    whose(ns.owner.as_ref()),
                    m.server_name,
                    whose(owner),
                )));
            }
        }
    }
    for ep in tx.list_endpoints().await? {
        let ns = namespaces.iter().find(|n| n.id == ep.namespace_id);
        let owner = ns.and_then(|n| n.owner.as_ref());
        if !fits(id(ep.owner.as_ref()), id(owner)) {
            return Err(AdminError::Invalid(format!(
                "endpoint {:?} is {} and may not serve namespace {:?}, which is {}",
                ep.name,
                whose(ep.owner.as_ref()),
                ep.namespace_name,
                whose(owner),
            )));
        }
    }
    Ok(())
}

/// A boolean admin setting (default false).
async fn setting(tx: &mut Tx, key: &str) -> Result<bool, AdminError> {
    Ok(tx
        .list_settings()
        .await?
        .into_iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| parse_bool(&v))
        .unwrap_or(false))
}

/// The rules for a server a member writes (`new`, replacing `old` if any); admins are not
/// bound by them.
pub async fn check_server(
    cx: &mut Cx<'_>,
    new: &ServerSpec,
    old: Option<&ServerSpec>,
) -> Result<(), AdminError> {
    if cx.actor.is_admin() {
        return Ok(());
    }
    check_stdio(cx, new, old).await?;
    let name = &new.name;
    if let Some((place, var)) = new.references().into_iter().next() {
        return Err(AdminError::Forbidden(format!(
            "server {name}: {place} refers to ${{{var}}}; members' servers may not use \
             ${{NAME}} references (they would send the gateway's environment to a place \
             the member chose)"
        )));
    }
    if let Transport::Sse { url, .. } | Transport::StreamableHttp { url, .. } = &new.transport
        && !setting(cx.tx, MEMBERS_MAY_USE_PRIVATE_NETWORKS).await?
    {
        check_public_url(name, url).await?;
    }
    Ok(())
}

/// The stdio rule alone (a member changing how sessions share a server changes no URL):
/// members may not create or change a stdio server unless `MEMBERS_MAY_ADD_STDIO`.
pub async fn check_stdio(
    cx: &mut Cx<'_>,
    new: &ServerSpec,
    old: Option<&ServerSpec>,
) -> Result<(), AdminError> {
    let stdio = |s: &ServerSpec| matches!(s.transport, Transport::Stdio { .. });
    if cx.actor.is_admin()
        || !(stdio(new) || old.is_some_and(stdio))
        || setting(cx.tx, MEMBERS_MAY_ADD_STDIO).await?
    {
        return Ok(());
    }
    Err(AdminError::Forbidden(format!(
        "server {}: {} may not create or change a stdio server (it runs a command on the \
         gateway's host); an admin may allow it with the setting {MEMBERS_MAY_ADD_STDIO}",
        new.name, cx.actor
    )))
}

/// Refuses a URL whose host is, or resolves to, an address inside a private network.
pub async fn check_public_url(server: &str, url: &str) -> Result<(), AdminError> {
    let refused = |what: String| {
        AdminError::Forbidden(format!(
            "server {server}: {what}; members' servers may not reach loopback, private, \
             link-local or CGNAT addresses (an admin may allow it with the setting \
             {MEMBERS_MAY_USE_PRIVATE_NETWORKS})"
        ))
    };
    let parsed = url::Url::parse(url)
        .map_err(|e| AdminError::Invalid(format!("server {server}: invalid URL: {e}")))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = match parsed.host() {
        None => {
            return Err(AdminError::Invalid(format!(
                "server {server}: the URL has no host"
            )));
        }
        Some(url::Host::Ipv4(ip)) => {
            return match internal(IpAddr::V4(ip)) {
                true => Err(refused(format!("{ip} is an internal address"))),
                false => Ok(()),
            };
        }
        Some(url::Host::Ipv6(ip)) => {
            return match internal(IpAddr::V6(ip)) {
                true => Err(refused(format!("{ip} is an internal address"))),
                false => Ok(()),
            };
        }
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
    };
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(refused(format!("{host} is this machine")));
    }
    let found = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    .map_err(|_| {
        AdminError::Invalid(format!(
            "server {server}: {host} did not resolve within {} s",
            RESOLVE_TIMEOUT.as_secs()
        ))
    })?
    .map_err(|e| AdminError::Invalid(format!("server {server}: cannot resolve {host}: {e}")))?;
    let mut any = false;
    for addr in found {
        any = true;
        if internal(addr.ip()) {
            return Err(refused(format!(
                "{host} resolves to {}, an internal address",
                addr.ip()
            )));
        }
    }
    if !any {
        return Err(AdminError::Invalid(format!(
            "server {server}: {host} resolves to no address"
        )));
    }
    Ok(())
}

/// Loopback, private (RFC 1918, fc00::/7), link-local (169.254/16, fe80::/10), CGNAT
/// (100.64/10), unspecified and "this network" (0/8), broadcast and multicast addresses, and
/// IPv6 forms that embed such an IPv4 address (mapped, compatible, NAT64 64:ff9b::/96).
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    // ::a.b.c.d (deprecated IPv4-compatible) and 64:ff9b::a.b.c.d (NAT64).
    let ([a, b], [c, d]) = (s[6].to_be_bytes(), s[7].to_be_bytes());
    let embedded = Ipv4Addr::new(a, b, c, d);
    if (s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified())
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        return internal_v4(embedded);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
}

/// Whether `actor` sees an object owned by `owner` (a shorthand for listings).
pub fn visible(actor: &Actor, owner: Option<&Owner>) -> bool {
    actor.sees(id(owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "127.8.9.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "ff02::1",
        ] {
            assert!(internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.2.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(!internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_host_and_by_what_it_resolves_to() {
        for url in [
            "http://127.0.0.1:8080/mcp",
            "http://[::1]/mcp",
            "http://[::ffff:a00:1]/mcp",
            "http://localhost:3000/mcp",
            "http://api.localhost/mcp",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.8/mcp",
            "http://0x7f000001/mcp",
            "http://2130706433/mcp",
        ] {
            let e = check_public_url("s", url).await.unwrap_err();
            assert!(matches!(e, AdminError::Forbidden(_)), "{url}: {e}");
        }
        assert!(
            check_public_url("s", "https://93.184.215.14/mcp")
                .await
                .is_ok()
        );
        assert!(
            check_public_url("s", "https://no-such-host.invalid/mcp")
                .await
                .is_err()
        );
    }

    #[test]
    fn composition() {
        assert!(fits(None, None));
        assert!(fits(Some("a"), None));
        assert!(fits(Some("a"), Some("a")));
        assert!(!fits(None, Some("a")));
        assert!(!fits(Some("b"), Some("a")));
    }
}
