//! The web console: its files, embedded in the binary at build time, so a plain `cargo build`
//! gives the whole product and no request leaves the machine.
//!
//! The console is a small single-page application in plain JavaScript modules (no build step,
//! no framework; `assets/`), with xterm.js and uPlot vendored as released files with their
//! licences (`assets/vendor/`, refreshed by `scripts/vendor-console.sh`). It uses nothing but the
//! public `/v1` API, signed in with a session cookie, so whatever it does the CLI can do too.
//! This crate only holds the files; `qci-api` serves them (`console.rs` there).

use std::sync::LazyLock;

/// One embedded file.
pub struct Asset {
    /// Its path under `/console/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// A strong validator of the content (for `ETag`).
    pub etag: String,
}

macro_rules! assets {
    ($(($path:literal, $type:expr)),* $(,)?) => {
        [$(($path, $type, include_bytes!(concat!("../assets/", $path)) as &[u8])),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

static FILES: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    assets![
        ("index.html", "text/html; charset=utf-8"),
        ("style.css", CSS),
        ("app.js", JS),
        ("ui.js", JS),
        ("list.js", JS),
        ("detail.js", JS),
        ("wizard.js", JS),
        ("resources.js", JS),
        ("vendor/VERSIONS", TEXT),
        ("vendor/xterm/xterm.mjs", JS),
        ("vendor/xterm/addon-fit.mjs", JS),
        ("vendor/xterm/xterm.css", CSS),
        ("vendor/xterm/LICENSE", TEXT),
        ("vendor/xterm/LICENSE.addon-fit", TEXT),
        ("vendor/uplot/uPlot.iife.min.js", JS),
        ("vendor/uplot/uPlot.min.css", CSS),
        ("vendor/uplot/LICENSE", TEXT),
    ]
    .into_iter()
    .map(|(path, content_type, body)| {
        use sha2::Digest;
        let etag = format!("\"{}\"", &hex::encode(sha2::Sha256::digest(body))[..20]);
        Asset {
            path,
            content_type,
            body,
            etag,
        }
    })
    .collect()
});

/// The file at `path` (relative to `/console/`), if there is one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    FILES.iter().find(|a| a.path == path)
}

/// The page every console address answers with; the script then draws the view the address
/// names.
pub fn index() -> &'static Asset {
    asset("index.html").expect("index.html is embedded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_there_and_typed() {
        assert!(index().body.starts_with(b"<!doctype html>"));
        for a in FILES.iter() {
            assert!(!a.body.is_empty(), "{}", a.path);
            assert_eq!(a.etag.len(), 22, "{}", a.path);
        }
        assert_eq!(asset("app.js").unwrap().content_type, JS);
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("").is_none());
    }

    /// Every module the console imports is embedded (a missing one would only show in a browser).
    #[test]
    fn every_import_is_embedded() {
        for a in FILES
            .iter()
            .filter(|a| a.path.ends_with(".js") && !a.path.starts_with("vendor/"))
        {
            let text = std::str::from_utf8(a.body).unwrap();
            for part in text.split("/console/").skip(1) {
                let path: String = part
                    .chars()
                    .take_while(|c| !matches!(c, '"' | '\'' | '`' | '?' | ')' | ' '))
                    .collect();
                if path.ends_with(".js") || path.ends_with(".mjs") || path.ends_with(".css") {
                    assert!(
                        asset(&path).is_some(),
                        "{} refers to /console/{path}",
                        a.path
                    );
                }
            }
        }
    }
}
