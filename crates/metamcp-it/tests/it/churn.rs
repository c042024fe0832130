//! Session churn: a thousand clients that open a session, make one call and walk away without
//! `DELETE` cost the gateway no processes and no file descriptors. The stdio servers keep one
//! shared process each (never one per session), abandoned sessions stay valid until their
//! idle timeout (`SESSION_LIFETIME`) and are counted by the health route, expire to zero when
//! that timeout passes (their ids then answer 404), and stopping the gateway leaves no process
//! behind.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use metamcp_it::{
    Env, RawClient, alive, descendants, eventually, fd_targets, fixture_stdio, open_fds,
};
use serde_json::{Value, json};

use crate::first_text;

/// Client sessions opened and abandoned.
const SESSIONS: usize = 1000;
/// Sessions being set up at any one time (each over the shared connection pool).
const CONCURRENCY: usize = 32;
/// The namespace's stdio servers.
const SERVERS: [&str; 3] = ["s0", "s1", "s2"];
/// The session idle timeout during the churn (ms): long enough that no session expires
/// before it is counted, even on a loaded machine.
const CHURN_LIFETIME_MS: &str = "20000";
/// The idle timeout set (live) afterwards, to watch the abandoned sessions expire (ms).
const SHORT_LIFETIME_MS: &str = "1000";
/// Descriptors the gateway may hold after the churn beyond its warm baseline (database
/// connections, the odd socket still closing).
const FD_MARGIN: usize = 20;

/// What the process sampler saw while it ran.
#[derive(Debug, Default)]
struct Sampled {
    samples: usize,
    max_descendants: usize,
    all_descendants: BTreeSet<u32>,
    max_fds: usize,
}

/// Samples the gateway's descendants and open descriptors in a thread until `stop` is set.
fn sampler(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Sampled> {
    std::thread::spawn(move || {
        let mut seen = Sampled::default();
        loop {
            // One last sample after the stop flag, so the end state is always included.
            let last = stop.load(Ordering::Acquire);
            let d = descendants(pid);
            seen.samples += 1;
            seen.max_descendants = seen.max_descendants.max(d.len());
            seen.all_descendants.extend(d);
            seen.max_fds = seen.max_fds.max(open_fds(pid).unwrap_or(0));
            if last {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

async fn session_count(url: &str) -> u64 {
    let health: Value = reqwest::get(format!("{url}/health/sessions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["sessions"].as_u64().expect("session count")
}

/// Opens one session on the shared pool, calls `echo` of one server, returns the session id.
async fn open_and_call(http: reqwest::Client, url: String, i: usize) -> String {
    let mut c = RawClient::with_http(http, &url);
    let init = c.initialize().await;
    assert_eq!(init.status, 200, "initialize #{i}: {}", init.body);
    let server = SERVERS[i % SERVERS.len()];
    let message = format!("churn {i}");
    let a = c
        .request(
            "tools/call",
            json!({"name": format!("{server}__echo"), "arguments": {"message": message}}),
        )
        .await;
    assert_eq!(
        first_text(&a.body["result"]),
        message,
        "call #{i}: {}",
        a.body
    );
    c.session.expect("session id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_abandoned_sessions_cost_no_processes_and_no_descriptors() {
    let env = Env::new();
    env.import(json!({
        "s0": fixture_stdio("s0", &[]),
        "s1": fixture_stdio("s1", &[]),
        "s2": fixture_stdio("s2", &[]),
    }));
    let mut ns = vec!["namespace", "create", "churn"];
    for s in SERVERS {
        ns.extend(["--server", s]);
    }
    env.cli_ok(&ns);
    env.cli_ok(&[
        "endpoint",
        "create",
        "ep",
        "--namespace",
        "churn",
        "--no-auth",
    ]);
    env.cli_ok(&["settings", "set", "SESSION_LIFETIME", CHURN_LIFETIME_MS]);
    let gw = env.serve().await;
    let pid = gw.pid();
    let url = gw.mcp_url("ep");

    // Warm-up: the first call to each server starts its one process. The warm-up session is
    // ended properly, so the churn's sessions are the only ones counted.
    {
        let mut c = RawClient::new(&url);
        c.initialize().await;
        for s in SERVERS {
            let a = c
                .request(
                    "tools/call",
                    json!({"name": format!("{s}__echo"), "arguments": {"message": "warm"}}),
                )
                .await;
            assert_eq!(first_text(&a.body["result"]), "warm", "{s}: {}", a.body);
        }
        assert_eq!(c.delete().await, 204, "DELETE of the warm-up session");
    }
    let warm = descendants(pid);
    assert_eq!(
        warm.len(),
        SERVERS.len(),
        "one process per stdio server after warm-up: {warm:?}"
    );
    assert_eq!(session_count(&url).await, 0);
    let baseline = open_fds(pid).expect("gateway fds");

    // The churn: SESSIONS sessions, CONCURRENCY at a time, none ever DELETEd.
    let stop = Arc::new(AtomicBool::new(false));
    let watch = sampler(pid, stop.clone());
    let started = Instant::now();
    let http = reqwest::Client::new();
    let ids: Vec<String> = futures::stream::iter(0..SESSIONS)
        .map(|i| open_and_call(http.clone(), url.clone(), i))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let churn_time = started.elapsed();
    // Closing the client's pooled connections is the clients going away; their sessions stay.
    drop(http);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), SESSIONS, "every session has its own id");
    assert_eq!(session_count(&url).await, SESSIONS as u64);

    // Descriptors return to the warm baseline: sessions hold no sockets, pipes or files.
    let settled = eventually(Duration::from_secs(10), || async move {
        let n = open_fds(pid)?;
        (n <= baseline + FD_MARGIN).then_some(n)
    })
    .await;
    let after = open_fds(pid).unwrap_or(0);
    assert!(
        settled.is_some(),
        "gateway holds {after} fds after the churn, baseline {baseline} (+{FD_MARGIN} allowed): {:?}",
        fd_targets(pid)
    );

    // An abandoned session is still valid (it only expires after its idle timeout), and
    // using it creates neither a session nor a process.
    for (n, id) in [(0, &ids[0]), (SESSIONS - 1, &ids[SESSIONS - 1])] {
        let mut c = RawClient::new(&url);
        c.session = Some(id.clone());
        let a = c
            .request(
                "tools/call",
                json!({"name": "s1__echo", "arguments": {"message": "still here"}}),
            )
            .await;
        assert_eq!(
            first_text(&a.body["result"]),
            "still here",
            "session #{n}: {}",
            a.body
        );
    }
    assert_eq!(session_count(&url).await, SESSIONS as u64);

    // A short idle timeout, applied live: every abandoned session expires, its id answers 404
    // (the client would re-initialize), and the shared upstream processes stay.
    env.cli_ok(&["settings", "set", "SESSION_LIFETIME", SHORT_LIFETIME_MS]);
    let expired_at = Instant::now();
    let expired = eventually(Duration::from_secs(15), || {
        let url = url.clone();
        async move { (session_count(&url).await == 0).then_some(()) }
    })
    .await;
    let expiry_time = expired_at.elapsed();
    assert!(
        expired.is_some(),
        "{} of {SESSIONS} abandoned sessions still alive 15 s after SESSION_LIFETIME={SHORT_LIFETIME_MS}",
        session_count(&url).await
    );
    let http = reqwest::Client::new();
    let statuses: Vec<(usize, u16)> = futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let mut c = RawClient::with_http(http.clone(), &url);
            c.session = Some(id.clone());
            async move { (i, c.request("ping", json!({})).await.status) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    drop(http);
    let alive_ids: Vec<&(usize, u16)> = statuses.iter().filter(|(_, s)| *s != 404).collect();
    assert!(
        alive_ids.is_empty(),
        "expired session ids not answering 404 (index, status): {:?}",
        &alive_ids[..alive_ids.len().min(10)]
    );
    assert_eq!(session_count(&url).await, 0, "a 404 creates no session");
    assert_eq!(
        descendants(pid).into_iter().collect::<BTreeSet<u32>>(),
        warm.iter().copied().collect::<BTreeSet<u32>>(),
        "expiring sessions leaves the shared upstream processes alone"
    );

    stop.store(true, Ordering::Release);
    let seen = watch.join().unwrap();
    let now = descendants(pid);
    eprintln!(
        "churn: {SESSIONS} sessions ({CONCURRENCY} at a time) in {:.2} s; {} samples, at most {} \
         descendants {:?}, fds baseline {baseline} / peak {} / after {after}; all expired \
         {:.2} s after SESSION_LIFETIME={SHORT_LIFETIME_MS}",
        churn_time.as_secs_f64(),
        seen.samples,
        seen.max_descendants,
        seen.all_descendants,
        seen.max_fds,
        expiry_time.as_secs_f64()
    );
    assert!(
        seen.max_descendants <= SERVERS.len() && now.len() <= SERVERS.len(),
        "more than {} gateway descendants: at most {} sampled ({:?}), {now:?} now",
        SERVERS.len(),
        seen.max_descendants,
        seen.all_descendants
    );
    assert_eq!(
        seen.all_descendants,
        warm.iter().copied().collect::<BTreeSet<u32>>(),
        "the warm-up processes served every session (none restarted, none added)"
    );
    assert!(
        seen.max_fds <= baseline + CONCURRENCY + FD_MARGIN,
        "gateway fds peaked at {} during the churn (baseline {baseline})",
        seen.max_fds
    );

    // Stopping the gateway leaves none of the processes it ever had.
    let status = gw.stop().await;
    assert!(status.success(), "gateway exit status {status:?}");
    let family: Vec<u32> = seen.all_descendants.iter().copied().collect();
    let gone = eventually(Duration::from_secs(5), || {
        let family = family.clone();
        async move { family.iter().all(|p| !alive(*p)).then_some(()) }
    })
    .await;
    let left: Vec<u32> = family.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        gone.is_some(),
        "processes left after the gateway stopped: {left:?}"
    );
}

/// Per-session mode under churn: every session gets its own process up to the cap (never
/// more: the rest are refused with an error naming the cap), abandoned sessions' processes
/// stop when the sessions expire, and nothing survives the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_session_churn_never_exceeds_the_cap_and_expiry_frees_processes() {
    const CAP: usize = 4;
    const WARM: usize = 1;
    let env = Env::new();
    env.import(json!({ "solo": fixture_stdio("solo", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "solo"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    env.cli_ok(&[
        "server",
        "update",
        "solo",
        "--mode",
        "per-session",
        "--warm",
        "1",
        "--cap",
        "4",
    ]);
    env.cli_ok(&["settings", "set", "SESSION_LIFETIME", "20000"]);
    let gw = env.serve().await;
    let pid = gw.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = sampler(pid, stop.clone());

    let http = reqwest::Client::new();
    let url = gw.mcp_url("ep");
    let outcomes: Vec<Value> = futures::stream::iter(0..SESSIONS)
        .map(|_| {
            let mut c = RawClient::with_http(http.clone(), &url);
            async move {
                c.initialize().await;
                c.request(
                    "tools/call",
                    json!({"name": "solo__echo", "arguments": {"message": "hi"}}),
                )
                .await
                .body
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let served = outcomes
        .iter()
        .filter(|b| first_text(&b["result"]) == "hi")
        .count();
    let capped = outcomes
        .iter()
        .filter(|b| {
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cap"))
        })
        .count();
    assert_eq!(served, CAP, "sessions served: {served}");
    assert_eq!(
        served + capped,
        SESSIONS,
        "every other session was refused with the cap error"
    );

    // Abandoned sessions expire; their processes stop (the warm one and the catalog's stay).
    env.cli_ok(&["settings", "set", "SESSION_LIFETIME", "1000"]);
    let freed = eventually(Duration::from_secs(15), || async move {
        (descendants(pid).len() <= WARM + 1).then_some(())
    })
    .await;
    assert!(
        freed.is_some(),
        "expired sessions kept their processes: {:?}",
        descendants(pid)
    );

    stop.store(true, Ordering::Release);
    let seen = sampling.join().unwrap();
    // Sessions (cap) + warm spares; the shared connection only serves lists, none were made.
    assert!(
        seen.max_descendants <= CAP + WARM + 1,
        "{} processes at peak",
        seen.max_descendants
    );
    let all = seen.all_descendants.clone();
    assert!(gw.stop().await.success());
    let gone = eventually(Duration::from_secs(5), || {
        let all = all.clone();
        async move { all.iter().all(|p| !alive(*p)).then_some(()) }
    })
    .await;
    assert!(gone.is_some(), "processes left after stop");
}
