//! JSON-RPC envelopes and batches as clients and upstreams send them: parsing, kinds,
//! the nesting check, field reads and the name rewrite the relay does. None may panic, and
//! what the relay rewrites must stay valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metamcp_core::jsonrpc::{self, Envelope};

/// Whether `text` is one JSON value by the grammar (numbers out of f64's range included: the
/// relay passes ids through, it does not compute with them).
fn is_json(text: &str) -> bool {
    serde_json::from_str::<Box<serde_json::value::RawValue>>(text).is_ok()
}

fn one(bytes: &[u8]) {
    let Ok(env) = Envelope::parse(bytes) else {
        return;
    };
    let _ = env.kind();
    let _ = env.method();
    if let Some(params) = env.params {
        let _ = jsonrpc::str_field(params, "name");
        let _ = jsonrpc::str_field(params, "uri");
        if let Some(rewritten) = jsonrpc::with_str_field(params, "name", "server__tool") {
            assert!(
                is_json(&rewritten),
                "with_str_field produced invalid JSON: {rewritten}"
            );
        }
    }
    if let Some(id) = env.id {
        let answer = jsonrpc::response(id, "{}");
        assert!(is_json(&answer), "invalid response: {answer}");
        let error = jsonrpc::error(Some(id), jsonrpc::INVALID_REQUEST, "m", None);
        assert!(is_json(&error), "invalid error: {error}");
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = jsonrpc::nests_deeper_than(data, 128);
    if let Ok(items) = jsonrpc::parse_batch(data) {
        for item in items {
            one(item.get().as_bytes());
        }
    } else {
        one(data);
    }
});
