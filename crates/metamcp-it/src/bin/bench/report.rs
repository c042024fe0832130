//! The bench's figures: one run's summary, the direct-vs-gateway comparisons against the
//! targets, the machine-readable report, and the table and summary printed from it.

use std::collections::BTreeMap;

use metamcp_it::benchkit::percentile_ms;
use serde::Serialize;

use super::load::RunData;
use super::{
    FixtureMode, MESSAGE, OTHER_LOAD_WARN_CORES, PROTOCOL_VERSION, TARGET_ADDED_P50_SHARE,
    TARGET_CPU_SHARE, TARGET_RATIO,
};

// ---------------------------------------------------------------------------
// Statistics and results
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct CpuPerCall {
    pub(super) gateway: f64,
    /// Of `gateway`, the time spent in the kernel.
    pub(super) gateway_kernel: f64,
    pub(super) fixture: f64,
    pub(super) bench: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct RunResult {
    pub(super) mode: &'static str,
    /// Round number (1-based), or 0 for the aggregate over all rounds.
    pub(super) round: usize,
    pub(super) target: &'static str,
    pub(super) concurrency: usize,
    pub(super) seconds: f64,
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) req_per_sec: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) mean_ms: f64,
    pub(super) cpu_ms_per_call: CpuPerCall,
    /// Cores' worth of CPU used during the run by everything else on the machine (other
    /// processes, kernel threads, interrupts not charged to the three processes). Anything
    /// well above 0.05 means the figures are disturbed.
    pub(super) other_cores: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) first_error: Option<String>,
}

/// Milliseconds per unit of [`CpuSample`].
pub(super) const US_MS: f64 = 0.001;

/// One run's figures; `unit_ms`: milliseconds per unit of its CPU sample.
pub(super) fn summarize(
    mode: FixtureMode,
    round: usize,
    target: &'static str,
    concurrency: usize,
    data: &mut RunData,
    unit_ms: f64,
) -> RunResult {
    data.latencies_ns.sort_unstable();
    let requests = data.latencies_ns.len() as u64;
    let seconds = data.elapsed.as_secs_f64();
    let per_call = |units: u64| {
        if requests == 0 {
            f64::NAN
        } else {
            units as f64 * unit_ms / requests as f64
        }
    };
    let mean_ms = if requests == 0 {
        f64::NAN
    } else {
        data.latencies_ns.iter().map(|&n| n as f64).sum::<f64>() / requests as f64 / 1e6
    };
    RunResult {
        mode: mode.label(),
        round,
        target,
        concurrency,
        seconds,
        requests,
        errors: data.errors,
        req_per_sec: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            f64::NAN
        },
        p50_ms: percentile_ms(&data.latencies_ns, 0.50),
        p99_ms: percentile_ms(&data.latencies_ns, 0.99),
        mean_ms,
        cpu_ms_per_call: CpuPerCall {
            gateway: per_call(data.cpu.gateway),
            gateway_kernel: per_call(data.cpu.gateway_kernel),
            fixture: per_call(data.cpu.fixture),
            bench: per_call(data.cpu.bench),
        },
        other_cores: if seconds > 0.0 {
            data.cpu.others() as f64 * unit_ms / 1000.0 / seconds
        } else {
            f64::NAN
        },
        first_error: data.first_error.clone(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Comparison {
    pub(super) mode: &'static str,
    pub(super) concurrency: usize,
    pub(super) direct_req_per_sec: f64,
    pub(super) gateway_req_per_sec: f64,
    pub(super) throughput_ratio: f64,
    /// Gateway ÷ direct throughput of each round, to judge the noise.
    pub(super) round_ratios: Vec<f64>,
    pub(super) throughput_target: f64,
    pub(super) throughput_pass: bool,
    pub(super) direct_p50_ms: f64,
    pub(super) gateway_p50_ms: f64,
    pub(super) added_p50_ms: f64,
    pub(super) added_p50_target_ms: f64,
    pub(super) added_p50_pass: bool,
    /// Gateway CPU ms per call through the gateway.
    pub(super) gateway_cpu_ms_per_call: f64,
    /// Fixture CPU ms per call, direct and through the gateway.
    pub(super) fixture_cpu_ms_per_call_direct: f64,
    pub(super) fixture_cpu_ms_per_call_gateway: f64,
    /// Gateway CPU per call ÷ the fixture's own (direct), and its target.
    pub(super) gateway_cpu_share: f64,
    pub(super) gateway_cpu_target: f64,
    pub(super) gateway_cpu_pass: bool,
    /// The kernel's part of the gateway's CPU per call, and it ÷ the fixture's own (direct):
    /// a floor under `gateway_cpu_share` for any change that keeps the system calls.
    pub(super) gateway_kernel_ms_per_call: f64,
    pub(super) gateway_kernel_share: f64,
    pub(super) errors: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) protocol_version: &'static str,
    pub(super) seconds_per_run: f64,
    pub(super) warmup_seconds: f64,
    pub(super) rounds: usize,
    pub(super) concurrency: Vec<usize>,
    pub(super) cpus: usize,
    pub(super) clock_ticks_per_sec: f64,
    pub(super) load_generator: &'static str,
    pub(super) modes: BTreeMap<&'static str, &'static str>,
    pub(super) runs: Vec<RunResult>,
    pub(super) comparisons: Vec<Comparison>,
}

pub(super) const LOAD_GENERATOR: &str = "tokio current-thread runtime (1 thread); per worker one keep-alive \
HTTP/1.1 connection (hyper client::conn::http1, TCP_NODELAY) and one MCP session";

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

pub(super) fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "metamcp-bench: tools/call echo {{\"message\":\"{MESSAGE}\"}}, direct to the fixture vs through the gateway (API-key auth)"
    );
    let _ = writeln!(
        s,
        "  {} s per run, {} s warm-up per target, {} round(s) interleaved, {} CPU(s), protocol {}",
        report.seconds_per_run, report.warmup_seconds, report.rounds, report.cpus, PROTOCOL_VERSION
    );
    let _ = writeln!(s, "  load generator: {}", report.load_generator);
    for (mode, desc) in &report.modes {
        let _ = writeln!(s, "  mode {mode}: {desc}");
    }
    let _ = writeln!(
        s,
        "  cpu = ms of CPU per successful call, from each process's CPU clock (clock_getcpuclockid); round 'all' = all rounds pooled",
    );
    let _ = writeln!(
        s,
        "  other = cores used by everything else on the machine during the run (/proc/stat); should be ~0"
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<5} {:>5} {:<7} {:>4} {:>9} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "mode",
        "round",
        "target",
        "c",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "cpu gw",
        "cpu fx",
        "cpu bench",
        "other"
    );
    let fmt_cpu = |v: f64| {
        if v.is_nan() {
            "-".to_owned()
        } else {
            format!("{v:.3}")
        }
    };
    let mut rows: Vec<&RunResult> = report.runs.iter().collect();
    // Per mode: the rounds in run order, then the pooled rows.
    rows.sort_by_key(|r| (r.mode, r.round == 0));
    for r in rows {
        let round = if r.round == 0 {
            "all".to_owned()
        } else {
            r.round.to_string()
        };
        let _ = writeln!(
            s,
            "{:<5} {:>5} {:<7} {:>4} {:>9} {:>6} {:>9.0} {:>8.3} {:>8.3} {:>8} {:>8} {:>9} {:>6.2}",
            r.mode,
            round,
            r.target,
            r.concurrency,
            r.requests,
            r.errors,
            r.req_per_sec,
            r.p50_ms,
            r.p99_ms,
            fmt_cpu(r.cpu_ms_per_call.gateway),
            fmt_cpu(r.cpu_ms_per_call.fixture),
            fmt_cpu(r.cpu_ms_per_call.bench),
            r.other_cores
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "summary (targets: gateway ≥ {TARGET_RATIO}× direct throughput, added p50 ≤ {TARGET_ADDED_P50_SHARE}× direct p50, gateway CPU per call ≤ {TARGET_CPU_SHARE}× the fixture's own)"
    );
    let pass = |ok: bool| if ok { "PASS" } else { "MISS" };
    for c in &report.comparisons {
        let rounds: Vec<String> = c.round_ratios.iter().map(|r| format!("{r:.2}")).collect();
        let _ = writeln!(
            s,
            "  {:<4} c={:<3} throughput {:>8.0} / {:>8.0} req/s = {:.2}× (≥ {:.1}) {}   rounds [{}]",
            c.mode,
            c.concurrency,
            c.gateway_req_per_sec,
            c.direct_req_per_sec,
            c.throughput_ratio,
            c.throughput_target,
            pass(c.throughput_pass),
            rounds.join(", ")
        );
        let _ = writeln!(
            s,
            "  {:<4} c={:<3} added p50   {:.3} − {:.3} ms = {:+.3} ms (≤ {:.3}) {}",
            c.mode,
            c.concurrency,
            c.gateway_p50_ms,
            c.direct_p50_ms,
            c.added_p50_ms,
            c.added_p50_target_ms,
            pass(c.added_p50_pass)
        );
        let _ = writeln!(
            s,
            "  {:<4} c={:<3} cpu ms/call gateway {} | fixture {} direct, {} via gateway: gateway = {:.2}× the fixture's own (≤ {:.1}) {}{}",
            c.mode,
            c.concurrency,
            fmt_cpu(c.gateway_cpu_ms_per_call),
            fmt_cpu(c.fixture_cpu_ms_per_call_direct),
            fmt_cpu(c.fixture_cpu_ms_per_call_gateway),
            c.gateway_cpu_share,
            c.gateway_cpu_target,
            pass(c.gateway_cpu_pass),
            if c.errors > 0 {
                format!("   ({} errors!)", c.errors)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "  {:<4} c={:<3} of which kernel {} ms/call (sockets, wake-ups) = {:.2}× the fixture's own: the floor while the system calls stay",
            c.mode,
            c.concurrency,
            fmt_cpu(c.gateway_kernel_ms_per_call),
            c.gateway_kernel_share,
        );
    }
    let _ = writeln!(
        s,
        "  note: at c=1 one call is in flight, so the throughput ratio ≈ direct latency ÷ gateway latency;\n  \
         at high c the two cores are saturated, p50 ≈ c ÷ throughput (Little's law) and the added p50\n  \
         follows from the throughput ratio; gateway ÷ direct ≈ (fixture + bench CPU) ÷ (gateway + fixture + bench CPU)."
    );
    let busiest = report
        .runs
        .iter()
        .map(|r| r.other_cores)
        .filter(|v| !v.is_nan())
        .fold(0.0_f64, f64::max);
    if busiest > OTHER_LOAD_WARN_CORES {
        let _ = writeln!(
            s,
            "\nWARNING: other processes used up to {busiest:.2} cores during a run; the machine was not quiet, so these figures are disturbed"
        );
    }
    let errors: Vec<String> = report
        .runs
        .iter()
        .filter(|r| r.round == 0)
        .filter_map(|r| {
            r.first_error.as_ref().map(|e| {
                format!(
                    "  {} {} c={}: {} error(s), first: {e}",
                    r.mode, r.target, r.concurrency, r.errors
                )
            })
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(s, "\nerrors:");
        for e in errors {
            let _ = writeln!(s, "{e}");
        }
    }
    s
}
