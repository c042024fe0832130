//! Framing of what upstreams send, bounded: where an SSE event ends and whether it grew
//! past a size limit ([`EventLimit`]), and which request an oversized message answered
//! ([`leading_id`]). Pure byte-level state machines, shared by the upstream transports and
//! fuzzed on their own.

/// How much of an oversized message is kept to find its id.
pub const PREFIX: usize = 4096;

/// The numeric `id` of a JSON-RPC message, read from its first bytes (the member `"id"`
/// of the outermost object), for a message too long to be parsed whole.
pub fn leading_id(prefix: &[u8]) -> Option<u64> {
    let start = prefix.iter().position(|b| *b == b'{')?;
    let bytes = &prefix[start..];
    let (mut depth, mut i) = (0usize, 0usize);
    let mut last_key: Option<(usize, usize)> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let begin = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                last_key = (depth == 1).then_some((begin, i.min(bytes.len())));
            }
            b':' if depth == 1 => {
                if let Some((a, b)) = last_key.take()
                    && &bytes[a..b] == b"id"
                {
                    let rest = &bytes[i + 1..];
                    let digits: Vec<u8> = rest
                        .iter()
                        .skip_while(|c| c.is_ascii_whitespace())
                        .take_while(|c| c.is_ascii_digit())
                        .copied()
                        .collect();
                    return std::str::from_utf8(&digits).ok()?.parse().ok();
                }
            }
            b'{' | b'[' => {
                depth += 1;
                last_key = None;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                last_key = None;
            }
            b',' => last_key = None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// What an [`EventLimit`] did with one chunk of an SSE byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Pass the chunk on unchanged (the usual case).
    Whole,
    /// Pass these bytes instead: the chunk without an oversized event's excess; a truncated
    /// event is ended with a blank line so an SSE parser drops it on its own.
    Replaced(Vec<u8>),
    /// An event exceeded the limit (only when not skipping).
    TooLarge,
}

/// Tracks SSE events (which end at a blank line: `\n\n`, `\r\r`, `\r\n\r\n`) across the
/// chunks of a byte stream and catches any that grow past `limit` bytes.
#[derive(Debug)]
pub struct EventLimit {
    limit: usize,
    /// Skip oversized events (else report them as [`Filtered::TooLarge`]).
    skip: bool,
    event_len: usize,
    line_len: usize,
    prev: u8,
    skipping: bool,
    /// The current event's first bytes (when skipping), to find its id.
    prefix: Vec<u8>,
}

impl EventLimit {
    pub fn new(limit: usize, skip: bool) -> Self {
        Self {
            limit,
            skip,
            event_len: 0,
            line_len: 0,
            prev: 0,
            skipping: false,
            prefix: Vec::new(),
        }
    }

    /// The largest event allowed, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Advances over `chunk`; `on_oversized` gets the first bytes of each event dropped.
    pub fn filter(&mut self, chunk: &[u8], on_oversized: &mut dyn FnMut(&[u8])) -> Filtered {
        // A chunk that starts inside an oversized event is rebuilt; others pass whole.
        let mut out: Option<Vec<u8>> = self.skipping.then(Vec::new);
        for (i, &b) in chunk.iter().enumerate() {
            let terminator = b == b'\r' || (b == b'\n' && self.prev != b'\r');
            let mut blank = false;
            if terminator {
                blank = self.line_len == 0;
                self.line_len = 0;
            } else if b != b'\n' {
                self.line_len += 1;
            }
            self.prev = b;
            if self.skipping {
                if blank {
                    // The oversized event ends: end its truncated remains too.
                    self.skipping = false;
                    self.event_len = 0;
                    self.prefix.clear();
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(b"\n\n");
                    }
                }
                continue;
            }
            if blank {
                self.event_len = 0;
                self.prefix.clear();
            } else {
                self.event_len += 1;
                if self.skip && self.prefix.len() < PREFIX {
                    self.prefix.push(b);
                }
            }
            if self.event_len > self.limit {
                if !self.skip {
                    return Filtered::TooLarge;
                }
                on_oversized(&self.prefix);
                self.skipping = true;
                out.get_or_insert_with(|| chunk[..i].to_vec());
                continue;
            }
            if let Some(o) = out.as_mut() {
                o.push(b);
            }
        }
        match out {
            Some(o) => Filtered::Replaced(o),
            None => Filtered::Whole,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_the_first_bytes() {
        assert_eq!(
            leading_id(br#"{"jsonrpc":"2.0","id":42,"result":{"a":"#),
            Some(42)
        );
        assert_eq!(leading_id(br#"data: {"id": 7, "result""#), Some(7));
        assert_eq!(
            leading_id(br#"{"result":{"id":1,"x":"\"id\":2"},"id":3}"#),
            Some(3)
        );
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","result":{"id":5"#), None);
        assert_eq!(leading_id(b"garbage"), None);
    }

    fn run(limit: usize, skip: bool, chunks: &[&str]) -> (Result<String, ()>, Vec<Option<u64>>) {
        let mut f = EventLimit::new(limit, skip);
        let mut seen = Vec::new();
        let mut out = String::new();
        for c in chunks {
            match f.filter(c.as_bytes(), &mut |p| seen.push(leading_id(p))) {
                Filtered::Whole => out.push_str(c),
                Filtered::Replaced(b) => out.push_str(std::str::from_utf8(&b).unwrap()),
                Filtered::TooLarge => return (Err(()), seen),
            }
        }
        (Ok(out), seen)
    }

    #[test]
    fn an_oversized_event_fails_a_call_stream() {
        let (ok, _) = run(12, false, &["data: ab\n\n", "data: cd\r\n\r\n"]);
        assert_eq!(ok.unwrap(), "data: ab\n\ndata: cd\r\n\r\n");
        assert!(run(12, false, &["data: ", "0123456789", "\n\n"]).0.is_err());
    }

    #[test]
    fn an_oversized_event_is_skipped_on_a_shared_stream() {
        let (out, seen) = run(
            30,
            true,
            &[
                "data: {\"id\":5,\"result\":\"",
                "0123456789012345678901234567890123456789",
                "\"}\n\ndata: {\"id\":6}\n\n",
            ],
        );
        let out = out.unwrap();
        assert!(out.ends_with("\n\ndata: {\"id\":6}\n\n"), "{out:?}");
        assert!(out.len() < 60, "the oversized event was passed on: {out:?}");
        assert_eq!(seen, [Some(5)]);
    }
}
