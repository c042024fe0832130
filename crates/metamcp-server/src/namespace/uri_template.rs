//! Matching a concrete URI against an RFC 6570 URI template (`file:///{path}`,
//! `fixture://items/{id}`), so a URI expanded from any upstream's template routes back to
//! that upstream. Simple expressions match one path segment; reserved (`{+x}`), fragment
//! (`{#x}`) and exploded (`{x*}`) expressions match any run of characters.

/// Whether `uri` could have been produced by expanding `template`.
pub fn matches(template: &str, uri: &str) -> bool {
    let parts = split(template);
    match_parts(&parts, uri)
}

#[derive(Debug, PartialEq)]
enum Part<'a> {
    Lit(&'a str),
    Var { greedy: bool },
}

fn split(t: &str) -> Vec<Part<'_>> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Part::Lit(&rest[..open]));
        }
        let Some(close) = rest[open..].find('}') else {
            out.push(Part::Lit(&rest[open..]));
            return out;
        };
        let expr = &rest[open + 1..open + close];
        let greedy = expr.starts_with(['+', '#', '/', '.', ';', '?', '&']) || expr.ends_with('*');
        out.push(Part::Var { greedy });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        out.push(Part::Lit(rest));
    }
    out
}

fn match_parts(parts: &[Part<'_>], s: &str) -> bool {
    match parts.split_first() {
        None => s.is_empty(),
        Some((Part::Lit(l), rest)) => s.strip_prefix(l).is_some_and(|s| match_parts(rest, s)),
        Some((Part::Var { greedy }, rest)) => {
            // Try every split point (templates are short; this is off the per-call path).
            for (i, c) in s.char_indices().map(|(i, c)| (i + c.len_utf8(), c)) {
                if !greedy && (c == '/' || c == '?' || c == '#') {
                    break;
                }
                if match_parts(rest, &s[i..]) {
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn simple_and_reserved() {
        assert!(matches("fixture://items/{id}", "fixture://items/42"));
        assert!(!matches("fixture://items/{id}", "fixture://items/"));
        assert!(!matches("fixture://items/{id}", "fixture://items/4/2"));
        assert!(matches(
            "fixture://items/{id}/data",
            "fixture://items/x/data"
        ));
        assert!(matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(!matches("file:///{+path}", "http:///a"));
        assert!(matches(
            "test://template/{id}/data",
            "test://template/7/data"
        ));
        assert!(matches("x://{a}-{b}", "x://1-2"));
    }
}
