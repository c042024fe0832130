//! A bounded per-server buffer of what the upstream wrote to stderr (and of lifecycle events),
//! so `metamcp logs SERVER` can show why a server misbehaves. Lines not yet persisted are kept
//! apart so the gateway can flush them to the store without re-sending old ones.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Lines kept in memory per server.
pub const CAPACITY: usize = 1000;
/// Longest line kept; the rest is cut (a runaway upstream must not eat memory).
pub const MAX_LINE: usize = 4096;

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub ts_ms: i64,
    pub line: String,
}

/// Ring buffer of recent lines plus the lines not yet flushed.
#[derive(Debug, Default)]
pub struct LogBuffer {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    recent: VecDeque<LogLine>,
    unflushed: Vec<LogLine>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl LogBuffer {
    pub fn push(&self, line: &str) {
        let mut line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let entry = LogLine {
            ts_ms: now_ms(),
            line,
        };
        let mut g = self.inner.lock();
        if g.recent.len() == CAPACITY {
            g.recent.pop_front();
        }
        g.recent.push_back(entry.clone());
        if g.unflushed.len() == CAPACITY {
            g.unflushed.remove(0);
        }
        g.unflushed.push(entry);
    }

    /// The newest `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let g = self.inner.lock();
        g.recent
            .iter()
            .skip(g.recent.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Takes the lines pushed since the last call.
    pub fn take_unflushed(&self) -> Vec<LogLine> {
        std::mem::take(&mut self.inner.lock().unflushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_flushable() {
        let b = LogBuffer::default();
        for i in 0..(CAPACITY + 5) {
            b.push(&format!("line {i}\n"));
        }
        let t = b.tail(2);
        assert_eq!(t[1].line, format!("line {}", CAPACITY + 4));
        assert_eq!(b.tail(usize::MAX).len(), CAPACITY);
        assert_eq!(b.take_unflushed().len(), CAPACITY);
        assert!(b.take_unflushed().is_empty());
        b.push(&"x".repeat(MAX_LINE * 2));
        assert!(b.tail(1)[0].line.len() <= MAX_LINE + 3);
    }
}
