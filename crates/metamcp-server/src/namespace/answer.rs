//! A request's answer as a face sends it: one JSON-RPC text, or — for a list served from the
//! catalog — the client's id around the cached list's own bytes.
//!
//! why: a namespace's `tools/list` can be half a megabyte (2,100 tools: 461 KB), serialized
//! once per catalog version. Putting the client's id around it by copying it into a new
//! `String` per request was 40 % of a cached list's instructions in the gateway (callgrind,
//! 200 tools: 114,000 → 68,000); the Streamable HTTP face sends the three parts as one body
//! instead, the cached part shared, not copied. Faces that rewrite or frame
//! the answer (SSE events, batches, the REST face) take the text; the 2026 era sends a list
//! in its own shape, made once per listing ([`Answer::reshape`]).

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde_json::value::RawValue;

use super::catalog::Listing;

/// The JSON-RPC response to one request.
#[derive(Debug)]
pub enum Answer {
    /// The whole message.
    Text(String),
    /// `{"jsonrpc":"2.0","id":ID,"result":` + the listing's JSON (or, `reshaped`, its
    /// other shape) + `}`.
    Listed {
        head: String,
        listing: Arc<Listing>,
        reshaped: bool,
    },
}

impl From<String> for Answer {
    fn from(text: String) -> Self {
        Answer::Text(text)
    }
}

const TAIL: &[u8] = b"}";

impl Answer {
    /// The response to `id` whose result is `listing`'s JSON.
    pub fn listed(id: &RawValue, listing: Arc<Listing>) -> Self {
        let mut head = String::with_capacity(40 + id.get().len());
        head.push_str(r#"{"jsonrpc":"2.0","id":"#);
        head.push_str(id.get());
        head.push_str(r#","result":"#);
        Answer::Listed {
            head,
            listing,
            reshaped: false,
        }
    }

    /// Whether this is a cached list.
    pub fn is_listed(&self) -> bool {
        matches!(self, Answer::Listed { .. })
    }

    /// A cached list in another shape: `make` turns the listing's JSON into it the first
    /// time any answer of this listing asks (every caller must pass the same `make`); a
    /// text answer is returned as it is.
    pub fn reshape(self, make: impl FnOnce(&str) -> String) -> Self {
        match self {
            Answer::Listed { head, listing, .. } => {
                listing.reshaped.get_or_init(|| make(&listing.json));
                Answer::Listed {
                    head,
                    listing,
                    reshaped: true,
                }
            }
            text => text,
        }
    }

    /// The whole message as one text (a copy for a listed answer).
    pub fn into_string(self) -> String {
        match self {
            Answer::Text(s) => s,
            Answer::Listed {
                mut head,
                listing,
                reshaped,
            } => {
                let result = result_of(&listing, reshaped);
                head.reserve_exact(result.len() + TAIL.len());
                head.push_str(result);
                head.push('}');
                head
            }
        }
    }

    /// The whole message, borrowed where it is one text.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Answer::Text(s) => Cow::Borrowed(s),
            Answer::Listed {
                head,
                listing,
                reshaped,
            } => Cow::Owned(format!("{head}{}}}", result_of(listing, *reshaped))),
        }
    }

    /// The message as an HTTP body of known length; a listing's bytes are shared, not copied.
    pub fn into_body(self) -> axum::body::Body {
        match self {
            Answer::Text(s) => axum::body::Body::from(s),
            Answer::Listed {
                head,
                listing,
                reshaped,
            } => axum::body::Body::new(Parts {
                len: (head.len() + result_of(&listing, reshaped).len() + TAIL.len()) as u64,
                parts: [
                    Some(Bytes::from(head)),
                    Some(Bytes::from_owner(ListingJson { listing, reshaped })),
                    Some(Bytes::from_static(TAIL)),
                ],
                next: 0,
            }),
        }
    }
}

/// The result text a listed answer carries.
fn result_of(listing: &Listing, reshaped: bool) -> &str {
    if reshaped {
        // why the fallback: `reshape` sets it before it marks an answer reshaped.
        listing.reshaped.get().map_or(&listing.json, |s| s)
    } else {
        &listing.json
    }
}

/// A listing's result text as a `Bytes` owner: the bytes stay in the shared listing.
struct ListingJson {
    listing: Arc<Listing>,
    reshaped: bool,
}

impl AsRef<[u8]> for ListingJson {
    fn as_ref(&self) -> &[u8] {
        result_of(&self.listing, self.reshaped).as_bytes()
    }
}

/// A body of three parts sent in order, with its exact length (so it goes out with a
/// `Content-Length`, not chunked).
struct Parts {
    parts: [Option<Bytes>; 3],
    next: usize,
    len: u64,
}

impl Body for Parts {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        while let Some(slot) = this.parts.get_mut(this.next) {
            this.next += 1;
            if let Some(part) = slot.take().filter(|p| !p.is_empty()) {
                this.len -= part.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(part))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.len == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use metamcp_core::jsonrpc;

    fn listing(json: &str) -> Arc<Listing> {
        Arc::new(Listing::of_json(json))
    }

    #[tokio::test]
    async fn a_listed_body_is_the_listing_under_the_clients_id() {
        let id = RawValue::from_string(r#""req-7""#.to_owned()).unwrap();
        let l = listing(r#"{"tools":[{"name":"a__b"}]}"#);
        let expected = jsonrpc::response(&id, &l.json);
        let answer = Answer::listed(&id, l.clone());
        assert_eq!(answer.text(), expected);
        let body = answer.into_body();
        assert_eq!(body.size_hint().exact(), Some(expected.len() as u64));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, expected.as_bytes());
        assert_eq!(Answer::listed(&id, l).into_string(), expected);
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed["id"], "req-7");
        assert_eq!(parsed["result"]["tools"][0]["name"], "a__b");
    }

    #[tokio::test]
    async fn the_listing_is_shared_not_copied() {
        let id = RawValue::from_string("1".to_owned()).unwrap();
        let l = listing(r#"{"prompts":[]}"#);
        let mut body = Answer::listed(&id, l.clone()).into_body();
        let mut frames = Vec::new();
        while let Some(f) = body.frame().await {
            frames.push(f.unwrap().into_data().unwrap());
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].as_ptr(), l.json.as_ptr());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_listing_is_reshaped_once_and_sent_in_that_shape() {
        let id = RawValue::from_string("9".to_owned()).unwrap();
        let l = listing(r#"{"tools":[]}"#);
        let made = std::cell::Cell::new(0);
        let make = |json: &str| {
            made.set(made.get() + 1);
            format!(r#"{{"resultType":"complete",{}"#, &json[1..])
        };
        let want = r#"{"jsonrpc":"2.0","id":9,"result":{"resultType":"complete","tools":[]}}"#;
        for _ in 0..3 {
            let a = Answer::listed(&id, l.clone()).reshape(make);
            assert!(a.is_listed());
            assert_eq!(a.text(), want);
            let bytes = a.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(bytes, want.as_bytes());
        }
        assert_eq!(made.get(), 1, "made once per listing");
        // The listing's own shape is untouched for other faces.
        assert_eq!(
            Answer::listed(&id, l).into_string(),
            r#"{"jsonrpc":"2.0","id":9,"result":{"tools":[]}}"#
        );
        // A text answer is not reshaped.
        let t = Answer::from("{}".to_owned()).reshape(|_| unreachable!());
        assert!(!t.is_listed());
        assert_eq!(t.into_string(), "{}");
    }

    #[tokio::test]
    async fn a_text_answer_is_its_text() {
        let a = Answer::from("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}".to_owned());
        assert!(matches!(a.text(), Cow::Borrowed(_)));
        let bytes = a.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    }
}
