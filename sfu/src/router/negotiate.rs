//! Applying a publish offer to a peer connection (set it, answer it, apply the answer) and a
//! subscriber's answer to our offer. When any step fails the offer is rolled back, so the
//! connection is as it was and the next good offer applies (RFC 9429 §5.7).

use super::sdp::{AudioPreferences, prefer_audio};
use crate::error::{Error, Result};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::sdp::RTCSessionDescription;
use std::time::Instant;

/// The answer's SDP, with what we ask of the publisher's audio, or why the offer was refused (and
/// rolled back).
pub(crate) fn answer_offer(
    pc: &mut RTCPeerConnection,
    sdp: String,
    audio: AudioPreferences,
    now: Instant,
) -> Result<String> {
    let result = answer(pc, sdp, audio, now);
    if result.is_err()
        && pc.pending_remote_description().is_some()
        && let Err(e) = RTCSessionDescription::rollback(None).and_then(|r| pc.set_remote_description(now, r))
    {
        tracing::warn!("cannot roll back a refused offer: {e}");
    }
    result
}

fn answer(pc: &mut RTCPeerConnection, sdp: String, audio: AudioPreferences, now: Instant) -> Result<String> {
    let offer = RTCSessionDescription::offer(sdp).map_err(|e| Error::Negotiation(format!("bad offer: {e}")))?;
    pc.set_remote_description(now, offer)
        .map_err(|e| Error::Negotiation(format!("offer rejected: {e}")))?;
    let answer = pc
        .create_answer(None)
        .map_err(|e| Error::Negotiation(format!("cannot answer: {e}")))?;
    pc.set_local_description(now, answer)
        .map_err(|e| Error::Negotiation(format!("cannot apply answer: {e}")))?;
    // webrtc-rs applies only the answer it made. What we ask of the publisher's audio changes the
    // order of formats and a parameter of Opus that only the sender acts on, so the peer gets it
    // and we keep ours: the payload types, directions and transport are the same in both.
    let local = pc
        .local_description()
        .ok_or_else(|| Error::Negotiation("no local description".into()))?;
    Ok(prefer_audio(&local.sdp, audio))
}

/// Applies a subscriber's answer to our pending offer; when it is refused our offer is rolled back,
/// so the connection is as before the offer and a new one can be made.
pub(crate) fn apply_answer(pc: &mut RTCPeerConnection, sdp: String, now: Instant) -> Result<()> {
    let result = RTCSessionDescription::answer(sdp)
        .map_err(|e| Error::Negotiation(format!("bad answer: {e}")))
        .and_then(|answer| {
            pc.set_remote_description(now, answer)
                .map_err(|e| Error::Negotiation(format!("answer rejected: {e}")))
        });
    if result.is_err()
        && pc.pending_local_description().is_some()
        && let Err(e) = RTCSessionDescription::rollback(None).and_then(|r| pc.set_local_description(now, r))
    {
        tracing::warn!("cannot roll back an offer whose answer was refused: {e}");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::identity::DtlsIdentity;
    use crate::router::peer;
    use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
    use std::time::{Duration, SystemTime};

    fn server_pc(now: Instant) -> RTCPeerConnection {
        let certificate = DtlsIdentity::generate()
            .unwrap()
            .certificate(SystemTime::now())
            .unwrap();
        let candidates = [
            ("192.0.2.1:10000".parse().unwrap(), rtc::shared::TransportProtocol::UDP),
            ("192.0.2.1:10001".parse().unwrap(), rtc::shared::TransportProtocol::TCP),
        ];
        peer::build(&candidates, Duration::from_secs(5), certificate, None, now).unwrap()
    }

    #[test]
    fn a_refused_answer_rolls_our_offer_back() {
        let now = Instant::now();
        let mut pc = server_pc(now);
        pc.add_transceiver_from_kind(RtpCodecKind::Audio, None).unwrap();
        let offer = pc.create_offer(None).unwrap();
        pc.set_local_description(now, offer).unwrap();
        assert!(pc.pending_local_description().is_some());

        let refused = apply_answer(&mut pc, "v=0\r\nnot an answer\r\n".into(), now);
        assert!(matches!(refused, Err(Error::Negotiation(_))), "{refused:?}");
        assert!(pc.pending_local_description().is_none(), "the offer was rolled back");

        let again = pc.create_offer(None).unwrap();
        pc.set_local_description(now, again).expect("a new offer applies");
        assert!(pc.pending_local_description().is_some());
    }

    #[test]
    fn the_answer_asks_for_red_and_dtx_and_both_ends_apply_it() {
        let now = Instant::now();
        let mut client = server_pc(now);
        client.add_transceiver_from_kind(RtpCodecKind::Audio, None).unwrap();
        let offer = client.create_offer(None).unwrap();
        client.set_local_description(now, offer.clone()).unwrap();
        assert!(offer.sdp.contains("red/48000/2"), "{}", offer.sdp);

        let mut server = server_pc(now);
        let prefs = AudioPreferences { red: true, dtx: true };
        let answer = answer_offer(&mut server, offer.sdp, prefs, now).expect("answered");
        let m = answer.lines().find(|l| l.starts_with("m=audio")).unwrap();
        let formats: Vec<&str> = m.split(' ').skip(3).collect();
        assert_eq!(formats[..2], ["63", "111"], "{m}");
        assert!(
            answer.contains("a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1"),
            "{answer}"
        );
        apply_answer(&mut client, answer, now).expect("the offerer takes it");
    }

    #[test]
    fn an_ice_restart_brings_new_credentials_whichever_side_offers() {
        use crate::router::ice::description_ufrag;
        use rtc::peer_connection::configuration::RTCOfferOptions;
        let ufrag = |sdp: &str| description_ufrag(sdp).expect("a ufrag");
        let restart = || Some(RTCOfferOptions { ice_restart: true });
        let prefs = AudioPreferences { red: true, dtx: true };
        let now = Instant::now();
        let mut client = server_pc(now);
        client.add_transceiver_from_kind(RtpCodecKind::Audio, None).unwrap();
        let offer = client.create_offer(None).unwrap();
        client.set_local_description(now, offer.clone()).unwrap();
        let mut server = server_pc(now);
        let answer = answer_offer(&mut server, offer.sdp.clone(), prefs, now).unwrap();
        apply_answer(&mut client, answer.clone(), now).unwrap();

        // The publisher restarts: its offer and the server's answer both carry new credentials.
        let again = client.create_offer(restart()).unwrap();
        client.set_local_description(now, again.clone()).unwrap();
        assert_ne!(ufrag(&again.sdp), ufrag(&offer.sdp));
        let answer2 = answer_offer(&mut server, again.sdp.clone(), prefs, now).unwrap();
        assert_ne!(
            ufrag(&answer2),
            ufrag(&answer),
            "the server's answer keeps its old credentials"
        );
        apply_answer(&mut client, answer2.clone(), now).unwrap();

        // The server restarts as offerer: new credentials again.
        let from_server = server.create_offer(restart()).unwrap();
        server.set_local_description(now, from_server.clone()).unwrap();
        assert_ne!(ufrag(&from_server.sdp), ufrag(&answer2));
        // Without a restart they stay.
        let plain = client.create_offer(None).unwrap();
        assert_eq!(ufrag(&plain.sdp), ufrag(&again.sdp));
    }
}
