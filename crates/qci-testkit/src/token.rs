//! A token server for the registry's Bearer flow (distribution's `auth.token`): it checks a
//! basic-auth login and answers a JWT signed with ES256 whose `x5c` certificate the registry
//! trusts (`rootcertbundle`), granting pull and push on the scope asked for.

use std::path::Path;

use crate::openssl;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SERVICE: &str = "qci-test-registry";
pub const ISSUER: &str = "qci-test-issuer";

pub struct TokenServer {
    pub port: u16,
    /// PEM of the certificate that signs tokens (the registry's `rootcertbundle`).
    pub cert_file: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenServer {
    /// Starts on a free port; the login it accepts is `user`/`password`.
    pub async fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "token.key",
                "-out",
                "token.pem",
                "-days",
                "2",
                "-subj",
                "/CN=qci-test-token-signer",
            ],
        );
        openssl(
            dir,
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                "token.key",
                "-outform",
                "DER",
                "-out",
                "token.pk8",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-in",
                "token.pem",
                "-outform",
                "DER",
                "-out",
                "token.der",
            ],
        );
        let pk8 = std::fs::read(dir.join("token.pk8")).expect("token.pk8");
        let der = std::fs::read(dir.join("token.der")).expect("token.der");
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pk8, &SystemRandom::new())
                .expect("token key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind token server");
        let port = listener.local_addr().expect("addr").port();
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        let state = Arc::new((key, STANDARD.encode(der), expected));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                        match sock.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                    }
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let (key, x5c, expected) = &*state;
                    let authorized = req.lines().any(|l| {
                        l.split_once(':').is_some_and(|(h, v)| {
                            h.eq_ignore_ascii_case("authorization") && v.trim() == expected
                        })
                    });
                    let resp = if authorized {
                        let scope = req
                            .lines()
                            .next()
                            .and_then(|l| l.split(' ').nth(1))
                            .and_then(|target| target.split_once('?'))
                            .map(|(_, q)| q)
                            .unwrap_or("")
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("scope="))
                            .map(|s| {
                                s.replace("%3A", ":")
                                    .replace("%2F", "/")
                                    .replace("%2C", ",")
                            })
                            .unwrap_or_default();
                        let token = sign(key, x5c, &scope);
                        let body = format!(
                            "{{\"token\":\"{token}\",\"access_token\":\"{token}\",\"expires_in\":300}}"
                        );
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        let body = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"wrong login\"}]}";
                        format!(
                            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        TokenServer {
            port,
            cert_file: dir.join("token.pem"),
            task,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

/// A JWT for `scope` (`repository:NAME:ACTIONS`), signed ES256 with the cert in `x5c`.
fn sign(key: &EcdsaKeyPair, x5c: &str, scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut access = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = s.splitn(3, ':').collect();
        if parts.len() == 3 {
            access.push(serde_json::json!({
                "type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()
            }));
        }
    }
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", scope.len()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("sign");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}
