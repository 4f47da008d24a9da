//! The participant's signaling task: applies what the server sends to the peer connections
//! (answers subscribe offers, applies publish answers and candidates) and forwards the rest to the
//! user as events.

use std::sync::Arc;
use std::time::Duration;

use samtal_protocol::{ClientMessage, PcKind, ServerMessage};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

use crate::connection::{Connection, answer_subscribe};
use crate::error::{Error, Result};
use crate::participant::ParticipantEvent;
use crate::signal::SignalSender;

/// The publish connection, once there is one, shared with the signaling task.
pub(crate) type PublishSlot = Arc<std::sync::Mutex<Option<Arc<dyn PeerConnection>>>>;

/// Applies what the server sends; forwards the rest as events.
pub(crate) async fn signal_loop(
    mut rx: mpsc::UnboundedReceiver<ServerMessage>,
    signal: SignalSender,
    mut subscribe: Connection,
    publish: PublishSlot,
    publish_answers: mpsc::UnboundedSender<Result<()>>,
    events: mpsc::UnboundedSender<ParticipantEvent>,
    timeout: Duration,
) {
    while let Some(message) = rx.recv().await {
        let publish = publish.lock().ok().and_then(|p| p.clone());
        match message {
            ServerMessage::Offer {
                pc: PcKind::Subscribe,
                sdp,
            } => match answer_subscribe(&mut subscribe, sdp, timeout).await {
                Ok(sdp) => {
                    debug!("answering subscribe offer");
                    if signal
                        .send(ClientMessage::Answer {
                            pc: PcKind::Subscribe,
                            sdp,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "could not answer the subscribe offer");
                    let _ = events.send(ParticipantEvent::NegotiationFailed {
                        pc: PcKind::Subscribe,
                        message: e.to_string(),
                    });
                }
            },
            ServerMessage::Answer {
                pc: PcKind::Publish,
                sdp,
            } => {
                let result = match &publish {
                    Some(pc) => match RTCSessionDescription::answer(sdp) {
                        Ok(desc) => pc.set_remote_description(desc).await.map_err(Error::from),
                        Err(e) => Err(e.into()),
                    },
                    None => Err(Error::Protocol("publish answer without a publish offer".into())),
                };
                if let Err(e) = &result {
                    warn!(error = %e, "could not apply the publish answer");
                    let _ = events.send(ParticipantEvent::NegotiationFailed {
                        pc: PcKind::Publish,
                        message: e.to_string(),
                    });
                }
                let _ = publish_answers.send(result);
            }
            ServerMessage::Candidate { pc, candidate } => {
                if candidate.candidate.is_empty() {
                    continue; // end of candidates
                }
                let target = match pc {
                    PcKind::Subscribe => Some(&subscribe.pc),
                    PcKind::Publish => publish.as_ref(),
                };
                if let Some(target) = target {
                    let init = RTCIceCandidateInit {
                        candidate: candidate.candidate,
                        sdp_mid: candidate.sdp_mid,
                        sdp_mline_index: candidate.sdp_mline_index,
                        ..Default::default()
                    };
                    if let Err(e) = target.add_ice_candidate(init).await {
                        warn!(?pc, error = %e, "could not add a server candidate");
                    }
                }
            }
            ServerMessage::Offer {
                pc: PcKind::Publish, ..
            }
            | ServerMessage::Answer {
                pc: PcKind::Subscribe, ..
            } => {
                warn!("server sent an offer/answer for the wrong connection; ignored");
                let _ = events.send(ParticipantEvent::NegotiationFailed {
                    pc: PcKind::Publish,
                    message: "server offer/answer for the wrong connection".into(),
                });
            }
            ServerMessage::Error {
                code,
                message,
                ref_type,
                fatal,
            } => {
                warn!(?code, %message, ?ref_type, fatal, "server error");
                if ref_type.as_deref() == Some("offer") {
                    let _ = publish_answers.send(Err(Error::Server {
                        code,
                        message: message.clone(),
                    }));
                }
                let _ = events.send(ParticipantEvent::Server(ServerMessage::Error {
                    code,
                    message,
                    ref_type,
                    fatal,
                }));
            }
            other => {
                let _ = events.send(ParticipantEvent::Server(other));
            }
        }
    }
    debug!("signaling closed");
    let _ = events.send(ParticipantEvent::SignalingClosed);
}
