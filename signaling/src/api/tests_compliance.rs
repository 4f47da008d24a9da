//! The compliance API end to end through the router: the access matrix of every role (by HS256
//! token, API key and OpenID Connect token checked against a JWKS served here) against every
//! endpoint, refused credentials, exports and their digest, search, holds, deletion, the audit
//! trail of it all, and the OpenAPI document against the routes.

use super::*;
use crate::auth::mint;
use crate::config::{ApiKey, AuthConfig};
use crate::store::AuditFilter;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use samtal_protocol::Segment;
use std::time::Duration;
use tower::ServiceExt;

const SECRET: &str = "compliance-test-secret";
const ISSUER_PATH: &str = "/realms/samtal";
const AUDIENCE: &str = "samtal";
const ROLES: [Role; 5] = [
    Role::Participant,
    Role::Service,
    Role::Moderator,
    Role::Compliance,
    Role::Administrator,
];

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    /// HS256 tokens and API keys.
    app: Router,
    /// OpenID Connect: RS256 tokens from the JWKS server below, roles in realm_access.roles.
    oidc: Router,
    issuer: String,
    jwks_server: tokio::task::JoinHandle<()>,
    alpha: String,
    beta: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.jwks_server.abort();
    }
}

fn api_key_for(role: Role) -> String {
    format!("samtal_test_key_for_{}", role_name(role))
}

fn seg(utterance: &str, who: &str, start_ms: i64, text: &str) -> Segment {
    Segment {
        utterance_id: utterance.into(),
        participant_id: who.into(),
        start_ms,
        end_ms: start_ms + 1_500,
        text: text.into(),
        language: Some("sv".into()),
        confidence: Some(0.8),
        is_final: true,
    }
}

fn rsa_key(der: &[u8], kid: &str) -> (EncodingKey, Jwk) {
    let key = EncodingKey::from_rsa_der(der);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    (key, jwk)
}

fn signing_key() -> EncodingKey {
    rsa_key(include_bytes!("testdata/oidc-key.der"), "k1").0
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("compliance.db").display()))
        .await
        .unwrap();
    let t0 = 1_740_819_600_000;
    let alpha = store.start_meeting_at("alpha", Some("sv"), t0).await.unwrap().id;
    store.add_participant(&alpha, "p-anna", "Anna").await.unwrap();
    store
        .add_segment(
            &alpha,
            &seg("u1", "p-anna", t0 + 1_000, "Hej, budgeten är klar."),
            "Anna",
        )
        .await
        .unwrap();
    store
        .add_segment(
            &alpha,
            &seg("u2", "p-bo", t0 + 4_000, "Bra, då <skickar> jag den & mer."),
            "Bo",
        )
        .await
        .unwrap();
    store
        .set_opted_out(&alpha, "p-cleo", "Cleo", true, t0 + 2_000)
        .await
        .unwrap();
    store.end_meeting(&alpha, t0 + 60_000).await.unwrap();
    let beta = store
        .start_meeting_at("beta", Some("en"), t0 + 86_400_000)
        .await
        .unwrap()
        .id;
    store
        .add_segment(&beta, &seg("b1", "p-dan", t0 + 86_401_000, "The budget, again."), "Dan")
        .await
        .unwrap();

    let api_keys = ROLES
        .iter()
        .map(|r| ApiKey {
            name: format!("svc-{}", role_name(*r)),
            role: *r,
            sha256: crate::compliance::sha256_hex(api_key_for(*r).as_bytes()),
        })
        .collect();
    let hs = Verifier::new(AuthConfig {
        secret: Some(SECRET.into()),
        api_keys,
        ..Default::default()
    });
    let app = router(store.clone(), hs, AuditConfig::default());

    // The identity provider's JWKS, served on loopback as Keycloak serves its certs.
    let (_, jwk) = rsa_key(include_bytes!("testdata/oidc-key.der"), "k1");
    let set = JwkSet { keys: vec![jwk] };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let certs = Router::new().route(
        "/realms/samtal/protocol/openid-connect/certs",
        get(move || {
            let set = set.clone();
            async move { axum::Json(set) }
        }),
    );
    let jwks_server = tokio::spawn(async move { axum::serve(listener, certs).await.unwrap() });
    let issuer = format!("http://{addr}{ISSUER_PATH}");
    let oidc_config = AuthConfig {
        jwks_url: Some(format!("{issuer}/protocol/openid-connect/certs")),
        issuer: Some(issuer.clone()),
        audience: Some(AUDIENCE.into()),
        role_claim: Some("realm_access.roles".into()),
        role_map: [("records-officer".to_owned(), Role::Compliance)].into_iter().collect(),
        ..Default::default()
    };
    let oidc = router(store.clone(), Verifier::new(oidc_config), AuditConfig::default());
    Fixture {
        _dir: dir,
        store,
        app,
        oidc,
        issuer,
        jwks_server,
        alpha,
        beta,
    }
}

/// A Keycloak-like access token.
fn keycloak_claims(f: &Fixture, roles: &[&str], user: &str) -> Value {
    json!({
        "iss": f.issuer, "aud": AUDIENCE, "exp": now_secs() + 300, "iat": now_secs(), "sub": format!("uuid-{user}"),
        "typ": "Bearer", "azp": "samtal-web", "preferred_username": user, "name": "Test User", "room": "alpha",
        "realm_access": {"roles": roles},
    })
}

fn now_secs() -> i64 {
    crate::store::now_ms() / 1000
}

fn rs256(claims: &Value, key: &EncodingKey, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn oidc_token(f: &Fixture, role: Role) -> String {
    let roles = [
        "offline_access".to_owned(),
        "default-roles-samtal".to_owned(),
        format!("samtal-{}", role_name(role)),
    ];
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    rs256(
        &keycloak_claims(f, &roles, &format!("user-{}", role_name(role))),
        &signing_key(),
        "k1",
    )
}

fn hs_token(role: Role) -> String {
    mint(SECRET, "alpha", Some("Tester"), role, Duration::from_secs(300)).unwrap()
}

#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    ApiKey(String),
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    auth: &Auth,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => request = request.header(header::AUTHORIZATION, format!("Bearer {t}")),
        Auth::ApiKey(k) => request = request.header("x-api-key", k),
    }
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let response = app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
    (status, headers, bytes.to_vec())
}

async fn get_json(app: &Router, uri: &str, auth: &Auth) -> (StatusCode, Value) {
    let (status, _, body) = call(app, Method::GET, uri, auth, None).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Every endpoint with the roles that may use it (moderators: their own room, alpha).
fn endpoints(f: &Fixture, victim: &str) -> Vec<(Method, String, Option<Value>, Vec<Role>)> {
    let readers = vec![Role::Moderator, Role::Compliance, Role::Administrator];
    let officers = vec![Role::Compliance, Role::Administrator];
    let admin = vec![Role::Administrator];
    let a = &f.alpha;
    vec![
        (Method::GET, "/api/whoami".into(), None, ROLES.to_vec()),
        (Method::GET, "/api/meetings".into(), None, readers.clone()),
        (
            Method::GET,
            format!("/api/meetings/{a}/transcript"),
            None,
            readers.clone(),
        ),
        (
            Method::GET,
            format!("/api/meetings/{a}/export?format=srt"),
            None,
            readers.clone(),
        ),
        (Method::GET, format!("/api/meetings/{a}/verify"), None, officers.clone()),
        (
            Method::PUT,
            format!("/api/meetings/{a}/hold"),
            Some(json!({"hold": false})),
            officers.clone(),
        ),
        (Method::GET, "/api/search?q=budget".into(), None, officers.clone()),
        (Method::GET, "/api/audit".into(), None, admin.clone()),
        (Method::GET, "/api/audit/export?format=csv".into(), None, admin.clone()),
        (Method::GET, "/api/audit/verify".into(), None, admin.clone()),
        (Method::DELETE, format!("/api/meetings/{victim}"), None, admin.clone()),
    ]
}

async fn ended_meeting(store: &Store, room: &str) -> String {
    let id = store.start_meeting(room, None).await.unwrap().id;
    store.end_meeting(&id, crate::store::now_ms()).await.unwrap();
    id
}

#[tokio::test]
async fn access_matrix_every_role_by_every_credential_against_every_endpoint() {
    let f = fixture().await;
    let mut denied = 0;
    let mut cells = 0;
    for kind in ["hs256", "api-key", "api-key-header", "oidc"] {
        for role in ROLES {
            let (app, auth) = match kind {
                "hs256" => (&f.app, Auth::Bearer(hs_token(role))),
                "api-key" => (&f.app, Auth::Bearer(api_key_for(role))),
                "api-key-header" => (&f.app, Auth::ApiKey(api_key_for(role))),
                _ => (&f.oidc, Auth::Bearer(oidc_token(&f, role))),
            };
            // API keys act for every room, so a moderator's key may read any meeting; tokens are for alpha.
            let victim = ended_meeting(&f.store, "alpha").await;
            for (method, uri, body, allowed) in endpoints(&f, &victim) {
                let (status, headers, bytes) = call(app, method.clone(), &uri, &auth, body).await;
                let expected = if allowed.contains(&role) {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                };
                let text = String::from_utf8_lossy(&bytes);
                assert_eq!(status, expected, "{kind} {role:?} {method} {uri}: {text}");
                if status == StatusCode::FORBIDDEN {
                    denied += 1;
                    let body: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(body["error"], "forbidden", "{text}");
                    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/json");
                }
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 4 * 5 * 11);
    // Every refusal is in the audit trail, with who was refused.
    let refused = f
        .store
        .audit_entries(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == "denied")
        .collect::<Vec<_>>();
    // One by one, or (past ten per identity and minute) counted in a `refused.aggregate` entry.
    let accounted: u64 = refused
        .iter()
        .map(|e| {
            if e.action == "refused.aggregate" {
                serde_json::from_str::<Value>(&e.detail).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            } else {
                1
            }
        })
        .sum();
    assert_eq!(accounted, denied as u64);
    assert!(
        refused
            .iter()
            .any(|e| e.actor == "user-participant" && e.action == "transcript.read" && e.target == f.alpha)
    );
    assert!(
        refused
            .iter()
            .any(|e| e.actor == "apikey:svc-compliance" && e.action == "meeting.delete")
    );
    assert!(f.store.verify_audit().await.unwrap().ok);

    // A moderator of another room is refused alpha's records but may list its own.
    let beta_mod = Auth::Bearer(mint(SECRET, "beta", None, Role::Moderator, Duration::from_secs(60)).unwrap());
    for uri in [
        format!("/api/meetings/{}/transcript", f.alpha),
        format!("/api/meetings/{}/export", f.alpha),
        "/api/meetings?room=alpha".into(),
    ] {
        assert_eq!(
            get_json(&f.app, &uri, &beta_mod).await.0,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    let (status, body) = get_json(&f.app, "/api/meetings", &beta_mod).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["meetings"].as_array().unwrap().len(), 1);
    assert_eq!(body["meetings"][0]["id"], f.beta.as_str());
}

#[tokio::test]
async fn bad_credentials_are_401_on_every_endpoint_and_the_openapi_document_is_public() {
    let f = fixture().await;
    let now = now_secs();
    let expired = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"room": "*", "role": "administrator", "exp": now - 3600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let wrong_secret = mint(
        "not-the-secret",
        "*",
        None,
        Role::Administrator,
        Duration::from_secs(60),
    )
    .unwrap();
    let unknown_role = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"room": "*", "role": "superuser", "exp": now + 60}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    // {"alg":"none"} with the administrator's claims and no signature.
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", {
        let claims = json!({"room": "*", "role": "administrator", "exp": now + 60}).to_string();
        base64_url(claims.as_bytes())
    });
    let hs_cases = [
        (Auth::None, "missing"),
        (Auth::Bearer("not.a.jwt".into()), "malformed"),
        (Auth::Bearer(expired), "xpired"),
        (Auth::Bearer(wrong_secret), "InvalidSignature"),
        (Auth::Bearer(unknown_role), "unknown role"),
        (Auth::Bearer(none), "malformed"),
        (Auth::Bearer("samtal_not_a_configured_key".into()), "unknown API key"),
        (Auth::ApiKey("samtal_not_a_configured_key".into()), "unknown API key"),
        (Auth::ApiKey("plain-password".into()), "X-Api-Key"),
    ];
    let other = rsa_key(include_bytes!("testdata/oidc-other-key.der"), "k1").0;
    let admin_roles = ["samtal-administrator"];
    let mut wrong_iss = keycloak_claims(&f, &admin_roles, "x");
    wrong_iss["iss"] = json!("http://127.0.0.1:1/realms/other");
    let mut wrong_aud = keycloak_claims(&f, &admin_roles, "x");
    wrong_aud["aud"] = json!("another-client");
    let mut expired_oidc = keycloak_claims(&f, &admin_roles, "x");
    expired_oidc["exp"] = json!(now - 3600);
    let oidc_cases = [
        (
            Auth::Bearer(rs256(&keycloak_claims(&f, &admin_roles, "x"), &other, "k1")),
            "InvalidSignature",
        ),
        (
            Auth::Bearer(rs256(&keycloak_claims(&f, &admin_roles, "x"), &signing_key(), "k9")),
            "unknown key id",
        ),
        (Auth::Bearer(rs256(&wrong_iss, &signing_key(), "k1")), "InvalidIssuer"),
        (Auth::Bearer(rs256(&wrong_aud, &signing_key(), "k1")), "InvalidAudience"),
        (Auth::Bearer(rs256(&expired_oidc, &signing_key(), "k1")), "xpired"),
        // An HS256 token where only the provider's keys count.
        (Auth::Bearer(hs_token(Role::Administrator)), "HS256"),
    ];
    let victim = ended_meeting(&f.store, "alpha").await;
    for (app, cases) in [(&f.app, &hs_cases[..]), (&f.oidc, &oidc_cases[..])] {
        for (auth, why) in cases {
            for (method, uri, body, _) in endpoints(&f, &victim) {
                let (status, headers, bytes) = call(app, method.clone(), &uri, auth, body).await;
                let text = String::from_utf8_lossy(&bytes);
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{why} {method} {uri}: {text}");
                assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
                assert!(text.contains(why), "{why}: {text}");
            }
        }
    }
    // Nothing was done: the victim is still there, and 401s leave no audit entries (no one to name).
    assert!(f.store.meeting(&victim).await.unwrap().is_some());
    assert!(f.store.audit_entries(&AuditFilter::default()).await.unwrap().is_empty());

    // The provider's role names map through role_map, and the highest role of several wins.
    let officer = rs256(
        &keycloak_claims(&f, &["records-officer", "samtal-moderator"], "karin"),
        &signing_key(),
        "k1",
    );
    let (status, body) = get_json(&f.oidc, "/api/whoami", &Auth::Bearer(officer)).await;
    assert_eq!(
        (status, body["role"].as_str(), body["actor"].as_str()),
        (StatusCode::OK, Some("compliance"), Some("karin"))
    );
    let nobody = rs256(&keycloak_claims(&f, &["offline_access"], "olle"), &signing_key(), "k1");
    assert_eq!(
        get_json(&f.oidc, "/api/meetings", &Auth::Bearer(nobody)).await.0,
        StatusCode::FORBIDDEN
    );

    let (status, headers, bytes) = call(&f.app, Method::GET, "/api/openapi.json", &Auth::None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/json");
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn exports_carry_the_sealed_digest_that_verifies() {
    let f = fixture().await;
    let admin = Auth::Bearer(hs_token(Role::Administrator));
    let meeting = f.store.meeting(&f.alpha).await.unwrap().unwrap();
    let digest = meeting.transcript_digest.clone().unwrap();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    for (format, content_type) in [
        ("vtt", "text/vtt; charset=utf-8"),
        ("srt", "application/x-subrip; charset=utf-8"),
        ("txt", "text/plain; charset=utf-8"),
        ("json", "application/json"),
    ] {
        let (status, headers, bytes) = call(
            &f.app,
            Method::GET,
            &format!("/api/meetings/{}/export?format={format}", f.alpha),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{format}");
        assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), content_type);
        assert_eq!(headers.get("x-transcript-digest").unwrap().to_str().unwrap(), digest);
        let disposition = headers.get(header::CONTENT_DISPOSITION).unwrap().to_str().unwrap();
        assert_eq!(
            disposition,
            format!("attachment; filename=\"alpha-{}.{format}\"", f.alpha)
        );
        let text = String::from_utf8(bytes).unwrap();
        match format {
            "vtt" => {
                assert!(text.starts_with("WEBVTT\n"));
                assert!(text.contains(&format!("Transcript digest {digest}\n")), "{text}");
                assert!(text.contains("Cleo opted out of transcription"), "{text}");
                assert!(
                    text.contains("<v Bo>Bra, då &lt;skickar&gt; jag den &amp; mer.</v>"),
                    "{text}"
                );
            }
            "srt" => assert!(
                text.starts_with("1\n00:00:01,000 --> 00:00:02,500\nAnna: Hej, budgeten är klar.\n"),
                "{text}"
            ),
            "txt" => assert!(text.contains(&format!("Transcript digest {digest}\n")), "{text}"),
            _ => {
                // The JSON export checks itself: its segments give its digest.
                let t: crate::store::Transcript = serde_json::from_str(&text).unwrap();
                assert_eq!(t.meeting.transcript_digest.as_deref(), Some(digest.as_str()));
                assert_eq!(crate::compliance::integrity::digest(&t.meeting, &t.segments), digest);
                let mut altered = t.clone();
                altered.segments[0].text = "Hej, budgeten är inte klar.".into();
                assert_ne!(
                    crate::compliance::integrity::digest(&altered.meeting, &altered.segments),
                    digest
                );
            }
        }
        // samtal verify agrees: the file is what the store exports, and the store's chain is intact.
        let path = f._dir.path().join(format!("export.{format}"));
        std::fs::write(&path, &text).unwrap();
        let url = format!("sqlite://{}", f._dir.path().join("compliance.db").display());
        let (srt_meeting, srt_digest) = if format == "srt" {
            (Some(f.alpha.as_str()), Some(digest.as_str()))
        } else {
            (None, None)
        };
        let mut report = Vec::new();
        let ok = crate::compliance::check::run(&url, srt_meeting, Some(&path), srt_digest, &mut report)
            .await
            .unwrap();
        assert!(ok, "{format}: {}", String::from_utf8_lossy(&report));
        // An edited file is caught, with the line.
        std::fs::write(&path, text.replacen("budgeten", "budgetem", 1)).unwrap();
        let mut report = Vec::new();
        let ok = crate::compliance::check::run(&url, srt_meeting, Some(&path), srt_digest, &mut report)
            .await
            .unwrap();
        let report = String::from_utf8_lossy(&report);
        assert!(!ok && report.contains("ALTERED"), "{format}: {report}");
    }
    // A running meeting's export carries the digest of what is stored so far.
    let (status, headers, _) = call(
        &f.app,
        Method::GET,
        &format!("/api/meetings/{}/export?format=txt", f.beta),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers
            .get("x-transcript-digest")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("sha256:")
    );
    for (uri, status) in [
        (
            format!("/api/meetings/{}/export?format=pdf", f.alpha),
            StatusCode::BAD_REQUEST,
        ),
        ("/api/meetings/nope/export?format=vtt".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let (got, body) = get_json(&f.app, &uri, &admin).await;
        assert_eq!(got, status, "{uri}: {body}");
    }
    let exports = f
        .store
        .audit_entries(&AuditFilter {
            action: Some("transcript.export".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(exports.len(), 5);
    assert!(
        exports[0].detail.contains("\"format\":\"vtt\"") && exports[0].detail.contains(&digest),
        "{:?}",
        exports[0]
    );
}

#[tokio::test]
async fn search_hold_delete_verify_and_the_audit_trail_through_the_api() {
    let f = fixture().await;
    let officer = Auth::Bearer(hs_token(Role::Compliance));
    let admin = Auth::ApiKey(api_key_for(Role::Administrator));

    let (status, body) = get_json(&f.app, "/api/search?q=budget*", &officer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hits = body["hits"].as_array().unwrap();
    let found: Vec<_> = hits
        .iter()
        .map(|h| {
            (
                h["meeting"]["id"].as_str().unwrap(),
                h["segment"]["utterance_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, [(f.beta.as_str(), "b1"), (f.alpha.as_str(), "u1")]);
    assert_eq!(hits[1]["highlight"], "Hej, <mark>budgeten</mark> är klar.");
    assert_eq!(hits[1]["segment"]["speaker_name"], "Anna");
    assert_eq!(body["truncated"], false);
    let (_, body) = get_json(&f.app, "/api/search?q=budget*&limit=1", &officer).await;
    assert_eq!(
        (body["hits"].as_array().unwrap().len(), &body["truncated"]),
        (1, &json!(true))
    );
    let (_, body) = get_json(&f.app, "/api/search?q=skickar", &officer).await;
    assert_eq!(
        body["hits"][0]["highlight"],
        "Bra, då &lt;<mark>skickar</mark>&gt; jag den &amp; mer."
    );
    for uri in [
        "/api/search",
        "/api/search?q=",
        "/api/search?q=--",
        "/api/search?q=a&limit=0",
        "/api/search?q=a&from=yesterday",
    ] {
        let (status, body) = get_json(&f.app, uri, &officer).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{uri}: {body}"
        );
    }

    let (status, body) = get_json(&f.app, &format!("/api/meetings/{}/verify", f.alpha), &officer).await;
    assert_eq!(
        (status, &body["ok"], &body["sealed"], &body["segments"]),
        (StatusCode::OK, &json!(true), &json!(true), &json!(2)),
        "{body}"
    );
    assert_eq!(
        get_json(&f.app, "/api/meetings/nope/verify", &officer).await.0,
        StatusCode::NOT_FOUND
    );

    // Hold, then deletion is refused; lifted, deletion works and the meeting is gone.
    let hold_uri = format!("/api/meetings/{}/hold", f.alpha);
    for bad in [
        json!({"hold": true}),
        json!({"hold": true, "reason": "  "}),
        json!({"hold": "yes"}),
        json!({"reason": "x"}),
    ] {
        let (status, _, bytes) = call(&f.app, Method::PUT, &hold_uri, &officer, Some(bad.clone())).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let (status, _, bytes) = call(
        &f.app,
        Method::PUT,
        &hold_uri,
        &officer,
        Some(json!({"hold": true, "reason": "ärende 2025/114"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (m["legal_hold"]["reason"].as_str(), m["legal_hold"]["set_by"].as_str()),
        (Some("ärende 2025/114"), Some("Tester"))
    );
    let (_, body) = get_json(&f.app, "/api/meetings?room=alpha", &officer).await;
    assert_eq!(body["meetings"][0]["legal_hold"]["reason"], "ärende 2025/114");
    let (_, body) = get_json(&f.app, &format!("/api/meetings/{}/transcript", f.alpha), &officer).await;
    assert_eq!(body["meeting"]["legal_hold"]["reason"], "ärende 2025/114");
    let delete_uri = format!("/api/meetings/{}", f.alpha);
    let (status, _, bytes) = call(&f.app, Method::DELETE, &delete_uri, &admin, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&bytes));
    let (status, _, bytes) = call(
        &f.app,
        Method::DELETE,
        &format!("/api/meetings/{}", f.beta),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "running: {}",
        String::from_utf8_lossy(&bytes)
    );
    let (status, _, _) = call(&f.app, Method::PUT, &hold_uri, &officer, Some(json!({"hold": false}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, bytes) = call(&f.app, Method::DELETE, &delete_uri, &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        json!({"deleted": f.alpha})
    );
    assert_eq!(
        get_json(&f.app, &format!("/api/meetings/{}/transcript", f.alpha), &officer)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&f.app, Method::DELETE, &delete_uri, &admin, None).await.0,
        StatusCode::NOT_FOUND
    );

    // The audit trail has all of it, verifies, and exports.
    let (status, body) = get_json(&f.app, "/api/audit?limit=1000", &admin).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "ok")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "search",
        "transcript.verify",
        "hold.on",
        "meetings.list",
        "transcript.read",
        "hold.off",
        "meeting.delete",
    ] {
        assert!(actions.contains(&expected), "{expected} not in {actions:?}");
    }
    let delete = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "meeting.delete")
        .unwrap();
    assert_eq!(
        (
            delete["actor"].as_str(),
            delete["role"].as_str(),
            delete["target"].as_str()
        ),
        (
            Some("apikey:svc-administrator"),
            Some("administrator"),
            Some(f.alpha.as_str())
        )
    );
    let search = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "search")
        .unwrap();
    assert!(
        search["detail"].as_str().unwrap().contains("\"q\":\"budget*\""),
        "{search}"
    );
    assert_eq!(
        body["head"]["seq"],
        body["entries"].as_array().unwrap().len() + 1,
        "the read itself is the head"
    );
    let (_, body) = get_json(&f.app, "/api/audit?action=hold.on", &admin).await;
    assert_eq!(body["entries"].as_array().unwrap().len(), 1);
    let (_, body) = get_json(&f.app, "/api/audit/verify", &admin).await;
    assert_eq!(body["ok"], true, "{body}");
    let (status, headers, bytes) = call(&f.app, Method::GET, "/api/audit/export?format=csv", &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "text/csv; charset=utf-8");
    let csv = String::from_utf8(bytes).unwrap();
    assert!(
        csv.starts_with("seq,at,time,actor,role,action,target,client,outcome,detail,prev_hash,entry_hash\r\n1,"),
        "{csv}"
    );
    let (status, _, bytes) = call(&f.app, Method::GET, "/api/audit/export", &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    let entries: Vec<crate::compliance::audit::Entry> = serde_json::from_slice(&bytes).unwrap();
    assert!(crate::compliance::audit::verify(&entries).ok);
    assert_eq!(
        get_json(&f.app, "/api/audit/export?format=xml", &admin).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get_json(&f.app, "/api/audit?after=x", &admin).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_client_address_is_the_peer_or_a_trusted_proxys_forwarded_address() {
    let f = fixture().await;
    let verifier = Verifier::new(AuthConfig {
        secret: Some(SECRET.into()),
        ..Default::default()
    });
    let app = router(
        f.store.clone(),
        verifier,
        AuditConfig {
            trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
        },
    );
    for (peer, expected) in [("10.0.0.1:4000", "192.0.2.7"), ("10.0.0.2:4000", "10.0.0.2")] {
        let mut request = Request::get("/api/meetings")
            .header(header::AUTHORIZATION, format!("Bearer {}", hs_token(Role::Compliance)))
            .header("x-forwarded-for", "192.0.2.7, 10.0.0.9")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::OK);
        let last = f
            .store
            .audit_entries(&AuditFilter::default())
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (last.client.as_str(), last.action.as_str()),
            (expected, "meetings.list")
        );
    }
}

#[test]
fn every_route_is_in_the_openapi_document() {
    let doc: Value = serde_json::from_str(openapi::DOCUMENT).unwrap();
    // The transcript API's routes, and the Matrix delivery, summary, room, webhook, drain and cluster routes that share
    // its authorization.
    // The routes outside the test modules (which build routers of their own).
    let code = |source: &'static str| source.split("\n#[cfg(test)]\nmod tests {").next().unwrap_or_default();
    let source = [
        code(include_str!("mod.rs")),
        code(include_str!("../delivery/api.rs")),
        code(include_str!("../summary.rs")),
        code(include_str!("rooms.rs")),
        code(include_str!("../webhooks/api.rs")),
        code(include_str!("../drain.rs")),
        code(include_str!("../cluster/api.rs")),
    ]
    .concat();
    let mut routes = Vec::new();
    // Each `.route("PATH", …)` up to the end of its line.
    for line in source.split(".route(\"").skip(1).filter_map(|s| s.lines().next()) {
        let path = line.split('"').next().unwrap();
        for method in ["get", "put", "post", "delete", "patch"] {
            if line.contains(&format!(" {method}("))
                || line.contains(&format!("::{method}("))
                || line.contains(&format!("({method}("))
                || line.contains(&format!(".{method}("))
            {
                routes.push((method, path.to_owned()));
            }
        }
    }
    assert!(routes.len() >= 15, "{routes:?}");
    for (method, path) in &routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not in docs/openapi.json"
        );
    }
    // And nothing is documented that is not routed.
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().keys().filter(|k| *k != "parameters").count())
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "docs/openapi.json documents routes the router does not have"
    );
}
