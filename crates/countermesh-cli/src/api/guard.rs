//! The guards every request passes before a handler runs: the `Host` check against DNS
//! rebinding, bearer-token authentication, and the JSON content-type rule against
//! cross-site posts.
//!
//! Why the `Host` check: a web page on a name the attacker controls can re-point that
//! name at 127.0.0.1 after loading (DNS rebinding). The browser then treats the agent as
//! the page's own origin, so the page may read answers and post JSON without a CORS
//! preflight. Its requests still carry the attacker's name in `Host`, so answering only
//! names that cannot be rebound (loopback names and addresses, the address the agent
//! listens on, IP literals when it listens on every interface) and names the operator
//! listed with `--allowed-host` shuts that door.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::Shared;
use crate::api::error::ApiError;

/// The `Host` values the agent answers.
#[derive(Debug, Clone)]
pub(crate) struct AllowedHosts {
    /// The IP the HTTP listener is bound to.
    bind: IpAddr,
    /// Names (lower case, no trailing dot) and addresses given with `--allowed-host`.
    names: Vec<String>,
    addrs: Vec<IpAddr>,
}

/// The host part of a `Host` header.
#[derive(Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl AllowedHosts {
    /// Loopback names, `http`'s address, and `extra` (validated names or addresses).
    pub(crate) fn new(http: SocketAddr, extra: &[String]) -> Self {
        let mut names = Vec::new();
        let mut addrs = Vec::new();
        for entry in extra {
            match parse_host(entry) {
                Some(Host::Ip(ip)) => addrs.push(ip),
                Some(Host::Name(name)) => names.push(name),
                None => {}
            }
        }
        Self {
            bind: http.ip(),
            names,
            addrs,
        }
    }

    /// Whether a request whose `Host` header is `value` may be answered.
    pub(crate) fn allows(&self, value: &str) -> bool {
        match parse_host(value) {
            Some(Host::Ip(ip)) => {
                ip.is_loopback()
                    || ip == self.bind
                    // An IP literal cannot be rebound, and an agent listening on every
                    // interface cannot know all the addresses it is reached by.
                    || self.bind.is_unspecified()
                    || self.addrs.contains(&ip)
            }
            Some(Host::Name(name)) => name == "localhost" || self.names.contains(&name),
            None => false,
        }
    }
}

/// Checks one `--allowed-host` entry: a DNS name or an IP address, without a port.
pub(crate) fn validate_allowed_host(entry: &str) -> Result<(), String> {
    let entry = entry.trim();
    if entry.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = entry.trim_end_matches('.');
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{entry:?} is not a host name or IP address (give the name without a scheme or \
             port, e.g. counters.internal)"
        ))
    }
}

/// The host of a `Host` header (or an `--allowed-host` entry): a bracketed or bare IP
/// address or a name, without its port, lower case, without a trailing dot.
fn parse_host(value: &str) -> Option<Host> {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return ip.parse().ok().map(Host::Ip);
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        // A bare IPv6 address (only from `--allowed-host`; `Host` brackets them).
        return Some(Host::Ip(ip));
    }
    let host = match value.rsplit_once(':') {
        Some((host, port)) if is_port(port) => host,
        Some(_) => return None,
        None => value,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(host),
    })
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Refuses a request whose `Host` the agent does not answer (see the module docs).
/// A request without `Host` does not come from a browser and passes.
pub(crate) async fn check_host(State(state): Shared, request: Request, next: Next) -> Response {
    if let Some(value) = request.headers().get(header::HOST) {
        let host = String::from_utf8_lossy(value.as_bytes());
        if !state.allowed_hosts.allows(&host) {
            return ApiError::host_not_allowed(&host).into_response();
        }
    }
    next.run(request).await
}

/// What every answer carries: no framing (clickjacking), no MIME sniffing, no caching
/// (answers are live and may be private), no referrer (the status page's URL may hold
/// its token), and a policy that allows only same-origin script, style and requests and
/// no inline script, so an injected name could never run code.
const SECURITY_HEADERS: [(header::HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Adds [`SECURITY_HEADERS`] to every response.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Refuses a POST that does not declare a JSON body: a browser cannot send that type
/// cross-site without a CORS preflight, which the agent never grants.
pub(crate) async fn require_json(request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return ApiError::unsupported_media_type().into_response();
        }
    }
    next.run(request).await
}

/// Rejects requests without the bearer token when one is configured.
pub(crate) async fn authenticate(State(state): Shared, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, credentials) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim().to_owned())
        });
    // A browser cannot set a header on a plain navigation, so the status page (and only
    // it) also takes the token from its query string; its script then sends the header.
    let from_query = || {
        (request.uri().path() == "/")
            .then(|| Query::<HashMap<String, String>>::try_from_uri(request.uri()).ok())
            .flatten()
            .and_then(|Query(mut query)| query.remove("token"))
    };
    let presented = bearer.or_else(from_query);
    if presented.is_some_and(|presented| same(presented.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = ApiError::unauthorized().into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares every byte whatever the first difference, so the time taken does not tell
/// a guesser how much of the token it got right. The RESP listener's AUTH uses it too.
pub(crate) fn same(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &byte) in expected.iter().enumerate() {
        diff |= byte ^ presented.get(i).copied().unwrap_or(!byte);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secreT", b"secret"));
        assert!(!same(b"secret2", b"secret"));
        assert!(!same(b"secre", b"secret"));
        assert!(!same(b"", b"secret"));
    }

    #[test]
    fn host_headers_are_parsed_without_their_port() {
        let ip = |s: &str| Some(Host::Ip(s.parse().unwrap()));
        let name = |s: &str| Some(Host::Name(s.to_owned()));
        assert_eq!(parse_host("LocalHost:8080"), name("localhost"));
        assert_eq!(parse_host("example.com."), name("example.com"));
        assert_eq!(parse_host("127.0.0.1:80"), ip("127.0.0.1"));
        assert_eq!(parse_host("[::1]:8080"), ip("::1"));
        assert_eq!(parse_host("[::1]"), ip("::1"));
        assert_eq!(parse_host("::1"), ip("::1"));
        assert_eq!(parse_host("[::1]x"), None);
        assert_eq!(parse_host("a:b"), None);
        assert_eq!(parse_host(":80"), None);
        assert_eq!(parse_host(""), None);
    }

    #[test]
    fn only_unrebindable_or_listed_hosts_are_allowed() {
        let local = AllowedHosts::new("127.0.0.1:8080".parse().unwrap(), &["Mesh.Lan".into()]);
        for ok in [
            "localhost",
            "127.0.0.1:8080",
            "127.9.9.9",
            "[::1]:1",
            "mesh.lan:8080",
        ] {
            assert!(local.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1",
            "",
            "mesh.lan.x",
        ] {
            assert!(!local.allows(refused), "{refused}");
        }
        let everywhere = AllowedHosts::new("0.0.0.0:8080".parse().unwrap(), &[]);
        assert!(everywhere.allows("10.0.0.1:8080"));
        assert!(!everywhere.allows("evil.example"));
        let lan = AllowedHosts::new("10.0.0.5:8080".parse().unwrap(), &["10.0.0.6".into()]);
        assert!(lan.allows("10.0.0.5:8080") && lan.allows("10.0.0.6"));
        assert!(!lan.allows("10.0.0.7"));
    }

    #[test]
    fn allowed_host_entries_are_validated() {
        assert!(validate_allowed_host("counters.internal").is_ok());
        assert!(validate_allowed_host("10.0.0.1").is_ok());
        assert!(validate_allowed_host("fe80::1").is_ok());
        assert!(validate_allowed_host("http://x").is_err());
        assert!(validate_allowed_host("x:80").is_err());
        assert!(validate_allowed_host("").is_err());
    }
}
