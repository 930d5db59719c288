//! A bearer-token server for a registry configured with `auth: token:` (distribution 2.8).
//!
//! The registry answers 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`; the
//! client asks the realm for a token with HTTP basic credentials; the registry then checks the
//! token: issuer and audience (`aud`, a single string in 2.8), `exp`/`nbf`, and the ES256 signature
//! by the key of the leaf certificate in the `x5c` header, whose chain must end at a certificate in
//! the rootcertbundle. Here the leaf is the self-signed root itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// `service` in the registry's config and the tokens' audience.
pub const SERVICE: &str = "wharf-test-registry";
/// `issuer` in the registry's config and the tokens' `iss`.
pub const ISSUER: &str = "wharf-test-token-issuer";

struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// Standard base64 of the certificate's DER, for `x5c`.
    cert_b64: String,
    user: String,
    password: String,
    issued: AtomicUsize,
    refused: AtomicUsize,
}

/// A running token server on a loopback port, stopped on drop.
pub struct TokenServer {
    /// The token endpoint: `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// PEM of the signing certificate: the registry's rootcertbundle.
    pub cert_pem: String,
    pub user: String,
    pub password: String,
    signer: Arc<Signer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    /// Starts a server that issues tokens to `user`/`password` only.
    pub fn start(user: &str, password: &str) -> TokenServer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let mut params =
            rcgen::CertificateParams::new(vec!["wharf-test-token".to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wharf test token issuer");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        let rng = SystemRandom::new();
        let signing =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
                .expect("ring accepts the rcgen key");
        let signer = Arc::new(Signer {
            key: signing,
            rng,
            cert_b64: base64::engine::general_purpose::STANDARD.encode(cert.der().as_ref()),
            user: user.to_string(),
            password: password.to_string(),
            issued: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = signer.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new()
                    .route("/token", axum::routing::get(issue))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        TokenServer {
            realm: format!("http://127.0.0.1:{port}/token"),
            cert_pem: cert.pem(),
            user: user.to_string(),
            password: password.to_string(),
            signer,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> usize {
        self.signer.issued.load(Ordering::SeqCst)
    }

    /// How many token requests were refused (bad or missing credentials).
    pub fn refused(&self) -> usize {
        self.signer.refused.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /token?service=...&scope=repository:NAME:pull,push&...` with basic credentials.
async fn issue(
    State(signer): State<Arc<Signer>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params: Vec<(String, String)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let credentials = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let expected = format!("{}:{}", signer.user, signer.password);
    if credentials.as_deref() != Some(expected.as_str()) {
        signer.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"wharf-test-token\"")],
            axum::Json(serde_json::json!({"details": "incorrect username or password"})),
        )
            .into_response();
    }
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let access: Vec<serde_json::Value> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|scope| {
            // type:name:actions, the name may hold a port (host:port/repo is not used here).
            let (rest, actions) = scope.rsplit_once(':')?;
            let (kind, name) = rest.split_once(':')?;
            Some(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [signer.cert_b64],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": signer.user,
        "aud": service,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("wharf-test-{}-{}", now, signer.issued.load(Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = signer
        .key
        .sign(&signer.rng, signing_input.as_bytes())
        .expect("ES256 signature");
    let token = format!("{signing_input}.{}", b64url(signature.as_ref()));
    signer.issued.fetch_add(1, Ordering::SeqCst);
    axum::Json(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": 300,
        "issued_at": chrono_like_now(now),
    }))
    .into_response()
}

/// RFC 3339 UTC time of `secs` since the epoch.
fn chrono_like_now(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
