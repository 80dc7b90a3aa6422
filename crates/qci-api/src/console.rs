//! The web console, served at `/` from the files `qci-console` embeds: `/console/<file>` is a
//! file, `/v1/...` that matched no route is the API's 404, and every other address is the
//! console's one page (its script draws the view the address names, so a reload or a shared
//! link works). The files are public; everything they show comes from `/v1` with the
//! session cookie.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// What the console's pages may do: scripts and connections to this server only (a WebSocket
/// to it included), no frames around them, styles inline for xterm.js' own.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The fallback of the API's router: see the module's doc.
pub async fn page(req: Request) -> Response {
    let path = req.uri().path();
    if path == "/v1" || path.starts_with("/v1/") {
        return ApiError::NotFound(format!("no API route {} {path}", req.method())).into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiError::NotFound(format!(
            "{} {path}: the console's pages are read with GET; the API is under /v1",
            req.method()
        ))
        .into_response();
    }
    let asset = match path.strip_prefix("/console/") {
        Some(file) => match qci_console::asset(file) {
            Some(a) => a,
            None => {
                return ApiError::NotFound(format!("the console has no file {file:?}"))
                    .into_response();
            }
        },
        None => qci_console::index(),
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, etag);
    }
    // Checked each time (a 304 costs nothing), so a new qci binary's console is used at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
