//! Secret values in server specs: `${NAME}` references to the gateway's environment.
//!
//! A secret value (stdio env value, header value, bearer token) written exactly `${NAME}` is
//! not a secret itself: it names a variable of the gateway's environment, read when the
//! server starts, so the value never reaches the database. Partial interpolation
//! (`x${NAME}`) is not supported: such a value is taken literally.

/// The variable a value written exactly `${NAME}` refers to; `None` for any other value.
pub fn reference(value: &str) -> Option<&str> {
    let name = value.strip_prefix("${")?.strip_suffix('}')?;
    (!name.is_empty() && !name.contains(['{', '}', '$'])).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_whole_values() {
        assert_eq!(reference("${TOKEN}"), Some("TOKEN"));
        assert_eq!(reference("${}"), None);
        assert_eq!(reference("x${TOKEN}"), None);
        assert_eq!(reference("${A}${B}"), None);
        assert_eq!(reference("$TOKEN"), None);
    }
}
