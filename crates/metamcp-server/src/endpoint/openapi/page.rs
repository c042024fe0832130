//! `GET …/api`: the REST face's operations as a plain HTML page (no scripts, nothing loaded
//! from elsewhere).

use std::fmt::Write as _;
use std::sync::Arc;

use super::document::{encode_segment, operation_ids};
use super::index::ToolDef;
use crate::snapshot::{EndpointCfg, NamespaceCfg};

/// `s` with the five HTML-significant characters escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const PAGE_STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
padding:0 1rem;color:#222}h1{font-size:1.5rem}section{border-top:1px solid #ddd;padding:.5rem 0}\
h2{font-size:1.1rem;font-family:monospace}.m{background:#2a7;color:#fff;padding:.1rem .4rem;\
border-radius:3px;margin-right:.5rem}pre{background:#f5f5f5;padding:.75rem;overflow:auto}\
.d{white-space:pre-wrap}";

pub(super) fn html_page(ep: &EndpointCfg, ns: &NamespaceCfg, tools: &[Arc<ToolDef>]) -> String {
    let mut h = String::new();
    let spec_url = format!("/metamcp/{}/api/openapi.json", encode_segment(&ep.name));
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>metamcp endpoint {name}</title><style>{PAGE_STYLE}</style></head><body>\
         <h1>metamcp endpoint {name}</h1><p>Namespace {ns}: {count} tool{s}. \
         Each is an HTTP <code>POST</code> whose JSON body is the tool's arguments. \
         OpenAPI 3.1 document: <a href=\"{spec}\">openapi.json</a>.</p>",
        name = esc(&ep.name),
        ns = esc(&ns.name),
        count = tools.len(),
        s = if tools.len() == 1 { "" } else { "s" },
        spec = esc(&spec_url),
    );
    if ep.api_key_auth {
        h.push_str(
            "<p>Send an API key as <code>Authorization: Bearer sk_mt_…</code> or \
             <code>X-API-Key</code>.</p>",
        );
    }
    for (t, op_id) in tools.iter().zip(operation_ids(tools)) {
        let path = format!("/{}", encode_segment(&t.name));
        let _ = write!(
            h,
            "<section id=\"{id}\"><h2><span class=\"m\">POST</span>{path}</h2>",
            id = esc(&op_id),
            path = esc(&path),
        );
        if let Some(title) = &t.title {
            let _ = write!(h, "<p><strong>{}</strong></p>", esc(title));
        }
        if let Some(d) = &t.description {
            let _ = write!(h, "<p class=\"d\">{}</p>", esc(d));
        }
        let schema =
            serde_json::to_string_pretty(&t.input_schema).unwrap_or_else(|_| t.schema_text.clone());
        let _ = write!(
            h,
            "<p>Input schema:</p><pre>{}</pre></section>",
            esc(&schema)
        );
    }
    h.push_str("</body></html>");
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
