//! Rate limits as operators write them: `N/SECONDS`, at most `N` requests per `SECONDS`
//! (burst `N`, refilled evenly over the window). Pure: parsing, display, the refill interval.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// At most `max` requests per `per_seconds` seconds. Both are at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RateLimit {
    pub max: u32,
    pub per_seconds: u32,
}

/// Why a rate limit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limit {0:?} must look like N/SECONDS, e.g. 100/60")]
    Format(String),
    #[error("rate limit {0:?}: both numbers must be at least 1")]
    Zero(String),
}

impl RateLimit {
    /// A limit of `max` per `per_seconds`; `None` if either is zero.
    pub fn new(max: u32, per_seconds: u32) -> Option<Self> {
        (max > 0 && per_seconds > 0).then_some(Self { max, per_seconds })
    }

    /// The window, `per_seconds` as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.per_seconds))
    }

    /// Time for one request's worth of budget to come back: the window divided by `max`
    /// (not one per second per window second, MetaMCP's refill bug).
    pub fn interval(&self) -> Duration {
        self.window() / self.max.max(1)
    }

    /// `10 requests per 60 s`, for messages.
    pub fn describe(&self) -> String {
        let unit = if self.max == 1 { "request" } else { "requests" };
        format!("{} {unit} per {} s", self.max, self.per_seconds)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.max, self.per_seconds)
    }
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || RateLimitError::Format(s.to_owned());
        let (n, secs) = t.split_once('/').ok_or_else(bad)?;
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(n) || !digits(secs) {
            return Err(bad());
        }
        let n: u32 = n.parse().map_err(|_| bad())?;
        let secs: u32 = secs.parse().map_err(|_| bad())?;
        RateLimit::new(n, secs).ok_or_else(|| RateLimitError::Zero(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let r: RateLimit = "100/60".parse().unwrap();
        assert_eq!(
            r,
            RateLimit {
                max: 100,
                per_seconds: 60
            }
        );
        assert_eq!(r.to_string(), "100/60");
        assert_eq!(" 3/1 ".parse::<RateLimit>().unwrap().to_string(), "3/1");
        assert_eq!(r.interval(), Duration::from_millis(600));
        assert_eq!(r.describe(), "100 requests per 60 s");
        assert_eq!(
            RateLimit::new(1, 5).unwrap().describe(),
            "1 request per 5 s"
        );
    }

    #[test]
    fn refuses_nonsense() {
        for s in [
            "",
            "abc",
            "10",
            "10/",
            "/10",
            "-1/10",
            "1.5/10",
            "10/60/2",
            "+3/4",
            "99999999999/1",
        ] {
            assert!(
                matches!(s.parse::<RateLimit>(), Err(RateLimitError::Format(_))),
                "{s}"
            );
        }
        for s in ["0/10", "10/0", "0/0"] {
            assert!(
                matches!(s.parse::<RateLimit>(), Err(RateLimitError::Zero(_))),
                "{s}"
            );
        }
    }
}
