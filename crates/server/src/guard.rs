//! The API's edge: checks every request makes before any handler runs, so that no other origin can
//! drive the server (a web page the user visits, a DNS-rebound name, another user on the network).
//!
//! In order, each refusal in the JSON error shape and before any write:
//! 1. `Host` must name this server (403 `forbidden_host`): an IP literal, `localhost`, or a name
//!    given with `--allowed-host`. DNS rebinding needs a name the attacker controls; IP literals
//!    and `localhost` cannot be rebound, so names (not ports) are what is checked, and an SSH
//!    tunnel on another local port still works.
//! 2. A browser's own word that the request comes from elsewhere is final (403 `cross_origin`): an
//!    `Origin` other than the server's own (`null` included), or `Sec-Fetch-Site: cross-site` or
//!    `same-site` (another port of `localhost` is the same *site*).
//! 3. The API token (401 `unauthorized`): required on every request when the server is bound to a
//!    non-loopback address, optional on loopback, and a presented token that is wrong is refused
//!    everywhere. `/healthz` is open; `/mcp` has its own per-thread agent tokens.
//!    A browser signed in through the web UI's login presents the session cookie instead
//!    ([`crate::ui::login`]); a cookie that does not match is ignored, not refused (another local
//!    app can plant cookies for this host). A web page (`/`, `/tasks/…`, `/agents`) without the
//!    token is redirected to `/login`; the login page and the UI's assets are open.
//! 4. A request with a body must say it is JSON (415 `unsupported_media_type`): a web page can send
//!    `text/plain`, a form or `multipart/form-data` anywhere without asking, but
//!    `application/json` only after a CORS preflight, which this server never grants.
//!    `/api/v1/plans/parse` takes `text/markdown` (not CORS-safelisted either) instead.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN,
};
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::ApiSettings;

/// The one endpoint that takes a body other than JSON: the plan parser reads raw Markdown.
const PLAN_PARSE_PATH: &str = "/api/v1/plans/parse";
/// The live event stream: the one endpoint that also takes the token as a query parameter.
pub const EVENT_STREAM_PATH: &str = "/api/v1/events/stream";
/// The query parameter carrying the token on [`EVENT_STREAM_PATH`].
pub const TOKEN_QUERY_PARAM: &str = "access_token";
/// Open to everyone: liveness probes carry no credentials.
const HEALTH_PATH: &str = "/healthz";

/// The API token: a shared secret, never logged (its `Debug` is redacted).
#[derive(Clone)]
pub struct ApiToken {
    /// SHA-256 of the token, hex: comparisons run over equal-length digests in constant time.
    digest: String,
}

impl ApiToken {
    pub fn new(token: &str) -> Self {
        Self {
            digest: spectask_store::hash_agent_token(token),
        }
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(&self.digest, &spectask_store::hash_agent_token(presented))
    }

    /// The web UI's session cookie for this token: derived from it, so the cookie never carries
    /// the token itself, and stable across restarts.
    pub fn session_cookie_value(&self) -> String {
        spectask_store::hash_agent_token(&format!("spectask-ui-session:{}", self.digest))
    }

    /// Whether `cookie` is this token's session cookie.
    pub fn matches_session_cookie(&self, cookie: &str) -> bool {
        constant_time_eq(&self.session_cookie_value(), cookie)
    }
}

/// Equality of two strings in time independent of where they differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let difference = a
        .bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0 && a.len() == b.len()
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// What the checks need, resolved once the server is bound.
#[derive(Debug)]
pub struct Guard {
    allowed_hosts: Vec<String>,
    token: Option<ApiToken>,
    require_token: bool,
}

impl Guard {
    /// The checks for a server bound at `bound` with `settings`. A non-loopback bind always
    /// requires the token, whatever the settings say.
    pub fn new(bound: SocketAddr, settings: &ApiSettings) -> Self {
        Self {
            allowed_hosts: settings
                .allowed_hosts
                .iter()
                .map(|host| host.trim().to_ascii_lowercase())
                .filter(|host| !host.is_empty())
                .collect(),
            token: settings.api_token.clone(),
            require_token: settings.require_api_token || !bound.ip().is_loopback(),
        }
    }

    fn check_host(&self, request: &Request) -> Result<(), ApiError> {
        let authority = match request.headers().get(HOST) {
            Some(value) => value.to_str().ok().map(str::to_owned),
            None => request.uri().authority().map(|a| a.as_str().to_owned()),
        };
        let Some(authority) = authority else {
            return Err(ApiError::ForbiddenHost(
                "the request names no Host; spectask answers only requests addressed to it".into(),
            ));
        };
        let authority = authority.trim().to_ascii_lowercase();
        let (host, _port) = split_authority(&authority);
        let allowed = host == "localhost"
            || host.parse::<IpAddr>().is_ok()
            || self
                .allowed_hosts
                .iter()
                .any(|name| *name == authority || name == host);
        if allowed {
            Ok(())
        } else {
            Err(ApiError::ForbiddenHost(format!(
                "Host `{authority}` is not this server's; name it by IP address or `localhost`, \
                 or allow the name with --allowed-host"
            )))
        }
    }

    fn check_origin(request: &Request) -> Result<(), ApiError> {
        let headers = request.headers();
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.to_str().unwrap_or_default().trim();
            if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
                return Err(ApiError::CrossOrigin(format!(
                    "the browser marked this request `Sec-Fetch-Site: {site}`; spectask answers \
                     only its own origin"
                )));
            }
        }
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(());
        };
        let host = headers
            .get(HOST)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
            .unwrap_or_default();
        if same_origin(origin, &host) {
            Ok(())
        } else {
            Err(ApiError::CrossOrigin(format!(
                "Origin `{}` is not this server's; spectask answers only its own origin",
                origin.to_str().unwrap_or("<not text>")
            )))
        }
    }

    /// Checks the token and returns the request's URI without the query token, if it had one.
    fn check_token(&self, request: &Request) -> Result<Option<Uri>, ApiError> {
        let path = request.uri().path();
        if path == HEALTH_PATH || path == crate::mcp::MCP_PATH || crate::ui::is_open(path) {
            return Ok(None);
        }
        let (presented, stripped) = presented_token(request)?;
        if presented.is_none() && self.has_session_cookie(request) {
            return Ok(stripped);
        }
        match (presented, &self.token) {
            (Some(presented), Some(token)) if token.matches(&presented) => Ok(stripped),
            (Some(_), Some(_)) => Err(ApiError::Unauthorized("the API token is wrong".into())),
            (Some(_), None) => Err(ApiError::Unauthorized(
                "the API token is wrong: this server has none".into(),
            )),
            (None, _) if self.require_token => Err(ApiError::Unauthorized(
                "an API token is required: Authorization: Bearer <token> (the token is \
                 --api-token, or the file api-token in the data directory)"
                    .into(),
            )),
            (None, _) => Ok(stripped),
        }
    }

    /// Whether the request carries the web UI's session cookie for this server's token.
    fn has_session_cookie(&self, request: &Request) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        request
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(crate::ui::login::session_cookie)
            .any(|cookie| token.matches_session_cookie(cookie))
    }

    fn check_content_type(request: &Request) -> Result<(), ApiError> {
        if !has_body(request) {
            return Ok(());
        }
        let expected = if request.uri().path() == PLAN_PARSE_PATH {
            "text/markdown"
        } else {
            "application/json"
        };
        let essence = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        match essence {
            Some(essence) if essence == expected => Ok(()),
            Some(essence) => Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type `{essence}` is not accepted here; send `{expected}`"
            ))),
            None => Err(ApiError::UnsupportedMediaType(format!(
                "a request body needs `Content-Type: {expected}`"
            ))),
        }
    }
}

/// The middleware: runs the checks in order and refuses at the first that fails.
pub async fn check(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let checked = guard
        .check_host(&request)
        .and_then(|()| Guard::check_origin(&request))
        .and_then(|()| guard.check_token(&request))
        .and_then(|stripped| Guard::check_content_type(&request).map(|()| stripped));
    match checked {
        Ok(stripped) => {
            if let Some(uri) = stripped {
                *request.uri_mut() = uri;
            }
            next.run(request).await
        }
        Err(ApiError::Unauthorized(_))
            if request.method() == axum::http::Method::GET
                && crate::ui::is_page(request.uri().path()) =>
        {
            login_redirect(request.uri())
        }
        Err(err @ ApiError::Unauthorized(_)) => {
            let mut response = err.into_response();
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"spectask\""),
            );
            response
        }
        Err(err) => err.into_response(),
    }
}

/// A page opened without the token: 303 to the login page, which returns to `uri` after.
fn login_redirect(uri: &Uri) -> Response {
    let next = uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect::<String>();
    let mut response = axum::http::StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/login?next={next}")) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// The token a request presents, and for the event stream its URI without the query token (so
/// the handler's strict query parsing never sees it).
///
/// Why a query form at all: the browser's `EventSource` cannot send headers, so a page without
/// the session cookie could not present the token on the stream otherwise. It is accepted on the
/// stream only, a read-only endpoint, to keep tokens out of URLs everywhere else.
fn presented_token(request: &Request) -> Result<(Option<String>, Option<Uri>), ApiError> {
    if let Some(value) = request.headers().get(AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default().trim();
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(ApiError::Unauthorized(
                    "the Authorization header must be `Bearer <token>`".into(),
                ));
            }
        };
        return Ok((Some(token.to_owned()), None));
    }
    if request.uri().path() != EVENT_STREAM_PATH {
        return Ok((None, None));
    }
    let Some(query) = request.uri().query() else {
        return Ok((None, None));
    };
    let mut token = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((TOKEN_QUERY_PARAM, value)) => token = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    let Some(token) = token else {
        return Ok((None, None));
    };
    let path_and_query = if kept.is_empty() {
        request.uri().path().to_owned()
    } else {
        format!("{}?{}", request.uri().path(), kept.join("&"))
    };
    let uri = Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .map_err(|err| ApiError::InvalidQuery(format!("malformed query: {err}")))?;
    Ok((Some(token), Some(uri)))
}

/// Decodes `%XX` escapes and `+` (a query token is usually hex, but may be anything the user
/// chose); malformed escapes are kept as they are, so they simply fail to match.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `host[:port]` (with `[v6]` literals) into the host, without brackets, and the port.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, Some(port)),
        _ => (authority, None),
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of a server reached as `host`
/// (the request's `Host`), default ports aside.
fn same_origin(origin: &HeaderValue, host: &str) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().to_ascii_lowercase();
    let Some((scheme, authority)) = origin.split_once("://") else {
        // `null` (sandboxed frames, files, redirects) and anything else unparsable.
        return false;
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let normalise = |authority: &str| -> String {
        let authority = authority.trim().trim_end_matches('/').to_ascii_lowercase();
        match split_authority(&authority) {
            (host, Some(port)) if port == default_port => {
                if authority.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.to_owned()
                }
            }
            _ => authority,
        }
    };
    normalise(authority) == normalise(host)
}

/// Whether the request carries a body: a non-zero `Content-Length`, or a chunked one.
fn has_body(request: &Request) -> bool {
    let headers = request.headers();
    if headers.contains_key(axum::http::header::TRANSFER_ENCODING) {
        return true;
    }
    match headers.get(CONTENT_LENGTH) {
        Some(length) => length
            .to_str()
            .ok()
            .and_then(|length| length.trim().parse::<u64>().ok())
            .is_none_or(|length| length > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let token = ApiToken::new("0123456789abcdef0123456789abcdef");
        assert!(token.matches("0123456789abcdef0123456789abcdef"));
        assert!(!token.matches("0123456789abcdef0123456789abcdee"));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let origin = |value: &str| HeaderValue::from_str(value).unwrap();
        assert!(same_origin(
            &origin("http://127.0.0.1:8080"),
            "127.0.0.1:8080"
        ));
        assert!(same_origin(
            &origin("http://LOCALHOST:8080"),
            "localhost:8080"
        ));
        assert!(same_origin(
            &origin("https://spec.example"),
            "spec.example:443"
        ));
        assert!(same_origin(&origin("http://[::1]:80"), "[::1]"));
        assert!(!same_origin(
            &origin("http://localhost:3000"),
            "localhost:8080"
        ));
        assert!(!same_origin(
            &origin("http://evil.example"),
            "127.0.0.1:8080"
        ));
        assert!(!same_origin(&origin("null"), "127.0.0.1:8080"));
        assert!(!same_origin(&origin("file://"), ""));
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split_authority("[::1]:8080"), ("::1", Some("8080")));
        assert_eq!(split_authority("localhost"), ("localhost", None));
        assert_eq!(split_authority("a.example:1"), ("a.example", Some("1")));
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb+c%zz%4"), "a+b c%zz%4");
    }
}
