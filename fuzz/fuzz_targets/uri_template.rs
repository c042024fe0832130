//! URI templates from upstreams and URIs from clients (`TEMPLATE\0URI`): compiling and
//! matching never panics, and every URI is matched in one pass.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metamcp_core::uri_template::UriTemplate;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, uri) = text.split_once('\0').unwrap_or((text, text));
    let t = UriTemplate::parse(template);
    let _ = t.matches(uri);
    // A template without expressions matches exactly itself.
    if !template.contains('{') {
        assert!(
            t.matches(template),
            "a literal template does not match itself"
        );
    }
});
