//! The DTLS certificate the media server presents to every peer. One per server, as Janus and
//! mediasoup do: webrtc-rs would otherwise generate an ECDSA key and self-signed certificate for
//! each peer connection, a cost paid on every join. The certificate's fingerprint goes in each
//! answer and offer over the authenticated signaling channel, so sharing it identifies the server,
//! not a connection, which is what a peer checks. It is replaced a day before it expires.

use crate::error::{Error, Result};
use rtc::crypto::{SignatureScheme, default_provider};
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use std::time::{Duration, SystemTime};

/// Renew this long before the certificate expires, so no connection starts with one about to lapse.
const RENEW_BEFORE: Duration = Duration::from_secs(24 * 60 * 60);

pub(crate) struct DtlsIdentity {
    certificate: RTCCertificate,
}

impl DtlsIdentity {
    pub(crate) fn generate() -> Result<Self> {
        Ok(Self {
            certificate: generate()?,
        })
    }

    /// The certificate for a new connection, renewed first when it is close to expiry at `now`
    /// (wall-clock time, which X.509 validity is in).
    pub(crate) fn certificate(&mut self, now: SystemTime) -> Result<RTCCertificate> {
        if self.needs_renewal(now) {
            self.certificate = generate()?;
        }
        Ok(self.certificate.clone())
    }

    fn needs_renewal(&self, now: SystemTime) -> bool {
        self.certificate
            .expires
            .duration_since(now)
            .map_or(true, |left| left < RENEW_BEFORE)
    }
}

fn generate() -> Result<RTCCertificate> {
    let certificate_error = |e: &dyn std::fmt::Display| Error::Certificate(e.to_string());
    let provider = default_provider().map_err(|e| certificate_error(&e))?;
    let params = CertificateParams::new(vec!["samtal".to_owned()]).map_err(|e| certificate_error(&e))?;
    Ok(RTCCertificate::generate(
        provider.crypto(),
        SignatureScheme::EcdsaP256Sha256,
        params,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_certificate_serves_until_a_day_before_it_expires() {
        let mut identity = DtlsIdentity::generate().unwrap();
        let expires = identity.certificate.expires;
        let fingerprint = |c: &RTCCertificate| c.get_fingerprints(default_provider().unwrap().crypto()).unwrap();
        let first = identity.certificate(SystemTime::now()).unwrap();
        let again = identity.certificate(SystemTime::now()).unwrap();
        assert_eq!(
            fingerprint(&first),
            fingerprint(&again),
            "one certificate for all peers"
        );

        let near_expiry = expires - Duration::from_secs(60 * 60);
        let renewed = identity.certificate(near_expiry).unwrap();
        assert_ne!(fingerprint(&first), fingerprint(&renewed), "renewed before it lapses");
    }
}
