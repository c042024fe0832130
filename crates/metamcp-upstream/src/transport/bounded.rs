//! Reading what an upstream sends without letting it grow without bound: one stdout line
//! of a stdio server, one SSE event of an HTTP server, at most `limit` bytes
//! (`METAMCP_MAX_UPSTREAM_MESSAGE_BYTES`). A longer message is not kept: its first bytes
//! tell which request it answered (when they can), so that request alone fails, and the
//! reader goes on with the next message.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// How much of an oversized message is kept to find its id.
pub(crate) const PREFIX: usize = 4096;

/// One read of [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The stream ended.
    Eof,
    /// A whole line is in the buffer (without its newline).
    Complete,
    /// The line was longer than the limit: the buffer holds its first [`PREFIX`] bytes,
    /// the rest was read and dropped.
    TooLong,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), keeping at most `limit`
/// bytes of it.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::Eof,
                (false, false) => Line::Complete,
            });
        }
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if !too_long && buf.len() + part.len() > limit {
            too_long = true;
            buf.truncate(PREFIX);
        }
        if too_long {
            // Only the first bytes are kept, to find which request the line answered.
            let room = PREFIX.saturating_sub(buf.len());
            buf.extend_from_slice(&part[..part.len().min(room)]);
        } else {
            buf.extend_from_slice(part);
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

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

/// Told the first bytes of each message dropped for its size.
pub(crate) type OnOversized = Box<dyn FnMut(&[u8]) + Send>;

/// What a [`Events`] stream does with an event longer than its limit.
pub(crate) enum Oversized {
    /// End the stream with an error (a call's own response stream: the call fails).
    Fail,
    /// Drop the event's bytes beyond the limit (the parser then sees a truncated event and
    /// ignores it) and hand its first bytes to the callback (a stream shared by calls).
    Skip(OnOversized),
}

/// A message larger than the limit arrived.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Bounded<E> {
    #[error(transparent)]
    Inner(E),
    #[error(
        "the upstream sent a message larger than {0} bytes (METAMCP_MAX_UPSTREAM_MESSAGE_BYTES)"
    )]
    TooLarge(usize),
}

/// An SSE byte stream in which no event may exceed `limit` bytes: events end at a blank
/// line (`\n\n`, `\r\r`, `\r\n\r\n`).
pub(crate) struct Events<S> {
    inner: S,
    limit: usize,
    /// Bytes of the current event so far, and of its current line.
    event_len: usize,
    line_len: usize,
    prev: u8,
    oversized: Oversized,
    /// The current event's first bytes (only when skipping, to find its id).
    prefix: Vec<u8>,
    skipping: bool,
}

impl<S> Events<S> {
    pub(crate) fn new(inner: S, limit: usize, oversized: Oversized) -> Self {
        Self {
            inner,
            limit,
            event_len: 0,
            line_len: 0,
            prev: 0,
            oversized,
            prefix: Vec::new(),
            skipping: false,
        }
    }

    /// What of `chunk` to pass on: `Ok(None)` all of it (the usual case), `Ok(Some(bytes))`
    /// a replacement without the oversized event's excess (ended with a blank line so the
    /// parser drops the truncated event on its own), `Err(limit)` when failing.
    fn filter(&mut self, chunk: &[u8]) -> Result<Option<Vec<u8>>, usize> {
        let keep_prefix = matches!(self.oversized, Oversized::Skip(_));
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
                if keep_prefix && self.prefix.len() < PREFIX {
                    self.prefix.push(b);
                }
            }
            if self.event_len > self.limit {
                match &mut self.oversized {
                    Oversized::Fail => return Err(self.limit),
                    Oversized::Skip(report) => {
                        report(&self.prefix);
                        self.skipping = true;
                        out.get_or_insert_with(|| chunk[..i].to_vec());
                        continue;
                    }
                }
            }
            if let Some(o) = out.as_mut() {
                o.push(b);
            }
        }
        Ok(out)
    }
}

impl<S, E> Stream for Events<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, Bounded<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let chunk = match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Bounded::Inner(e)))),
                Poll::Ready(Some(Ok(c))) => c,
            };
            // A chunk inside an oversized event may shrink to nothing.
            match self.filter(&chunk) {
                Ok(None) => return Poll::Ready(Some(Ok(chunk))),
                Ok(Some(kept)) if kept.is_empty() => continue,
                Ok(Some(kept)) => return Poll::Ready(Some(Ok(Bytes::from(kept)))),
                Err(limit) => return Poll::Ready(Some(Err(Bounded::TooLarge(limit)))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn lines_are_kept_up_to_the_limit_and_the_next_one_still_read() {
        let long = "x".repeat(10_000);
        let input = format!("short\n{long}\nafter\nlast-without-newline");
        let mut r = tokio::io::BufReader::with_capacity(64, input.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, 100).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line(&mut r, &mut buf, 100).await.unwrap(),
            Line::TooLong
        );
        assert_eq!(buf.len(), PREFIX);
        assert_eq!(
            read_line(&mut r, &mut buf, 100).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"after");
        assert_eq!(
            read_line(&mut r, &mut buf, 100).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"last-without-newline");
        assert_eq!(read_line(&mut r, &mut buf, 100).await.unwrap(), Line::Eof);
    }

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

    fn chunks(parts: &[&str]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
                .collect::<Vec<_>>(),
        )
    }

    async fn collect<S: Stream<Item = Result<Bytes, Bounded<std::io::Error>>> + Unpin>(
        mut s: S,
    ) -> Result<String, String> {
        let mut out = String::new();
        while let Some(c) = s.next().await {
            out.push_str(std::str::from_utf8(&c.map_err(|e| e.to_string())?).unwrap());
        }
        Ok(out)
    }

    #[tokio::test]
    async fn an_oversized_event_fails_a_call_stream() {
        let ok = Events::new(
            chunks(&["data: ab\n\n", "data: cd\r\n\r\n"]),
            12,
            Oversized::Fail,
        );
        assert_eq!(collect(ok).await.unwrap(), "data: ab\n\ndata: cd\r\n\r\n");
        let big = Events::new(
            chunks(&["data: ", "0123456789", "\n\n"]),
            12,
            Oversized::Fail,
        );
        assert!(
            collect(big)
                .await
                .unwrap_err()
                .contains("larger than 12 bytes")
        );
    }

    #[tokio::test]
    async fn an_oversized_event_is_skipped_on_a_shared_stream() {
        let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let report = seen.clone();
        let s = Events::new(
            chunks(&[
                "data: {\"id\":5,\"result\":\"",
                "0123456789012345678901234567890123456789",
                "\"}\n\ndata: {\"id\":6}\n\n",
            ]),
            30,
            Oversized::Skip(Box::new(move |prefix: &[u8]| {
                report.lock().push(leading_id(prefix));
            })),
        );
        let out = collect(s).await.unwrap();
        assert!(out.ends_with("\n\ndata: {\"id\":6}\n\n"), "{out:?}");
        assert!(out.len() < 60, "the oversized event was passed on: {out:?}");
        assert_eq!(*seen.lock(), [Some(5)]);
    }
}
