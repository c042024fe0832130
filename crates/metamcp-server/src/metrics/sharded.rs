//! The call path's counters and latency histograms: lock-free and sharded by thread.
//!
//! why: `prometheus-client`'s `Histogram` takes a lock per observation and its `Counter` is
//! one shared atomic; with the runtime's workers on different cores, every call moved those
//! cache lines from core to core (two histograms, a counter and the locks per call). Here a
//! worker adds to its own shard (one relaxed atomic add per value, on a line no other worker
//! writes while it runs) and a scrape sums the shards. A histogram's count is the sum of its
//! buckets, so the two always agree in one scrape.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shards per series: a power of two at least the workers of a small machine; threads
/// beyond it share (correct, only slower).
const SHARDS: usize = 4;

/// Finite buckets: upper bounds `FIRST_NS` × 2^i for i < `BUCKETS` (100 µs … about 13 s).
pub const BUCKETS: usize = 18;
const FIRST_NS: u64 = 100_000;

/// This thread's shard, handed out round robin on first use.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(i);
        }
        i
    })
}

/// One shard of a counter, alone on its cache line pair.
#[derive(Debug, Default)]
#[repr(align(128))]
struct CountShard(AtomicU64);

/// A monotonically increasing count (a Prometheus counter). Clones share the series.
#[derive(Debug, Clone, Default)]
pub struct Count(Arc<[CountShard; SHARDS]>);

impl Count {
    pub fn inc(&self) {
        self.0[shard()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for Count {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Count {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One shard of a histogram: the sum in nanoseconds and a count per bucket (the last:
/// above every bound).
#[derive(Debug, Default)]
#[repr(align(128))]
struct LatencyShard {
    sum_ns: AtomicU64,
    buckets: [AtomicU64; BUCKETS + 1],
}

/// A histogram of durations (a Prometheus histogram in seconds). Clones share the series.
#[derive(Debug, Clone, Default)]
pub struct Latency(Arc<[LatencyShard; SHARDS]>);

/// The bucket of a duration of `ns` nanoseconds: the first whose bound it does not exceed.
fn bucket_of(ns: u64) -> usize {
    if ns <= FIRST_NS {
        return 0;
    }
    let q = (ns - 1) / FIRST_NS;
    // q ≥ 1, so its bit length is in 1..=64: (FIRST_NS·2^(i-1), FIRST_NS·2^i] holds ns.
    let i = (u64::BITS - q.leading_zeros()) as usize;
    i.min(BUCKETS)
}

/// The upper bound of finite bucket `i`, in seconds.
pub fn bound_seconds(i: usize) -> f64 {
    // FIRST_NS · 2^i with i < 18 is exact in an f64.
    (FIRST_NS << i) as f64 / 1e9
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let s = &self.0[shard()];
        s.sum_ns.fetch_add(ns, Ordering::Relaxed);
        s.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
    }

    /// `(sum in seconds, count, per-bucket counts)`, summed over the shards.
    pub fn snapshot(&self) -> (f64, u64, [u64; BUCKETS + 1]) {
        let mut sum_ns = 0u64;
        let mut counts = [0u64; BUCKETS + 1];
        for s in self.0.iter() {
            sum_ns = sum_ns.wrapping_add(s.sum_ns.load(Ordering::Relaxed));
            for (c, b) in counts.iter_mut().zip(&s.buckets) {
                *c += b.load(Ordering::Relaxed);
            }
        }
        (sum_ns as f64 / 1e9, counts.iter().sum(), counts)
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, counts) = self.snapshot();
        let buckets: Vec<(f64, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let bound = if i < BUCKETS {
                    bound_seconds(i)
                } else {
                    f64::INFINITY
                };
                (bound, n)
            })
            .collect();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_what_their_bounds_say() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(100_000), 0);
        assert_eq!(bucket_of(100_001), 1);
        assert_eq!(bucket_of(200_000), 1);
        assert_eq!(bucket_of(200_001), 2);
        assert_eq!(bucket_of(400_000), 2);
        for i in 0..BUCKETS {
            let bound = FIRST_NS << i;
            assert_eq!(bucket_of(bound), i, "at the bound of {i}");
            assert_eq!(bucket_of(bound + 1), (i + 1).min(BUCKETS), "past {i}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS);
        assert!((bound_seconds(0) - 0.0001).abs() < 1e-12);
        assert!((bound_seconds(17) - 13.1072).abs() < 1e-9);
    }

    #[test]
    fn shards_add_up_across_threads() {
        let count = Count::default();
        let latency = Latency::default();
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (count, latency) = (&count, &latency);
                s.spawn(move || {
                    for _ in 0..1000 {
                        count.inc();
                        latency.observe(Duration::from_micros(50 + t * 100));
                    }
                });
            }
        });
        assert_eq!(count.get(), 8000);
        let (sum, n, counts) = latency.snapshot();
        assert_eq!(n, 8000);
        // 50, 150, 250, …, 750 µs: buckets ≤100 µs, ≤200, ≤400 (2), ≤800 (4).
        assert_eq!(&counts[..5], &[1000, 1000, 2000, 4000, 0]);
        let want: f64 = (0..8)
            .map(|t| 1000.0 * (50.0 + t as f64 * 100.0) / 1e6)
            .sum();
        assert!((sum - want).abs() < 1e-9, "{sum} vs {want}");
    }
}
