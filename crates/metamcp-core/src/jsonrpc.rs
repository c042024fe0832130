//! JSON-RPC 2.0 envelopes read and written at message level.
//!
//! The relay never decodes a payload it only forwards: [`Envelope`] borrows `id`, `params`,
//! `result` and `error` as raw JSON slices of the original bytes, so unknown fields, vendor
//! extensions and new content types pass through byte for byte (see
//! `shared/reference/relay-design.md`: a typed relay costs 2.6–3.9× the upstream's CPU).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (also: unknown tool or prompt, per MCP).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error; also used when an upstream cannot be reached.
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP: the resource does not exist.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// A request timed out (the code the MCP SDKs use).
pub const REQUEST_TIMEOUT: i64 = -32001;

/// One JSON-RPC message with every payload left as raw JSON.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow, default)]
    pub jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "raw_keep_null")]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

fn raw_keep_null<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

/// What kind of message an [`Envelope`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
    Invalid,
}

impl<'a> Envelope<'a> {
    /// Parses one message; `Err` means the bytes are not a JSON object.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Classifies the message; requests need a non-null string or number id.
    pub fn kind(&self) -> Kind {
        if self.jsonrpc.as_deref() != Some("2.0") {
            return Kind::Invalid;
        }
        let id_ok = self.id.is_some_and(valid_id);
        match (&self.method, self.id.is_some()) {
            (Some(_), true) if id_ok => Kind::Request,
            (Some(_), true) => Kind::Invalid,
            (Some(_), false) => Kind::Notification,
            (None, true) if id_ok && (self.result.is_some() ^ self.error.is_some()) => {
                Kind::Response
            }
            _ => Kind::Invalid,
        }
    }

    /// The method, or `""`.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }
}

/// A request id must be a string or an integer (MCP forbids null).
fn valid_id(id: &RawValue) -> bool {
    let s = id.get().as_bytes();
    match s.first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => !s.contains(&b'.') && !s.contains(&b'e') && !s.contains(&b'E'),
        _ => false,
    }
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}`.
pub fn response(id: &RawValue, result: &str) -> String {
    let mut s = String::with_capacity(40 + id.get().len() + result.len());
    s.push_str(r#"{"jsonrpc":"2.0","id":"#);
    s.push_str(id.get());
    s.push_str(r#","result":"#);
    s.push_str(result);
    s.push('}');
    s
}

/// `{"jsonrpc":"2.0","id":ID,"error":ERROR}` with a raw error object.
pub fn response_error_raw(id: Option<&RawValue>, error: &str) -> String {
    let id = id.map_or("null", RawValue::get);
    let mut s = String::with_capacity(40 + id.len() + error.len());
    s.push_str(r#"{"jsonrpc":"2.0","id":"#);
    s.push_str(id);
    s.push_str(r#","error":"#);
    s.push_str(error);
    s.push('}');
    s
}

/// A JSON-RPC error response with `code`, `message` and optional `data`.
pub fn error(
    id: Option<&RawValue>,
    code: i64,
    message: &str,
    data: Option<&serde_json::Value>,
) -> String {
    let mut err = serde_json::Map::new();
    err.insert("code".into(), code.into());
    err.insert("message".into(), message.into());
    if let Some(d) = data {
        err.insert("data".into(), d.clone());
    }
    response_error_raw(id, &serde_json::Value::Object(err).to_string())
}

/// A request with a numeric id, as sent to upstreams.
pub fn request(id: u64, method: &str, params: Option<&str>) -> String {
    let mut s = String::with_capacity(48 + method.len() + params.map_or(0, str::len));
    let _ = write!(s, r#"{{"jsonrpc":"2.0","id":{id},"method":"#);
    push_json_str(&mut s, method);
    if let Some(p) = params {
        s.push_str(r#","params":"#);
        s.push_str(p);
    }
    s.push('}');
    s
}

/// A request with a string id, as sent to clients.
pub fn request_str_id(id: &str, method: &str, params: Option<&str>) -> String {
    let mut s = String::with_capacity(48 + id.len() + method.len() + params.map_or(0, str::len));
    s.push_str(r#"{"jsonrpc":"2.0","id":"#);
    push_json_str(&mut s, id);
    s.push_str(r#","method":"#);
    push_json_str(&mut s, method);
    if let Some(p) = params {
        s.push_str(r#","params":"#);
        s.push_str(p);
    }
    s.push('}');
    s
}

/// A notification.
pub fn notification(method: &str, params: Option<&str>) -> String {
    let mut s = String::with_capacity(40 + method.len() + params.map_or(0, str::len));
    s.push_str(r#"{"jsonrpc":"2.0","method":"#);
    push_json_str(&mut s, method);
    if let Some(p) = params {
        s.push_str(r#","params":"#);
        s.push_str(p);
    }
    s.push('}');
    s
}

fn push_json_str(s: &mut String, v: &str) {
    // why: JSON must escape only `"`, `\` and U+0000–U+001F; a name without them (nearly
    // every one) is copied as it is, anything else goes through serde_json's escaping.
    if v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        s.push_str(&serde_json::Value::from(v).to_string());
    } else {
        s.reserve(v.len() + 2);
        s.push('"');
        s.push_str(v);
        s.push('"');
    }
}

/// The messages of a JSON-RPC batch (a JSON array), each left as raw JSON.
pub fn parse_batch(bytes: &[u8]) -> Result<Vec<&RawValue>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Whether the JSON text `bytes` nests arrays and objects deeper than `max` levels. One
/// pass over the bytes, strings (with their escapes) skipped; what is not JSON is left to
/// the parser. The relay forwards payloads it never parses into values, so this is what
/// bounds the nesting a client can push through it.
pub fn nests_deeper_than(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The string field `key` of a params object, borrowed when unescaped. A key given more
/// than once counts by its last occurrence (as a JSON object read into a map would); `None`
/// when `params` is not an object, lacks `key`, or its value is not a string.
///
/// why: one pass over the members, no map: this runs on every relayed call (routing, the
/// audit record), where building a hash map of the members cost more than the rest of the
/// lookup.
pub fn str_field<'a>(params: &'a RawValue, key: &str) -> Option<Cow<'a, str>> {
    struct Find<'k>(&'k str);
    impl<'de, 'k> serde::de::Visitor<'de> for Find<'k> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            mut m: M,
        ) -> Result<Self::Value, M::Error> {
            let mut found = None;
            while let Some(k) = m.next_key::<BorrowedStr<'de>>()? {
                if k.0 == self.0 {
                    found = Some(m.next_value::<&'de RawValue>()?);
                } else {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(params.get());
    let raw = serde::Deserializer::deserialize_map(&mut de, Find(key)).ok()??;
    serde_json::from_str::<BorrowedStr<'a>>(raw.get())
        .ok()
        .map(|v| v.0)
}

/// A JSON string, borrowed from the input when it holds no escapes.
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A copy of a params object with the string field `key` set to `value` (first, and only
/// once: every occurrence of `key` in `params` is left out); every other member is kept as
/// raw JSON, in its order. `None` when `params` is not an object.
pub fn with_str_field(params: &RawValue, key: &str, value: &str) -> Option<String> {
    let members: RawMembers<'_> = serde_json::from_str(params.get()).ok()?;
    let mut s = String::with_capacity(params.get().len() + value.len());
    s.push('{');
    push_json_str(&mut s, key);
    s.push(':');
    push_json_str(&mut s, value);
    for (k, v) in &members.0 {
        if k == key {
            continue;
        }
        s.push(',');
        push_json_str(&mut s, k);
        s.push(':');
        s.push_str(v.get());
    }
    s.push('}');
    Some(s)
}

/// The members of a JSON object in their order, each value left as raw JSON (names borrowed
/// when unescaped: this runs per relayed call).
struct RawMembers<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Members<'a> {
            type Value = RawMembers<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<BorrowedStr<'a>, &'a RawValue>()? {
                    out.push((k.0, v));
                }
                Ok(RawMembers(out))
            }
        }
        d.deserialize_map(Members(std::marker::PhantomData))
    }
}

/// A copy of a params object whose `_meta` object has the string members `fields` set
/// (added, or replacing ones of the same name); every other member, of `params` and of
/// `_meta`, is kept as raw JSON in its place. `None` params become `{"_meta":{…}}`. `None`
/// when `params` or its `_meta` is not an object. (SEP-414 carries W3C trace context in
/// `params._meta`.)
pub fn with_meta_fields(params: Option<&str>, fields: &[(&str, &str)]) -> Option<String> {
    let push_fields = |s: &mut String, first: bool| {
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 || !first {
                s.push(',');
            }
            push_json_str(s, k);
            s.push(':');
            push_json_str(s, v);
        }
    };
    let mut s = String::with_capacity(params.map_or(0, str::len) + 128);
    let Some(params) = params else {
        s.push_str(r#"{"_meta":{"#);
        push_fields(&mut s, true);
        s.push_str("}}");
        return Some(s);
    };
    let members: RawMembers<'_> = serde_json::from_str(params).ok()?;
    s.push('{');
    let mut had_meta = false;
    for (i, (k, v)) in members.0.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_json_str(&mut s, k);
        s.push(':');
        if k == "_meta" && !had_meta {
            had_meta = true;
            let meta: RawMembers<'_> = serde_json::from_str(v.get()).ok()?;
            s.push('{');
            let mut first = true;
            for (mk, mv) in &meta.0 {
                if fields.iter().any(|(f, _)| f == mk) {
                    continue;
                }
                if !first {
                    s.push(',');
                }
                first = false;
                push_json_str(&mut s, mk);
                s.push(':');
                s.push_str(mv.get());
            }
            push_fields(&mut s, first);
            s.push('}');
        } else {
            s.push_str(v.get());
        }
    }
    if !had_meta {
        if !members.0.is_empty() {
            s.push(',');
        }
        s.push_str(r#""_meta":{"#);
        push_fields(&mut s, true);
        s.push('}');
    }
    s.push('}');
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_fields_are_set_and_the_rest_kept() {
        let tp = [("traceparent", "00-aa-bb-01")];
        assert_eq!(
            with_meta_fields(None, &tp).as_deref(),
            Some(r#"{"_meta":{"traceparent":"00-aa-bb-01"}}"#)
        );
        assert_eq!(
            with_meta_fields(Some("{}"), &tp).as_deref(),
            Some(r#"{"_meta":{"traceparent":"00-aa-bb-01"}}"#)
        );
        assert_eq!(
            with_meta_fields(Some(r#"{"name":"echo", "arguments":{"x":[1, 2]}}"#), &tp).as_deref(),
            Some(
                r#"{"name":"echo","arguments":{"x":[1, 2]},"_meta":{"traceparent":"00-aa-bb-01"}}"#
            )
        );
        // An existing value is replaced, other `_meta` members and the order are kept.
        let both = [("traceparent", "00-aa-bb-01"), ("tracestate", "k=v")];
        assert_eq!(
            with_meta_fields(
                Some(r#"{"_meta":{"progressToken":7,"traceparent":"old","x":{"y":"\u00e9"}},"name":"e"}"#),
                &both
            )
            .as_deref(),
            Some(
                r#"{"_meta":{"progressToken":7,"x":{"y":"\u00e9"},"traceparent":"00-aa-bb-01","tracestate":"k=v"},"name":"e"}"#
            )
        );
        assert_eq!(
            with_meta_fields(Some(r#"{"_meta":{},"a":1}"#), &tp).as_deref(),
            Some(r#"{"_meta":{"traceparent":"00-aa-bb-01"},"a":1}"#)
        );
        assert_eq!(with_meta_fields(Some("[1]"), &tp), None);
        assert_eq!(with_meta_fields(Some(r#"{"_meta":3}"#), &tp), None);
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nests_deeper_than(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(nests_deeper_than(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(!nests_deeper_than(br#"{"s":"[[[[[[\"{{{{"}"#, 1));
        let deep = "[".repeat(100_000);
        assert!(nests_deeper_than(deep.as_bytes(), 128));
        let flat = "[1],".repeat(10_000);
        assert!(!nests_deeper_than(flat.as_bytes(), 1));
    }

    #[test]
    fn classifies() {
        let k = |s: &str| Envelope::parse(s.as_bytes()).map(|e| e.kind()).ok();
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Some(Kind::Request)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#),
            Some(Kind::Request)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","method":"n"}"#),
            Some(Kind::Notification)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Some(Kind::Response)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#),
            Some(Kind::Invalid)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#),
            Some(Kind::Invalid)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#),
            Some(Kind::Invalid)
        );
        assert_eq!(k(r#"{"id":1,"method":"x"}"#), Some(Kind::Invalid));
        assert_eq!(k(r#"[1,2]"#), None);
        assert_eq!(k(r#"not json"#), None);
    }

    #[test]
    fn borrows_payloads_verbatim() {
        let src = r#"{"jsonrpc":"2.0","id":7,"result":{"x-vendor":{"a": [1, 2]},"content":[]}}"#;
        let e = Envelope::parse(src.as_bytes()).unwrap();
        assert_eq!(
            e.result.unwrap().get(),
            r#"{"x-vendor":{"a": [1, 2]},"content":[]}"#
        );
        let out = response(
            RawValue::from_string("\"abc\"".into()).unwrap().as_ref(),
            e.result.unwrap().get(),
        );
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":"abc","result":{"x-vendor":{"a": [1, 2]},"content":[]}}"#
        );
    }

    #[test]
    fn rewrites_one_field() {
        let p = RawValue::from_string(
            r#"{"name":"s__echo","arguments":{"message":"hi \"x\""},"_meta":{"progressToken":3}}"#
                .into(),
        )
        .unwrap();
        assert!(matches!(
            str_field(&p, "name"),
            Some(Cow::Borrowed("s__echo"))
        ));
        let out = with_str_field(&p, "name", "echo").unwrap();
        assert_eq!(
            out,
            r#"{"name":"echo","arguments":{"message":"hi \"x\""},"_meta":{"progressToken":3}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["name"], "echo");
        assert_eq!(v["arguments"]["message"], "hi \"x\"");
        assert_eq!(v["_meta"]["progressToken"], 3);
    }

    #[test]
    fn string_fields_are_read_like_a_map_would() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        // Escapes are decoded (owned); a repeated key counts by its last occurrence, and
        // rewriting drops every occurrence (the upstream sees one name: the gateway's).
        let p = raw(r#"{"name":"a\"b\u00e9","x":[1,{"name":"inner"}],"name":"last"}"#);
        assert_eq!(str_field(&p, "name").as_deref(), Some("last"));
        let out = with_str_field(&p, "name", "s\"t").unwrap();
        assert_eq!(out, r#"{"name":"s\"t","x":[1,{"name":"inner"}]}"#);
        let p = raw(r#"{"uri":"a\nb"}"#);
        assert!(matches!(str_field(&p, "uri"), Some(Cow::Owned(u)) if u == "a\nb"));
        // Not a string, absent, not an object.
        for (params, key) in [
            (r#"{"name":3}"#, "name"),
            (r#"{"name":"x","name":null}"#, "name"),
            (r#"{"other":"x"}"#, "name"),
            (r#"["name","x"]"#, "name"),
            (r#""name""#, "name"),
        ] {
            assert_eq!(str_field(&raw(params), key), None, "{params}");
        }
        assert_eq!(with_str_field(&raw("[1]"), "name", "x"), None);
    }

    #[test]
    fn builds_messages() {
        assert_eq!(
            request(5, "tools/list", None),
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#
        );
        let e = error(None, PARSE_ERROR, "Parse error", None);
        assert_eq!(
            e,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#
        );
        assert_eq!(
            notification("notifications/initialized", None),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        );
    }
}
