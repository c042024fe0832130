//! Rate limits per endpoint and per client, in memory.
//!
//! An endpoint may carry two limits (`metamcp endpoint create|update --rate N/SECONDS
//! --client-rate N/SECONDS`): one for the whole endpoint and one for each client, where the
//! client is the API key (by id) or, on an endpoint without key auth, the client's IP. The
//! faces call [`Limiter::check`] (or [`Limiter::check_request`]) once per JSON-RPC request (each request of a
//! batch counts; notifications and responses do not) and once per legacy `GET /sse`.
//!
//! The limiter is GCRA (a token bucket kept as one "theoretical arrival time"): burst `N`,
//! one request's budget back every `SECONDS / N` (MetaMCP's limiter refilled `SECONDS`
//! tokens per second instead). A request is admitted only if every limit that applies has
//! room, and then counts against all of them, atomically.
//!
//! The client IP is the TCP peer's address. `X-Forwarded-For` is read only when the peer is
//! a trusted proxy (`METAMCP_TRUSTED_PROXIES`, IPs or CIDRs); then the rightmost address that
//! is not itself a trusted proxy is the client. Never by default: the header is free to forge.
//!
//! Invariants:
//! - limits are read from the request's snapshot, so `endpoint update` applies within a
//!   config reload (about a second); a bucket whose limit changed starts afresh;
//! - a bucket that has refilled completely is indistinguishable from no bucket, and the
//!   sweep (every second, see `state.rs`) removes it; beyond [`MAX_BUCKETS`] the buckets
//!   nearest to refilled are forgotten first, so memory stays bounded under any traffic;
//! - buckets are per process: replicas each enforce the limit on their own share.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use metamcp_core::RateLimit;
use metamcp_core::jsonrpc;
use parking_lot::Mutex;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::auth::{ClientId, Principal};
use crate::error::HttpError;
use crate::snapshot::EndpointCfg;

/// JSON-RPC error code of a rate-limited request (the implementation-defined server-error
/// range; `data.retryAfterSeconds` says when to try again).
pub const RATE_LIMITED: i64 = -32000;
/// Most buckets kept at once.
pub const MAX_BUCKETS: usize = 100_000;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The endpoint's limit, shared by every client.
    Endpoint,
    /// The limit of one client (API key or IP) on the endpoint.
    Client,
}

/// A refused request: which limit, and when the next request would be admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Rate limit exceeded on endpoint {endpoint}{}: {}; retry in {} s",
    match scope { Scope::Endpoint => "", Scope::Client => " for this client" },
    limit.describe(),
    self.retry_after_seconds()
)]
pub struct RateLimited {
    pub scope: Scope,
    pub endpoint: String,
    pub limit: RateLimit,
    pub retry_after: Duration,
}

impl RateLimited {
    /// Whole seconds to wait, rounded up, at least 1 (the `Retry-After` value).
    pub fn retry_after_seconds(&self) -> u64 {
        let d = self.retry_after;
        let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        s.max(1)
    }

    /// The JSON-RPC error answering the request `id`.
    pub fn rpc_error(&self, id: Option<&RawValue>) -> String {
        let scope = match self.scope {
            Scope::Endpoint => "endpoint",
            Scope::Client => "client",
        };
        jsonrpc::error(
            id,
            RATE_LIMITED,
            &self.to_string(),
            Some(&json!({
                "retryAfterSeconds": self.retry_after_seconds(),
                "limit": self.limit.to_string(),
                "scope": scope,
            })),
        )
    }

    /// The HTTP refusal (429 with `Retry-After`) for faces that are not JSON-RPC (REST,
    /// and the legacy `GET /sse` that opens a session).
    pub fn http_error(&self) -> HttpError {
        HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            self.to_string(),
        )
        .with_retry_after(self.retry_after_seconds())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    endpoint: String,
    client: Option<ClientId>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    limit: RateLimit,
    /// Theoretical arrival time, since the limiter's origin.
    tat: Duration,
}

/// GCRA: the new TAT if a request at `now` fits, else how long until it would.
fn admit(bucket: Option<&Bucket>, limit: RateLimit, now: Duration) -> Result<Duration, Duration> {
    let interval = limit.interval();
    let tolerance = limit.window().saturating_sub(interval);
    let stored = bucket.filter(|b| b.limit == limit).map_or(now, |b| b.tat);
    let tat = stored.max(now);
    let ahead = tat - now;
    if ahead > tolerance {
        Err(ahead - tolerance)
    } else {
        Ok(tat + interval)
    }
}

/// The buckets of every endpoint and client.
#[derive(Debug)]
pub struct Limiter {
    origin: Instant,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
    max_buckets: usize,
    /// Peers whose `X-Forwarded-For` names the client.
    trusted: TrustedProxies,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(TrustedProxies::default())
    }
}

impl Limiter {
    /// A limiter that believes `X-Forwarded-For` from `trusted` peers only.
    pub fn new(trusted: TrustedProxies) -> Self {
        Self {
            trusted,
            ..Self::with_capacity(MAX_BUCKETS)
        }
    }

    fn with_capacity(max_buckets: usize) -> Self {
        Self {
            origin: Instant::now(),
            buckets: Mutex::default(),
            max_buckets,
            trusted: TrustedProxies::default(),
        }
    }

    fn since_origin(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    /// Counts one request on `endpoint` (by id; `name` for messages) against the endpoint's
    /// limit and the client's, if set. Admitted only if both have room.
    pub fn check_at(
        &self,
        now: Instant,
        endpoint_id: &str,
        endpoint_name: &str,
        endpoint_limit: Option<RateLimit>,
        client: Option<(ClientId, RateLimit)>,
    ) -> Result<(), RateLimited> {
        if endpoint_limit.is_none() && client.is_none() {
            return Ok(());
        }
        let now = self.since_origin(now);
        let refuse = |scope, limit, retry_after| RateLimited {
            scope,
            endpoint: endpoint_name.to_owned(),
            limit,
            retry_after,
        };
        let ep_key = BucketKey {
            endpoint: endpoint_id.to_owned(),
            client: None,
        };
        let mut buckets = self.buckets.lock();
        let ep_tat = match endpoint_limit {
            Some(limit) => Some(
                admit(buckets.get(&ep_key), limit, now)
                    .map_err(|wait| refuse(Scope::Endpoint, limit, wait))?,
            ),
            None => None,
        };
        let client = match client {
            Some((id, limit)) => {
                let key = BucketKey {
                    endpoint: endpoint_id.to_owned(),
                    client: Some(id),
                };
                let tat = admit(buckets.get(&key), limit, now)
                    .map_err(|wait| refuse(Scope::Client, limit, wait))?;
                Some((key, limit, tat))
            }
            None => None,
        };
        if buckets.len() + 2 > self.max_buckets {
            evict(&mut buckets, now, self.max_buckets);
        }
        if let (Some(limit), Some(tat)) = (endpoint_limit, ep_tat) {
            buckets.insert(ep_key, Bucket { limit, tat });
        }
        if let Some((key, limit, tat)) = client {
            buckets.insert(key, Bucket { limit, tat });
        }
        Ok(())
    }

    /// Forgets every bucket that has refilled completely (they carry no information);
    /// returns how many are left.
    pub fn sweep_at(&self, now: Instant) -> usize {
        let now = self.since_origin(now);
        let mut buckets = self.buckets.lock();
        buckets.retain(|_, b| b.tat > now);
        buckets.len()
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room: drops refilled buckets, then, if still too many, the ones nearest to refilled
/// until a tenth of the capacity is free.
fn evict(buckets: &mut HashMap<BucketKey, Bucket>, now: Duration, max: usize) {
    buckets.retain(|_, b| b.tat > now);
    if buckets.len() + 2 <= max {
        return;
    }
    let keep = max.saturating_sub(max / 10 + 2);
    let mut tats: Vec<Duration> = buckets.values().map(|b| b.tat).collect();
    let cut = tats.len().saturating_sub(keep);
    if cut == 0 {
        return;
    }
    let (_, &mut threshold, _) = tats.select_nth_unstable(cut - 1);
    let mut dropped = 0;
    buckets.retain(|_, b| {
        if dropped < cut && b.tat <= threshold {
            dropped += 1;
            false
        } else {
            true
        }
    });
    tracing::warn!(
        dropped,
        "rate-limit buckets over capacity; forgot those nearest to refilled"
    );
}

/// Proxies whose `X-Forwarded-For` is believed (`METAMCP_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

/// Why `METAMCP_TRUSTED_PROXIES` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trusted proxy {0:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)")]
pub struct BadProxy(pub String);

impl FromStr for TrustedProxies {
    type Err = BadProxy;

    /// Comma-separated IPs and CIDRs; empty means none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = || BadProxy(item.to_owned());
            let (ip, bits) = match item.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (item, None),
            };
            let ip = canonical(ip.parse::<IpAddr>().map_err(|_| bad())?);
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
                None => max,
            };
            out.push((ip, bits));
        }
        Ok(Self(out))
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|&(net, bits)| in_net(ip, net, bits))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The client's IP: the peer, or — only when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not a trusted proxy itself.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A garbled entry ends the trustworthy part of the chain.
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: an IP, possibly `[v6]:port` or `v4:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    hop.parse::<SocketAddr>().ok().map(|s| canonical(s.ip()))
}

/// The TCP peer of a request, when the server was started with connect info.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

impl Limiter {
    /// The client's IP as this gateway believes it (see [`client_ip`]).
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        client_ip(peer, headers, &self.trusted)
    }

    /// Who the caller is for per-client bounds: its key, else its IP (the IP is looked up
    /// only for anonymous callers).
    pub fn client_of(
        &self,
        principal: &Principal,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> ClientId {
        let ip = match principal {
            Principal::Anonymous => self.client_ip(peer, headers),
            Principal::Key { .. } | Principal::User { .. } => None,
        };
        ClientId::of(principal, ip)
    }

    /// Counts one request by `principal` from `client_ip` on `ep` (the one check every
    /// face makes).
    pub fn check(
        &self,
        ep: &EndpointCfg,
        principal: &Principal,
        client_ip: Option<IpAddr>,
    ) -> Result<(), RateLimited> {
        let client = ep
            .client_rate
            .map(|limit| (ClientId::of(principal, client_ip), limit));
        self.check_at(Instant::now(), &ep.id, &ep.name, ep.rate, client)
    }

    /// [`Limiter::check`], finding the client's IP (only when it matters) from the peer
    /// and headers.
    pub fn check_request(
        &self,
        ep: &EndpointCfg,
        principal: &Principal,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<(), RateLimited> {
        if ep.rate.is_none() && ep.client_rate.is_none() {
            return Ok(());
        }
        let ip = match (principal, ep.client_rate) {
            (Principal::Anonymous, Some(_)) => self.client_ip(peer, headers),
            _ => None,
        };
        self.check(ep, principal, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn r(s: &str) -> RateLimit {
        s.parse().unwrap()
    }

    fn key(k: &str) -> ClientId {
        ClientId::Key(k.into())
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_one_per_interval() {
        let l = Limiter::default();
        let limit = r("3/60");
        for _ in 0..3 {
            l.check_at(Instant::now(), "e", "main", Some(limit), None)
                .unwrap();
        }
        let refused = l
            .check_at(Instant::now(), "e", "main", Some(limit), None)
            .unwrap_err();
        assert_eq!(refused.scope, Scope::Endpoint);
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        assert_eq!(
            refused.to_string(),
            "Rate limit exceeded on endpoint main: 3 requests per 60 s; retry in 20 s"
        );
        // Refill is one request per 60/3 = 20 s, not 60 per second.
        tokio::time::advance(Duration::from_secs(19)).await;
        assert!(
            l.check_at(Instant::now(), "e", "main", Some(limit), None)
                .is_err()
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        l.check_at(Instant::now(), "e", "main", Some(limit), None)
            .unwrap();
        assert!(
            l.check_at(Instant::now(), "e", "main", Some(limit), None)
                .is_err()
        );
        // After a full window the whole burst is back, no more.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            l.check_at(Instant::now(), "e", "main", Some(limit), None)
                .unwrap();
        }
        assert!(
            l.check_at(Instant::now(), "e", "main", Some(limit), None)
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clients_have_their_own_budgets_inside_the_endpoints() {
        let l = Limiter::default();
        let per_client = r("2/10");
        let ok = |c: &str, ep: Option<RateLimit>| {
            l.check_at(Instant::now(), "e", "main", ep, Some((key(c), per_client)))
        };
        ok("a", None).unwrap();
        ok("a", None).unwrap();
        let refused = ok("a", None).unwrap_err();
        assert_eq!(refused.scope, Scope::Client);
        assert_eq!(refused.retry_after_seconds(), 5);
        assert!(refused.to_string().contains("for this client"));
        ok("b", None).unwrap();
        ok("b", None).unwrap();
        assert!(ok("b", None).is_err());
        // Another endpoint: another bucket for the same key.
        l.check_at(
            Instant::now(),
            "f",
            "other",
            None,
            Some((key("a"), per_client)),
        )
        .unwrap();
        // The endpoint's limit refuses first, and a refused request costs the client nothing.
        let ep = r("1/10");
        ok("c", Some(ep)).unwrap();
        assert_eq!(ok("c", Some(ep)).unwrap_err().scope, Scope::Endpoint);
        assert_eq!(ok("d", Some(ep)).unwrap_err().scope, Scope::Endpoint);
        tokio::time::advance(Duration::from_secs(10)).await;
        ok("d", Some(ep)).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_limit_starts_a_fresh_bucket() {
        let l = Limiter::default();
        l.check_at(Instant::now(), "e", "m", Some(r("1/60")), None)
            .unwrap();
        assert!(
            l.check_at(Instant::now(), "e", "m", Some(r("1/60")), None)
                .is_err()
        );
        l.check_at(Instant::now(), "e", "m", Some(r("2/60")), None)
            .unwrap();
        l.check_at(Instant::now(), "e", "m", Some(r("2/60")), None)
            .unwrap();
        assert!(
            l.check_at(Instant::now(), "e", "m", Some(r("2/60")), None)
                .is_err()
        );
        // No limit: nothing counted, nothing kept.
        l.check_at(Instant::now(), "x", "x", None, None).unwrap();
        assert_eq!(l.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refilled_buckets_are_swept_and_capacity_is_bounded() {
        let l = Limiter::default();
        for i in 0..100 {
            l.check_at(
                Instant::now(),
                "e",
                "m",
                None,
                Some((key(&i.to_string()), r("5/10"))),
            )
            .unwrap();
        }
        assert_eq!(l.sweep_at(Instant::now()), 100);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.sweep_at(Instant::now()), 0);

        let small = Limiter::with_capacity(50);
        for i in 0..1000 {
            small
                .check_at(
                    Instant::now(),
                    "e",
                    "m",
                    Some(r("100000/1")),
                    Some((key(&i.to_string()), r("1/3600"))),
                )
                .unwrap();
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert!(small.len() <= 50, "{}", small.len());
    }

    #[test]
    fn messages_and_http() {
        let rl = RateLimited {
            scope: Scope::Endpoint,
            endpoint: "main".into(),
            limit: r("10/60"),
            retry_after: Duration::from_millis(2100),
        };
        assert_eq!(rl.retry_after_seconds(), 3);
        let id = RawValue::from_string("7".into()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&rl.rpc_error(Some(&id))).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], RATE_LIMITED);
        assert_eq!(
            v["error"]["message"],
            "Rate limit exceeded on endpoint main: 10 requests per 60 s; retry in 3 s"
        );
        assert_eq!(v["error"]["data"]["retryAfterSeconds"], 3);
        let resp = axum::response::IntoResponse::into_response(rl.http_error());
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after"], "3");
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4"),
        );
        let none = TrustedProxies::default();
        assert_eq!(client_ip(Some(peer), &h, &none), Some(peer.ip()));
        let local: TrustedProxies = "127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(Some(peer), &h, &local),
            Some("1.2.3.4".parse().unwrap())
        );
        // Both hops trusted: the one before them is the client.
        let both: TrustedProxies = "127.0.0.0/8, 1.2.3.0/24".parse().unwrap();
        assert_eq!(
            client_ip(Some(peer), &h, &both),
            Some("6.6.6.6".parse().unwrap())
        );
        // Garbage stops the walk at the last trusted hop; no header means the peer.
        let mut g = HeaderMap::new();
        g.insert("x-forwarded-for", HeaderValue::from_static("5.5.5.5, junk"));
        assert_eq!(client_ip(Some(peer), &g, &local), Some(peer.ip()));
        assert_eq!(
            client_ip(Some(peer), &HeaderMap::new(), &local),
            Some(peer.ip())
        );
        // IPv4-mapped peers match IPv4 entries; ports in entries are tolerated.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
        let mut p = HeaderMap::new();
        p.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(
            client_ip(Some(mapped), &p, &local),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(client_ip(None, &h, &local), None);
    }

    #[test]
    fn trusted_proxy_lists() {
        let t: TrustedProxies = " 10.0.0.0/8 ,::1, 192.168.1.7/32".parse().unwrap();
        assert!(t.contains("10.200.3.4".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(t.contains("192.168.1.7".parse().unwrap()));
        assert!(!t.contains("192.168.1.8".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        let all: TrustedProxies = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/x", "::1/129"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }
}
