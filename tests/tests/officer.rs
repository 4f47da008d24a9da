//! The transcript archive page (web/officer.html) in headless Chromium: tests/browser/officer.mjs signs
//! in as a compliance officer and as an administrator against a real server whose store holds a
//! sealed two-speaker meeting, searches, reads, filters, exports, verifies and reads the audit trail.
//! Here the downloaded files are checked independently of the page: the WebVTT parses as WebVTT (cue
//! count and voices), the JSON export's hash chain is recomputed (the documented algorithm, written
//! again here) and matches the digest the page showed and the store sealed.

use samtal_e2e::*;
use samtal_protocol::{Role, Segment};
use samtal_signaling::RunningServer;
use samtal_signaling::auth::mint;
use sha2::{Digest, Sha256};
use std::time::Duration;

const SECRET: &str = "officer-page-test-secret-0123456789abcdef";

/// A finished meeting of two speakers, sealed; returns its id and segment count.
async fn seed(server: &RunningServer) -> (String, usize) {
    let store = &server.state.store;
    let t0 = 1_767_000_000_000; // 2025-12-29
    let meeting = store
        .start_meeting_at("styrelse", Some("sv"), t0)
        .await
        .expect("meeting");
    store
        .add_participant(&meeting.id, "p-anna", "Anna Lind")
        .await
        .expect("participant");
    store
        .add_participant(&meeting.id, "p-bo", "Bo Ek")
        .await
        .expect("participant");
    let lines = [
        ("p-anna", "Anna Lind", "Välkomna till styrelsemötet."),
        ("p-bo", "Bo Ek", "Budgeten för nästa år är klar."),
        ("p-anna", "Anna Lind", "Vi beslutar att anta budgeten."),
        ("p-bo", "Bo Ek", "Jag skickar protokollet på fredag."),
        ("p-anna", "Anna Lind", "Tack, mötet är avslutat."),
    ];
    for (i, (who, name, text)) in lines.iter().enumerate() {
        let start = t0 + 2_000 + i as i64 * 4_000;
        let segment = Segment {
            utterance_id: format!("{who}-{start}"),
            participant_id: (*who).into(),
            start_ms: start,
            end_ms: start + 3_000,
            text: (*text).into(),
            language: Some("sv".into()),
            confidence: Some(0.9),
            is_final: true,
        };
        assert!(store.add_segment(&meeting.id, &segment, name).await.expect("segment"));
    }
    store.end_meeting(&meeting.id, t0 + 30_000).await.expect("end");
    store.seal(&meeting.id).await.expect("seal");
    (meeting.id, lines.len())
}

/// The transcript hash chain of a JSON export, as docs/http-api.md defines it.
fn chain(transcript: &serde_json::Value) -> String {
    let m = &transcript["meeting"];
    let enc = |v: serde_json::Value| serde_json::to_vec(&v).expect("JSON");
    let mut link = hex(&Sha256::digest(enc(serde_json::json!([
        "samtal-transcript-v1",
        m["id"],
        m["room"],
        m["started_at"]
    ]))));
    let mut segments: Vec<&serde_json::Value> = transcript["segments"].as_array().expect("segments").iter().collect();
    segments.sort_by_key(|s| {
        (
            s["start_ms"].as_i64(),
            s["end_ms"].as_i64(),
            s["utterance_id"].as_str().unwrap_or_default().to_owned(),
        )
    });
    for s in segments {
        let fields = serde_json::json!([
            s["utterance_id"],
            s["participant_id"],
            s["speaker_name"],
            s["start_ms"],
            s["end_ms"],
            s["text"],
            s["language"]
        ]);
        let mut input = link.into_bytes();
        input.push(b'\n');
        input.extend(enc(fields));
        link = hex(&Sha256::digest(&input));
    }
    format!("sha256:{link}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_signs_in_searches_reads_exports_and_the_administrator_audits() {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    let server = start_server(config).await;
    let (meeting, segments) = seed(&server).await;
    let ttl = Duration::from_secs(3600);
    let officer = mint(SECRET, "*", Some("Olga Officer"), Role::Compliance, ttl).expect("token");
    let admin = mint(SECRET, "*", Some("Ada Admin"), Role::Administrator, ttl).expect("token");
    let downloads = std::env::temp_dir().join(format!("samtal-officer-{}", std::process::id()));

    let url = server.http_url();
    let downloads_arg = downloads.to_string_lossy().into_owned();
    let args = [
        "--url",
        &url,
        "--officer",
        &officer,
        "--admin",
        &admin,
        "--word",
        "budget*",
        "--meeting",
        &meeting,
    ];
    let args = [
        &args[..],
        &["--speaker", "Bo Ek", "--decision", "beslutar", "--action", "skickar"],
        &["--timeout", "30", "--downloads", &downloads_arg],
    ]
    .concat();
    let summary = run_browser_script("officer.mjs", &args, Duration::from_secs(300)).await;
    assert_eq!(summary["ok"], true, "{summary}");
    // The page's summary is the stored record (made at the first read: this meeting was seeded).
    let stored = server
        .state
        .store
        .summary(&meeting)
        .await
        .unwrap()
        .expect("a stored summary");
    assert_eq!(stored.source, "extractive");
    assert!(stored.body.contains("Vi beslutar att anta budgeten."), "{stored:?}");

    // What the page showed is what the store sealed.
    let sealed = server
        .state
        .store
        .meeting(&meeting)
        .await
        .expect("store")
        .expect("meeting")
        .transcript_digest
        .expect("sealed");
    assert_eq!(summary["digest"], sealed.as_str(), "{summary}");

    // The downloads, read without the server's code.
    let read = |format: &str| {
        std::fs::read_to_string(summary["downloads"][format]["path"].as_str().expect("a download path"))
            .expect("download saved")
    };
    let vtt = read("vtt");
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    assert!(
        vtt.contains(&sealed),
        "the WebVTT export does not carry the digest {sealed}:\n{vtt}"
    );
    let cues: Vec<&str> = vtt
        .split("\n\n")
        .filter(|block| block.lines().any(|l| l.contains(" --> ")))
        .collect();
    assert_eq!(cues.len(), segments, "{vtt}");
    assert!(cues.iter().filter(|c| c.contains("<v Bo Ek>")).count() == 2, "{vtt}");
    let srt = read("srt");
    assert_eq!(srt.matches(" --> ").count(), segments, "{srt}");
    assert!(read("txt").contains("Bo Ek: Budgeten för nästa år är klar."));
    let json: serde_json::Value = serde_json::from_str(&read("json")).expect("the JSON export parses");
    assert_eq!(json["meeting"]["transcript_digest"], sealed.as_str());
    assert_eq!(
        chain(&json),
        sealed,
        "the JSON export's recomputed chain does not give the sealed digest"
    );
    assert!(
        summary["downloads"]["vtt"]["suggested"]
            .as_str()
            .unwrap_or_default()
            .ends_with(".vtt"),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(downloads);
    server.shutdown().await;
}

/// A stand-in for the organisation's OpenID Connect provider (no real one, such as Keycloak, can run
/// here): it signs the user in without asking, checks the PKCE verifier against the challenge as a
/// provider must, and issues a Keycloak-shaped RS256 access token whose key it publishes as a JWKS.
mod provider {
    use axum::extract::{Form, Query, State};
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Redirect, Response};
    use axum::routing::{get, post};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    pub const CLIENT_ID: &str = "samtal-officer";
    pub const AUDIENCE: &str = "samtal";

    #[derive(Clone)]
    struct Provider {
        issuer: String,
        key: EncodingKey,
        jwk: Jwk,
        /// code → (challenge, redirect_uri)
        codes: Arc<Mutex<HashMap<String, (String, String)>>>,
    }

    /// Serves the provider on loopback; returns its issuer URL.
    pub async fn start() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the provider");
        let issuer = format!("http://{}/realms/samtal", listener.local_addr().expect("address"));
        let key = EncodingKey::from_rsa_der(include_bytes!("../../signaling/src/api/testdata/oidc-key.der"));
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("a JWK of the key");
        jwk.common.key_id = Some("k1".into());
        let state = Provider {
            issuer: issuer.clone(),
            key,
            jwk,
            codes: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/realms/samtal/protocol/openid-connect/auth", get(authorize))
            .route("/realms/samtal/protocol/openid-connect/token", post(token))
            .route("/realms/samtal/protocol/openid-connect/certs", get(certs))
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        issuer
    }

    async fn authorize(State(p): State<Provider>, Query(q): Query<HashMap<String, String>>) -> Response {
        let field = |k: &str| q.get(k).cloned().unwrap_or_default();
        if field("client_id") != CLIENT_ID
            || field("response_type") != "code"
            || field("code_challenge_method") != "S256"
        {
            return (StatusCode::BAD_REQUEST, format!("bad authorization request: {q:?}")).into_response();
        }
        let code = format!("code-{}", p.codes.lock().unwrap().len() + 1);
        p.codes
            .lock()
            .unwrap()
            .insert(code.clone(), (field("code_challenge"), field("redirect_uri")));
        Redirect::to(&format!(
            "{}?code={code}&state={}",
            field("redirect_uri"),
            field("state")
        ))
        .into_response()
    }

    async fn token(State(p): State<Provider>, Form(f): Form<HashMap<String, String>>) -> Response {
        let field = |k: &str| f.get(k).cloned().unwrap_or_default();
        let issued = p.codes.lock().unwrap().remove(&field("code"));
        let verified = issued.is_some_and(|(challenge, redirect)| {
            URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier").as_bytes())) == challenge
                && redirect == field("redirect_uri")
        });
        let mut response = if field("grant_type") != "authorization_code"
            || field("client_id") != CLIENT_ID
            || !verified
        {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({"error": "invalid_grant"})),
            )
                .into_response()
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            let claims = serde_json::json!({
                "iss": p.issuer, "aud": AUDIENCE, "exp": now + 300, "iat": now, "sub": "uuid-olga", "azp": CLIENT_ID,
                "preferred_username": "olga", "realm_access": {"roles": ["offline_access", "records-officer"]},
            });
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some("k1".into());
            let jwt = jsonwebtoken::encode(&header, &claims, &p.key).expect("sign");
            axum::Json(serde_json::json!({"access_token": jwt, "token_type": "Bearer", "expires_in": 300}))
                .into_response()
        };
        // The page on the server's origin calls this endpoint cross-origin, as a browser app calls Keycloak.
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        response
    }

    async fn certs(State(p): State<Provider>) -> axum::Json<JwkSet> {
        axum::Json(JwkSet { keys: vec![p.jwk] })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_signs_in_through_the_identity_provider() {
    let issuer = provider::start().await;
    let mut config = test_config();
    config.auth.jwks_url = Some(format!("{issuer}/protocol/openid-connect/certs"));
    config.auth.issuer = Some(issuer.clone());
    config.auth.audience = Some(provider::AUDIENCE.into());
    config.auth.role_claim = Some("realm_access.roles".into());
    config.auth.role_map = [("records-officer".to_owned(), Role::Compliance)].into_iter().collect();
    config.auth.oidc = Some(samtal_signaling::config::OidcLogin {
        authorization_endpoint: format!("{issuer}/protocol/openid-connect/auth"),
        token_endpoint: format!("{issuer}/protocol/openid-connect/token"),
        client_id: provider::CLIENT_ID.into(),
        scope: "openid".into(),
        label: "Sign in with Test Realm".into(),
    });
    let server = start_server(config).await;

    let url = server.http_url();
    let summary = run_browser_script(
        "oidc_signin.mjs",
        &["--url", &url, "--timeout", "30"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(summary["button"], "Sign in with Test Realm", "{summary}");
    assert_eq!(
        summary["whoami"], "olga (compliance)",
        "the provider's role did not map to compliance: {summary}"
    );
    assert!(
        !summary["final_url"].as_str().unwrap_or_default().contains("code="),
        "the code stayed in the address bar: {summary}"
    );
    server.shutdown().await;
}
