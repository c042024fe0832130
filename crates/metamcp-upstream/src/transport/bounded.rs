//! Reading what an upstream sends without letting it grow without bound: one stdout line
//! of a stdio server, one SSE event of an HTTP server, at most `limit` bytes
//! (`METAMCP_MAX_UPSTREAM_MESSAGE_BYTES`). A longer message is not kept: its first bytes
//! tell which request it answered (when they can, `metamcp_core::framing::leading_id`), so
//! that request alone fails, and the reader goes on with the next message.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
pub(crate) use metamcp_core::framing::PREFIX;
use metamcp_core::framing::{EventLimit, Filtered};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

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

/// An SSE byte stream in which no event may exceed `limit` bytes (see
/// [`metamcp_core::framing::EventLimit`]).
pub(crate) struct Events<S> {
    inner: S,
    limit: EventLimit,
    oversized: Oversized,
}

impl<S> Events<S> {
    pub(crate) fn new(inner: S, limit: usize, oversized: Oversized) -> Self {
        let skip = matches!(oversized, Oversized::Skip(_));
        Self {
            inner,
            limit: EventLimit::new(limit, skip),
            oversized,
        }
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
            let this = &mut *self;
            let mut report = |prefix: &[u8]| {
                if let Oversized::Skip(f) = &mut this.oversized {
                    f(prefix);
                }
            };
            // A chunk inside an oversized event may shrink to nothing.
            match this.limit.filter(&chunk, &mut report) {
                Filtered::Whole => return Poll::Ready(Some(Ok(chunk))),
                Filtered::Replaced(kept) if kept.is_empty() => continue,
                Filtered::Replaced(kept) => return Poll::Ready(Some(Ok(Bytes::from(kept)))),
                Filtered::TooLarge => {
                    return Poll::Ready(Some(Err(Bounded::TooLarge(this.limit.limit()))));
                }
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

    #[tokio::test]
    async fn an_oversized_event_ends_a_call_stream_with_an_error() {
        let chunks = ["data: ", "0123456789", "\n\n"]
            .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p.as_bytes())));
        let mut s = Events::new(futures::stream::iter(chunks), 12, Oversized::Fail);
        let mut error = None;
        while let Some(item) = s.next().await {
            if let Err(e) = item {
                error = Some(e.to_string());
            }
        }
        assert!(error.is_some_and(|e| e.contains("larger than 12 bytes")));
    }
}
