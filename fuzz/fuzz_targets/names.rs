//! Names clients send: `server__name` demangling (and its inverse), and the validators of
//! server and object names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metamcp_core::mangle;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((server, name)) = mangle::split(text) {
        assert_eq!(
            mangle::qualify(server, name),
            text,
            "split and qualify disagree"
        );
        assert!(!server.contains("__"), "split at a later separator");
    }
    let _ = metamcp_core::validate_server_name(text);
    let _ = metamcp_core::validate_object_name("namespace", text);
});
