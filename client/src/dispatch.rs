//! The participant's signaling task: applies what the server sends to the peer connections
//! (answers subscribe offers, applies publish answers and candidates) and to our simulcast tracks
//! (`publish_layers`), reports video tiles for new remote tracks, and forwards the rest to the
//! user as events.

use std::sync::Arc;
use std::time::Duration;

use samtal_protocol::{ClientMessage, PcKind, ServerMessage};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

use crate::connection::{Connection, answer_subscribe};
use crate::error::{Error, Result};
use crate::local_track::SimulcastSlot;
use crate::participant::ParticipantEvent;
use crate::signal::SignalSender;
use crate::stats::{Counters, bump};
use crate::tiles::VideoTiles;

/// The publish connection, once there is one, shared with the signaling task.
pub(crate) type PublishSlot = Arc<std::sync::Mutex<Option<Arc<dyn PeerConnection>>>>;

/// What the signaling task works on.
pub(crate) struct SignalLoop {
    pub(crate) signal: SignalSender,
    pub(crate) subscribe: Connection,
    pub(crate) publish: PublishSlot,
    pub(crate) publish_answers: mpsc::UnboundedSender<Result<()>>,
    pub(crate) events: mpsc::UnboundedSender<ParticipantEvent>,
    pub(crate) timeout: Duration,
    pub(crate) simulcast: SimulcastSlot,
    pub(crate) tiles: Arc<VideoTiles>,
    pub(crate) counters: Arc<Counters>,
}

/// Applies what the server sends; forwards the rest as events.
pub(crate) async fn signal_loop(mut rx: mpsc::UnboundedReceiver<ServerMessage>, state: SignalLoop) {
    let SignalLoop {
        signal,
        mut subscribe,
        publish,
        publish_answers,
        events,
        timeout,
        simulcast,
        tiles,
        counters,
    } = state;
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
            ServerMessage::PublishLayers { track_id, active } => {
                let video = simulcast.lock().ok().and_then(|m| m.get(&track_id).cloned());
                match video {
                    Some(video) => {
                        if video.set_active_layers(&active) {
                            bump(&counters.layer_switches, 1);
                        }
                        debug!(%track_id, ?active, "publish_layers");
                    }
                    None => debug!(%track_id, "publish_layers for a track we do not send as simulcast"),
                }
                let _ = events.send(ParticipantEvent::Server(ServerMessage::PublishLayers {
                    track_id,
                    active,
                }));
            }
            other => {
                tiles.on_server_message(&other);
                let _ = events.send(ParticipantEvent::Server(other));
            }
        }
    }
    debug!("signaling closed");
    let _ = events.send(ParticipantEvent::SignalingClosed);
}
