//! Claude-Desktop JSON (`{"mcpServers": …}`) as `metamcp import` and the admin API read it:
//! every document is refused with an error or turned into server specs that export back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metamcp_core::spec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(specs) = spec::parse_import(text) {
        let exported = spec::export(&specs, true).to_string();
        let again = spec::parse_import(&exported).expect("an export is importable");
        assert_eq!(again.len(), specs.len());
    }
});
