//! Time-limited TURN credentials from a secret shared with the TURN server: the scheme coturn calls
//! its REST API (`use-auth-secret` with `static-auth-secret`). Every join gets its own: the user
//! name is `<expiry, Unix seconds>:<participant id>` and the password the Base64 of the
//! HMAC-SHA1 of that name under the secret. The TURN server checks both, and refuses the name once
//! its time has passed, so a credential copied out of a page is good for that long only.

use base64::Engine;
use hmac::{Hmac, Mac};
use samtal_protocol::IceServer;
use serde::{Deserialize, Serialize};
use sha1::Sha1;

/// `[turn]`: the TURN server clients relay through when their network allows nothing direct.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// The TURN server's URLs as clients are to use them, e.g. `turn:turn.example.org:3478?transport=udp`,
    /// `turn:turn.example.org:3478?transport=tcp`, `turns:turn.example.org:443?transport=tcp`.
    pub urls: Vec<String>,
    /// The TURN server's `static-auth-secret`. Unset: no TURN server is handed out (beyond `ice_servers`).
    pub secret: Option<String>,
    /// How long a credential is good for, from the join.
    pub ttl_secs: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: None,
            ttl_secs: 24 * 3600,
        }
    }
}

impl TurnConfig {
    /// The TURN server with a credential for `participant`, good until `now_unix + ttl_secs`;
    /// `None` when no TURN server is configured.
    pub fn credentials(&self, participant: &str, now_unix: u64) -> Option<IceServer> {
        let secret = self.secret.as_ref().filter(|_| !self.urls.is_empty())?;
        let username = format!("{}:{participant}", now_unix + self.ttl_secs);
        let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(username.as_bytes());
        let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        Some(IceServer {
            urls: self.urls.clone(),
            username: Some(username),
            credential: Some(credential),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_coturns_rest_scheme() {
        let turn = TurnConfig {
            urls: vec!["turn:turn.example.org:3478?transport=tcp".into()],
            secret: Some("turn-secret-0123456789abcdef".into()),
            ttl_secs: 600,
        };
        let server = turn.credentials("p1a2b3c4", 1_767_225_000).expect("configured");
        assert_eq!(server.urls, turn.urls);
        assert_eq!(server.username.as_deref(), Some("1767225600:p1a2b3c4"));
        // Python: base64(hmac.new(secret, name, sha1).digest())
        assert_eq!(server.credential.as_deref(), Some("T60EitOGYvd9r1iR47pgmVuZ9hg="));
    }

    #[test]
    fn nothing_without_a_secret_or_urls() {
        let mut turn = TurnConfig {
            urls: vec!["turn:t:3478".into()],
            ..Default::default()
        };
        assert_eq!(turn.credentials("p", 0), None);
        turn.urls.clear();
        turn.secret = Some("s".repeat(32));
        assert_eq!(turn.credentials("p", 0), None);
    }
}
