//! Failed sign-ins slow down, per account and per client, without ever locking anyone out.
//!
//! After [`FREE_FAILURES`] failures within [`WINDOW`], each further attempt for that account
//! (or from that client) must wait twice as long as the last, from 1 s up to [`MAX_DELAY`];
//! an attempt made earlier is answered 429 with `Retry-After` and does not count. A success
//! clears the account's record. The table is bounded ([`MAX_ENTRIES`]): when full, the
//! stalest entries go first. It is per process: with several replicas an attacker gets each
//! replica's allowance, which the exponential delay still keeps to a trickle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Failures allowed before delays start.
pub const FREE_FAILURES: u32 = 5;
/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest wait imposed.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// Entries kept at most.
pub const MAX_ENTRIES: usize = 100_000;

/// What is throttled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A (lower-cased) email, whether or not the account exists.
    Account(String),
    /// A client address.
    Client(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    not_before: Instant,
}

/// The failure table.
#[derive(Debug, Default)]
pub struct Throttle {
    entries: Mutex<HashMap<Subject, Entry>>,
}

impl Throttle {
    /// `Err(wait)` if any subject must still wait.
    pub fn check(&self, subjects: &[Subject]) -> Result<(), Duration> {
        let now = Instant::now();
        let entries = self.entries.lock();
        let wait = subjects
            .iter()
            .filter_map(|s| entries.get(s))
            .filter(|e| now.duration_since(e.last) < WINDOW)
            .filter_map(|e| e.not_before.checked_duration_since(now))
            .max();
        match wait {
            Some(w) if !w.is_zero() => Err(w),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt against every subject.
    pub fn failed(&self, subjects: &[Subject]) {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() + subjects.len() > MAX_ENTRIES {
            entries.retain(|_, e| now.duration_since(e.last) < WINDOW);
            while entries.len() + subjects.len() > MAX_ENTRIES {
                let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                entries.remove(&oldest);
            }
        }
        for s in subjects {
            let e = entries.entry(s.clone()).or_insert(Entry {
                failures: 0,
                last: now,
                not_before: now,
            });
            if now.duration_since(e.last) >= WINDOW {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            e.not_before = now + delay_after(e.failures);
        }
    }

    /// Clears an account's record after a successful sign-in.
    pub fn succeeded(&self, account: &Subject) {
        self.entries.lock().remove(account);
    }
}

/// The wait after `failures` failures.
pub fn delay_after(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (failures - FREE_FAILURES - 1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap_never_lock() {
        assert_eq!(delay_after(5), Duration::ZERO);
        assert_eq!(delay_after(6), Duration::from_secs(1));
        assert_eq!(delay_after(7), Duration::from_secs(2));
        assert_eq!(delay_after(1000), MAX_DELAY);
    }

    #[test]
    fn accounts_and_clients_are_throttled_separately() {
        let t = Throttle::default();
        let a = Subject::Account("a@example.com".into());
        let b = Subject::Account("b@example.com".into());
        let ip = Subject::Client("192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        for _ in 0..FREE_FAILURES {
            assert!(t.check(&[a.clone(), ip.clone()]).is_ok());
            t.failed(&[a.clone(), ip.clone()]);
        }
        assert!(
            t.check(std::slice::from_ref(&a)).is_ok(),
            "five failures are free"
        );
        t.failed(&[a.clone(), ip.clone()]);
        assert!(t.check(std::slice::from_ref(&a)).is_err());
        assert!(t.check(std::slice::from_ref(&ip)).is_err());
        assert!(
            t.check(std::slice::from_ref(&b)).is_ok(),
            "another account is not slowed"
        );
        t.succeeded(&a);
        assert!(t.check(&[a]).is_ok());
    }
}
