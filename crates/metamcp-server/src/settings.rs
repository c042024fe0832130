//! The runtime settings kept in the database (`metamcp settings set KEY VALUE`), with
//! MetaMCP's names and units (milliseconds), validated in one place for the CLI and applied
//! by the gateway on every configuration reload.

use std::time::Duration;

use metamcp_upstream::PoolOptions;

/// Every setting: key, meaning, default as written.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "MCP_TIMEOUT",
        "per-request timeout to an upstream, in ms",
        "60000",
    ),
    (
        "MCP_MAX_TOTAL_TIMEOUT",
        "longest a request may run while progress resets its timeout, in ms",
        "600000",
    ),
    (
        "MCP_RESET_TIMEOUT_ON_PROGRESS",
        "whether progress notifications reset the request timeout (true|false)",
        "true",
    ),
    (
        "MCP_MAX_ATTEMPTS",
        "consecutive failed starts after which a server's circuit opens",
        "3",
    ),
    (
        "MCP_BREAKER_COOLDOWN",
        "how long an open circuit refuses a server before one probe, in ms",
        "30000",
    ),
    (
        "MCP_START_TIMEOUT",
        "time allowed to start a server and complete its handshake, in ms",
        "120000",
    ),
    (
        "MCP_LIST_TIMEOUT",
        "how long a list (tools, prompts, resources) waits for a server before answering without it, in ms",
        "2000",
    ),
    (
        "MCP_LIST_FIRST_TIMEOUT",
        "the same for the first list a server is ever asked for (its first start), in ms",
        "10000",
    ),
    (
        "SESSION_LIFETIME",
        "a client session ends after this long without requests, in ms",
        "3600000",
    ),
    (
        "MCP_IDLE_STOP",
        "stop a server unused for this long, in ms (0: keep servers running)",
        "0",
    ),
    (
        "MCP_EAGER_START",
        "start every server of a namespace when the configuration loads (true|false)",
        "false",
    ),
    (
        "DISABLE_SIGNUP",
        "no new accounts through the sign-up form (true|false)",
        "false",
    ),
    (
        "DISABLE_SSO_SIGNUP",
        "no new accounts through single sign-on; existing ones still sign in (true|false)",
        "false",
    ),
    (
        "DISABLE_BASIC_AUTH",
        "no password sign-in or sign-up at all, only single sign-on (true|false)",
        "false",
    ),
    (
        "MEMBERS_MAY_ADD_STDIO",
        "members may create and change stdio servers, i.e. run commands on the gateway's host (true|false)",
        "false",
    ),
    (
        "MEMBERS_MAY_USE_PRIVATE_NETWORKS",
        "members' HTTP/SSE servers may point at loopback, private, link-local and CGNAT addresses (true|false)",
        "false",
    ),
    (
        "OAUTH_ACCESS_TOKEN_LIFETIME",
        "how long an OAuth access token for an endpoint is valid, in ms (at most 300000)",
        "300000",
    ),
    (
        "OAUTH_REFRESH_TOKEN_LIFETIME",
        "how long an OAuth grant can be refreshed after consent, in ms (absolute)",
        "604800000",
    ),
    (
        "OAUTH_CODE_LIFETIME",
        "how long an OAuth authorization code can be redeemed, in ms (at most 600000)",
        "60000",
    ),
    (
        "OAUTH_DYNAMIC_REGISTRATION",
        "clients may register themselves (RFC 7591) at /oauth/register (true|false)",
        "true",
    ),
    (
        "OAUTH_CIMD_FETCH_TIMEOUT",
        "how long fetching a client ID metadata document may take, in ms (at most 10000)",
        "5000",
    ),
    (
        "OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS",
        "client ID metadata documents may be fetched from loopback, private, link-local and CGNAT addresses (true|false)",
        "false",
    ),
];

/// Checks a value for `key`; the error says what is expected.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let Some((_, meaning, _)) = KEYS.iter().find(|(k, _, _)| *k == key) else {
        let known: Vec<&str> = KEYS.iter().map(|(k, _, _)| *k).collect();
        return Err(format!(
            "unknown setting {key:?} (known: {})",
            known.join(", ")
        ));
    };
    let ok = match key {
        "MCP_RESET_TIMEOUT_ON_PROGRESS"
        | "MCP_EAGER_START"
        | "DISABLE_SIGNUP"
        | "DISABLE_SSO_SIGNUP"
        | "DISABLE_BASIC_AUTH"
        | "MEMBERS_MAY_ADD_STDIO"
        | "MEMBERS_MAY_USE_PRIVATE_NETWORKS"
        | "OAUTH_DYNAMIC_REGISTRATION"
        | "OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS" => parse_bool(value).is_some(),
        "OAUTH_ACCESS_TOKEN_LIFETIME" => parse_ms(value).is_some_and(|d| d.as_millis() <= 300_000),
        "OAUTH_CODE_LIFETIME" => parse_ms(value).is_some_and(|d| d.as_millis() <= 600_000),
        "OAUTH_CIMD_FETCH_TIMEOUT" => parse_ms(value).is_some_and(|d| d.as_millis() <= 10_000),
        "OAUTH_REFRESH_TOKEN_LIFETIME" => value
            .trim()
            .parse::<u64>()
            .is_ok_and(|ms| (1..=400 * 86_400_000).contains(&ms)),
        "MCP_IDLE_STOP" => value.trim() == "0" || parse_ms(value).is_some(),
        "MCP_MAX_ATTEMPTS" => value
            .trim()
            .parse::<u32>()
            .is_ok_and(|n| (1..=100).contains(&n)),
        _ => parse_ms(value).is_some(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{key}: {value:?} is not valid ({meaning})"))
    }
}

fn parse_ms(v: &str) -> Option<Duration> {
    let ms: u64 = v.trim().parse().ok()?;
    (1..=86_400_000 * 7)
        .contains(&ms)
        .then(|| Duration::from_millis(ms))
}

/// `true|false|1|0|yes|no|on|off`, any case.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The settings in force: stored values over the defaults; an unreadable value keeps the
/// default (and is logged), so a bad row never stops the gateway.
#[derive(Debug, Clone)]
pub struct Effective {
    pub pool: PoolOptions,
    pub session_idle: Duration,
    pub signup: SignupPolicy,
    pub oauth: OAuthSettings,
    /// `MCP_LIST_TIMEOUT`: the wait for a server on a list.
    pub list_timeout: Duration,
    /// `MCP_LIST_FIRST_TIMEOUT`: the wait on the first list a server is asked for.
    pub first_list_timeout: Duration,
}

/// The OAuth authorization server's lifetimes and switches (`OAUTH_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthSettings {
    pub access_token_ms: i64,
    pub refresh_token_ms: i64,
    pub code_ms: i64,
    pub dynamic_registration: bool,
    pub cimd_timeout_ms: u64,
    pub cimd_allow_private: bool,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        OAuthSettings {
            access_token_ms: 300_000,
            refresh_token_ms: 7 * 86_400_000,
            code_ms: 60_000,
            dynamic_registration: true,
            cimd_timeout_ms: 5_000,
            cimd_allow_private: false,
        }
    }
}

/// Who may make an account or sign in with a password (`DISABLE_*`, as MetaMCP names them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignupPolicy {
    pub disable_signup: bool,
    pub disable_sso_signup: bool,
    pub disable_basic_auth: bool,
}

impl SignupPolicy {
    /// Each switch the environment sets (`Some`) wins over the stored setting.
    pub fn overridden_by(self, env: &SignupOverrides) -> SignupPolicy {
        SignupPolicy {
            disable_signup: env.disable_signup.unwrap_or(self.disable_signup),
            disable_sso_signup: env.disable_sso_signup.unwrap_or(self.disable_sso_signup),
            disable_basic_auth: env.disable_basic_auth.unwrap_or(self.disable_basic_auth),
        }
    }
}

/// The `DISABLE_*` variables of the process environment, when set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignupOverrides {
    pub disable_signup: Option<bool>,
    pub disable_sso_signup: Option<bool>,
    pub disable_basic_auth: Option<bool>,
}

pub fn effective(
    stored: &[(String, String)],
    defaults: &PoolOptions,
    session_idle: Duration,
) -> Effective {
    let mut out = Effective {
        pool: defaults.clone(),
        session_idle,
        signup: SignupPolicy::default(),
        oauth: OAuthSettings::default(),
        list_timeout: Duration::from_millis(2_000),
        first_list_timeout: Duration::from_millis(10_000),
    };
    for (key, value) in stored {
        if validate(key, value).is_err() {
            if KEYS.iter().any(|(k, _, _)| k == key) {
                tracing::warn!(key, "stored setting is not valid; using the default");
            }
            continue;
        }
        let ms = || parse_ms(value);
        match key.as_str() {
            "MCP_TIMEOUT" => out.pool.request_timeout = ms().unwrap_or(out.pool.request_timeout),
            "MCP_MAX_TOTAL_TIMEOUT" => {
                out.pool.max_total_timeout = ms().unwrap_or(out.pool.max_total_timeout)
            }
            "MCP_RESET_TIMEOUT_ON_PROGRESS" => {
                out.pool.reset_timeout_on_progress = parse_bool(value).unwrap_or(true);
            }
            "MCP_MAX_ATTEMPTS" => {
                out.pool.max_attempts = value.trim().parse().unwrap_or(out.pool.max_attempts)
            }
            "MCP_BREAKER_COOLDOWN" => {
                out.pool.breaker_cooldown = ms().unwrap_or(out.pool.breaker_cooldown)
            }
            "MCP_START_TIMEOUT" => out.pool.start_timeout = ms().unwrap_or(out.pool.start_timeout),
            "SESSION_LIFETIME" => out.session_idle = ms().unwrap_or(out.session_idle),
            "MCP_LIST_TIMEOUT" => out.list_timeout = ms().unwrap_or(out.list_timeout),
            "MCP_LIST_FIRST_TIMEOUT" => {
                out.first_list_timeout = ms().unwrap_or(out.first_list_timeout)
            }
            "MCP_IDLE_STOP" => out.pool.idle_stop = ms(),
            "MCP_EAGER_START" => out.pool.eager_start = parse_bool(value).unwrap_or(false),
            "DISABLE_SIGNUP" => out.signup.disable_signup = parse_bool(value).unwrap_or(false),
            "DISABLE_SSO_SIGNUP" => {
                out.signup.disable_sso_signup = parse_bool(value).unwrap_or(false)
            }
            "DISABLE_BASIC_AUTH" => {
                out.signup.disable_basic_auth = parse_bool(value).unwrap_or(false)
            }
            "OAUTH_ACCESS_TOKEN_LIFETIME" | "OAUTH_CODE_LIFETIME" | "OAUTH_CIMD_FETCH_TIMEOUT" => {
                let ms = value.trim().parse::<i64>().unwrap_or(0);
                match key.as_str() {
                    "OAUTH_ACCESS_TOKEN_LIFETIME" => out.oauth.access_token_ms = ms,
                    "OAUTH_CODE_LIFETIME" => out.oauth.code_ms = ms,
                    _ => out.oauth.cimd_timeout_ms = u64::try_from(ms).unwrap_or(5_000),
                }
            }
            "OAUTH_REFRESH_TOKEN_LIFETIME" => {
                out.oauth.refresh_token_ms = value.trim().parse().unwrap_or(7 * 86_400_000)
            }
            "OAUTH_DYNAMIC_REGISTRATION" => {
                out.oauth.dynamic_registration = parse_bool(value).unwrap_or(true)
            }
            "OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS" => {
                out.oauth.cimd_allow_private = parse_bool(value).unwrap_or(false)
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_applies() {
        assert!(validate("MCP_TIMEOUT", "5000").is_ok());
        assert!(validate("MCP_TIMEOUT", "soon").is_err());
        assert!(validate("MCP_TIMEOUT", "0").is_err());
        assert!(validate("MCP_MAX_ATTEMPTS", "0").is_err());
        assert!(validate("MCP_RESET_TIMEOUT_ON_PROGRESS", "false").is_ok());
        assert!(validate("NOPE", "1").unwrap_err().contains("MCP_TIMEOUT"));
        let stored = vec![
            ("MCP_TIMEOUT".to_owned(), "1500".to_owned()),
            ("MCP_MAX_ATTEMPTS".to_owned(), "5".to_owned()),
            ("SESSION_LIFETIME".to_owned(), "2000".to_owned()),
            ("MCP_RESET_TIMEOUT_ON_PROGRESS".to_owned(), "off".to_owned()),
            ("MCP_BREAKER_COOLDOWN".to_owned(), "garbage".to_owned()),
        ];
        let e = effective(&stored, &PoolOptions::default(), Duration::from_secs(3600));
        assert_eq!(e.pool.request_timeout, Duration::from_millis(1500));
        assert_eq!(e.pool.max_attempts, 5);
        assert!(!e.pool.reset_timeout_on_progress);
        assert_eq!(
            e.pool.breaker_cooldown,
            PoolOptions::default().breaker_cooldown
        );
        assert_eq!(e.session_idle, Duration::from_secs(2));
    }
}
