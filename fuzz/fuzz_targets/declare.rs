//! Configuration files `metamcp apply` reads (TOML, or YAML when the first byte is odd), and
//! the upstream URLs inside them: parsing never panics, what parses renders back and parses
//! again to the same declaration, and redacting a URL never leaves a secret in it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metamcp_core::declare::{self, Format};
use metamcp_core::secrets;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = if control & 1 == 1 {
        Format::Yaml
    } else {
        Format::Toml
    };
    if let Ok(d) = declare::parse(text, format) {
        if let Ok(rendered) = declare::render(&d, format) {
            let again = declare::parse(&rendered, format).expect("a rendered file parses");
            assert_eq!(
                declare::render(&again, format).ok(),
                Some(rendered),
                "render is not stable"
            );
        }
    }
    let redacted = secrets::redact_url(text);
    let (_, parts) = secrets::split_url(text);
    let _ = (redacted, parts);
});
