//! Matching a concrete URI against an RFC 6570 URI template (`file:///{path}`,
//! `fixture://items/{id}`), so a URI expanded from any upstream's template routes back to
//! that upstream. Simple expressions match one non-empty path segment (no `/`, `?`, `#`);
//! reserved (`{+x}`), fragment (`{#x}`), other operator and exploded (`{x*}`) expressions
//! match any non-empty run of characters.
//!
//! A template is compiled once into a regular expression (the `regex` crate matches in
//! time linear in the URI's length, whatever the template), so a long adversarial URI
//! costs a single pass, never a search over split points.

/// A compiled URI template.
#[derive(Debug, Clone)]
pub struct UriTemplate {
    /// `None`: the template could not be compiled (too large); it matches nothing.
    regex: Option<regex::Regex>,
}

/// Largest compiled form accepted for one template (templates come from upstreams).
const SIZE_LIMIT: usize = 1 << 20;

impl UriTemplate {
    pub fn parse(template: &str) -> Self {
        let mut pattern = String::from("(?s)^");
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            pattern.push_str(&regex::escape(&rest[..open]));
            let Some(close) = rest[open..].find('}') else {
                rest = &rest[open..];
                break;
            };
            let expr = &rest[open + 1..open + close];
            let greedy =
                expr.starts_with(['+', '#', '/', '.', ';', '?', '&']) || expr.ends_with('*');
            pattern.push_str(if greedy { ".+" } else { "[^/?#]+" });
            rest = &rest[open + close + 1..];
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        let regex = regex::RegexBuilder::new(&pattern)
            .size_limit(SIZE_LIMIT)
            .build()
            .ok();
        Self { regex }
    }

    /// Whether `uri` could have been produced by expanding the template.
    pub fn matches(&self, uri: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(uri))
    }
}

/// Whether `uri` could have been produced by expanding `template` (compiles it each time:
/// for one-off checks; keep a [`UriTemplate`] otherwise).
pub fn matches(template: &str, uri: &str) -> bool {
    UriTemplate::parse(template).matches(uri)
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
        assert!(matches("x://a.b/{id}", "x://a.b/1"));
        assert!(
            !matches("x://a.b/{id}", "x://aXb/1"),
            "literals are not patterns"
        );
        assert!(matches("x://{unclosed", "x://{unclosed"));
    }

    #[test]
    fn adversarial_uris_cost_one_pass() {
        // A matcher that tries every split point for each expression needs on the order of
        // n^8 steps here and never finishes (the test run's time limit fails it); a linear
        // one answers at once.
        let template = "x://{a}{b}{c}{d}{e}{f}{g}{h}/end";
        assert!(!matches(template, &format!("x://{}", "a".repeat(200_000))));
        let greedy = "x://{+a}{+b}{+c}{+d}{+e}{+f}/end";
        assert!(!matches(greedy, &format!("x://{}", "/".repeat(200_000))));
        assert!(matches(
            greedy,
            &format!("x://{}/end", "ab".repeat(100_000))
        ));
    }
}
