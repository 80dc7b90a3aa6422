//! What keeps a web page the operator happens to open from using the API: the `Host` must be
//! one this server answers for (so a DNS-rebound name is refused), a request that changes
//! something (or opens a WebSocket) from another origin is refused, and bodies must be JSON or
//! YAML, which no cross-site form or `fetch` without a preflight can send. No CORS headers are
//! ever sent, so no other origin can read an answer either.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

/// The names (beyond IP addresses and `localhost`) this server answers for, and its scheme.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// `--allowed-host` names, lower case, without ports.
    pub allowed_hosts: Vec<String>,
    /// Whether the API is served over TLS (the scheme of its own origin).
    pub tls: bool,
}

/// A `host[:port]` split, the host lower-cased and unbracketed.
fn split_host(authority: &str) -> (String, Option<u16>) {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        // [v6]:port
        let (h, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (h.to_ascii_lowercase(), port);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_ascii_lowercase(), p.parse().ok()),
        _ => (a.to_ascii_lowercase(), None),
    }
}

impl Origins {
    /// Whether `host` (a Host header's value) names this server: an IP address (which no DNS
    /// rebinding can produce), `localhost`, or an allowed name.
    pub fn host_allowed(&self, host: &str) -> bool {
        let (h, _) = split_host(host);
        h.parse::<std::net::IpAddr>().is_ok() || h == "localhost" || self.allowed_hosts.contains(&h)
    }

    /// Whether `origin` (an Origin header's value) is this server's own, as reached at `host`.
    pub fn same_origin(&self, origin: &str, host: &str) -> bool {
        let scheme = if self.tls { "https" } else { "http" };
        let default_port = if self.tls { 443 } else { 80 };
        let Some(rest) = origin
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("://"))
        else {
            return false;
        };
        let (oh, op) = split_host(rest);
        let (hh, hp) = split_host(host);
        oh == hh && op.unwrap_or(default_port) == hp.unwrap_or(default_port)
    }
}

/// Bodies the API reads: JSON, YAML where a spec is taken, and image archives (a tar). None
/// of them is a type a cross-site form may send without asking first.
fn body_type_ok(ct: &str) -> bool {
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/json"
            | "application/yaml"
            | "application/x-yaml"
            | "text/yaml"
            | "application/x-tar"
    )
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// Refuses what the module's doc says, before anything else runs.
pub fn check(
    o: &Origins,
    method: &Method,
    uri_host: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(uri_host)
        .ok_or_else(|| ApiError::BadRequest("the request has no Host".into()))?;
    if !o.host_allowed(host) {
        return Err(ApiError::Forbidden(format!(
            "Host {host:?} is not a name this server answers for (an IP address, localhost, or one given with qci serve --allowed-host)"
        )));
    }
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if (changes || websocket)
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("");
        if !o.same_origin(origin, host) {
            return Err(ApiError::Forbidden(format!(
                "a request from origin {origin:?} is refused: only this server's own pages may change things or open sessions"
            )));
        }
    }
    if changes && has_body(headers) {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !body_type_ok(ct) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type {ct:?} is not accepted: send application/json (application/yaml for a spec, application/x-tar for an image archive)"
            )));
        }
    }
    Ok(())
}

/// The middleware around [`check`].
pub async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let uri_host = req.uri().authority().map(|a| a.as_str().to_string());
    match check(&s.origins, req.method(), uri_host.as_deref(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts_origins_and_bodies() {
        let o = Origins {
            allowed_hosts: vec!["qci.example.com".into()],
            tls: false,
        };
        let (get, post) = (Method::GET, Method::POST);
        let json = ("content-type", "application/json");
        let len = ("content-length", "10");
        // (method, headers, refused with)
        type Row<'a> = (&'a Method, Vec<(&'static str, &'a str)>, Option<&'a str>);
        let table: Vec<Row> = vec![
            (&get, vec![("host", "127.0.0.1:7070")], None),
            (&get, vec![("host", "localhost:7070")], None),
            (&get, vec![("host", "[::1]:7070")], None),
            (&get, vec![("host", "QCI.example.com")], None),
            (&get, vec![("host", "evil.example:7070")], Some("Host")),
            (&get, vec![], Some("no Host")),
            // The cross-site request of the issue: text/plain from evil.example.
            (
                &post,
                vec![
                    ("host", "127.0.0.1:7070"),
                    ("origin", "http://evil.example"),
                    ("content-type", "text/plain"),
                    len,
                ],
                Some("origin"),
            ),
            (
                &post,
                vec![
                    ("host", "127.0.0.1:7070"),
                    ("content-type", "text/plain"),
                    len,
                ],
                Some("Content-Type"),
            ),
            (
                &post,
                vec![("host", "127.0.0.1:7070"), len],
                Some("Content-Type"),
            ),
            (
                &post,
                vec![
                    ("host", "127.0.0.1:7070"),
                    ("content-type", "application/json; charset=utf-8"),
                    len,
                ],
                None,
            ),
            (
                &post,
                vec![
                    ("host", "127.0.0.1:7070"),
                    ("content-type", "application/yaml"),
                    len,
                ],
                None,
            ),
            // No body (restart, prune): no type needed.
            (&post, vec![("host", "127.0.0.1:7070")], None),
            // The server's own page.
            (
                &post,
                vec![
                    ("host", "localhost:7070"),
                    ("origin", "http://localhost:7070"),
                    json,
                    len,
                ],
                None,
            ),
            (
                &post,
                vec![
                    ("host", "localhost:7070"),
                    ("origin", "https://localhost:7070"),
                    json,
                    len,
                ],
                Some("origin"),
            ),
            (
                &post,
                vec![("host", "localhost:7070"), ("origin", "null"), json, len],
                Some("origin"),
            ),
            // A WebSocket from elsewhere (exec), and a plain cross-origin GET (unreadable anyway).
            (
                &get,
                vec![
                    ("host", "127.0.0.1:7070"),
                    ("origin", "http://evil.example"),
                    ("upgrade", "websocket"),
                ],
                Some("origin"),
            ),
            (
                &get,
                vec![
                    ("host", "127.0.0.1:7070"),
                    ("origin", "http://evil.example"),
                ],
                None,
            ),
        ];
        for (m, h, want) in table {
            let got = check(&o, m, None, &headers(&h))
                .err()
                .map(|e| e.to_string());
            match (want, &got) {
                (None, None) => {}
                (Some(w), Some(g)) if g.contains(w) => {}
                _ => panic!("{m} {h:?}: got {got:?}, want {want:?}"),
            }
        }
        let tls = Origins {
            tls: true,
            ..Default::default()
        };
        assert!(tls.same_origin("https://localhost", "localhost:443"));
        assert!(!tls.same_origin("http://localhost:443", "localhost:443"));
    }
}
