//! The client against a minimal in-test server that speaks the signaling protocol and echoes a
//! participant's own media back on its subscribe connection (stream id `p-echo`), asking for
//! keyframes now and then. Its peer connections are ICE-lite, as the real server's are. It checks the client's side of both negotiations, media delivery,
//! stamps, keyframe requests and join errors without the real SFU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use samtal_client::samtal_protocol::{ClientMessage, ErrorCode, MediaKind, PcKind, Role, ServerMessage, TrackSource};
use samtal_client::synthetic::vp8_is_keyframe_start;
use samtal_client::{Error, JoinOptions, Participant, ParticipantEvent, ParticipantOptions, SignalingClient};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCSessionDescription, Registry, SettingEngineBuilder, register_default_interceptors,
};

const ECHO_ID: &str = "p-echo";

/// Set when an echoed audio packet carried the audio-level header extension.
static AUDIO_LEVEL_SEEN: AtomicBool = AtomicBool::new(false);

struct ServerHandler {
    gathering: watch::Sender<RTCIceGatheringState>,
    /// Where a received track of each kind is echoed to.
    outputs: Option<(Arc<TrackLocalStaticRTP>, Arc<TrackLocalStaticRTP>)>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ServerHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some((audio, video)) = self.outputs.clone() else {
            return;
        };
        tokio::spawn(async move {
            let kind = track.kind().await;
            let output = if kind == RtpCodecKind::Video { video } else { audio };
            let out_ssrc = output.ssrcs().await[0];
            let out_pt = if kind == RtpCodecKind::Video { 96 } else { 111 };
            if kind == RtpCodecKind::Video {
                // Ask the publisher for keyframes, as the SFU does when a subscriber joins.
                let track = Arc::clone(&track);
                let media_ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let pli = PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc,
                        };
                        if track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
                            break;
                        }
                    }
                });
            }
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(mut packet) => {
                        // Synthetic silence carries an RFC 6464 level of 127, no voice.
                        if kind == RtpCodecKind::Audio
                            && packet.header.extensions.iter().any(|e| e.payload.as_ref() == [0x7F])
                        {
                            AUDIO_LEVEL_SEEN.store(true, Ordering::Relaxed);
                        }
                        packet.header.ssrc = out_ssrc;
                        packet.header.payload_type = out_pt;
                        packet.header.extensions.clear();
                        packet.header.extension = false;
                        let _ = output.write_rtp(packet).await;
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

async fn server_pc(
    outputs: Option<(Arc<TrackLocalStaticRTP>, Arc<TrackLocalStaticRTP>)>,
) -> (Arc<dyn PeerConnection>, watch::Receiver<RTCIceGatheringState>) {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().unwrap();
    // The real server negotiates the audio level (it picks the active speaker with it).
    media_engine
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level".to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media_engine).unwrap();
    let (gathering_tx, gathering_rx) = watch::channel(RTCIceGatheringState::New);
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        // ICE-lite, like the real server.
        .with_setting_engine(SettingEngineBuilder::new().with_lite(true).build())
        .with_handler(Arc::new(ServerHandler {
            gathering: gathering_tx,
            outputs,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .unwrap();
    (Arc::new(pc), gathering_rx)
}

async fn gathered(pc: &Arc<dyn PeerConnection>, rx: &mut watch::Receiver<RTCIceGatheringState>) -> String {
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await
    .unwrap()
    .unwrap();
    pc.local_description().await.unwrap().sdp
}

fn output_track(
    kind: RtpCodecKind,
    mime: &str,
    clock_rate: u32,
    channels: u16,
    fmtp: &str,
) -> Arc<TrackLocalStaticRTP> {
    let name = if kind == RtpCodecKind::Video {
        "echo-video"
    } else {
        "echo-audio"
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        ECHO_ID.to_owned(),
        name.to_owned(),
        name.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(rand::random::<u32>()),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate,
                channels,
                sdp_fmtp_line: fmtp.to_owned(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    )))
}

async fn offer_subscribe(
    sub_pc: &Arc<dyn PeerConnection>,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
    out_tx: &mpsc::UnboundedSender<ServerMessage>,
) {
    let offer = sub_pc.create_offer(None).await.unwrap();
    sub_pc.set_local_description(offer).await.unwrap();
    let sdp = gathered(sub_pc, gathering).await;
    out_tx
        .send(ServerMessage::Offer {
            pc: PcKind::Subscribe,
            sdp,
        })
        .unwrap();
}

/// Serves one websocket: `join` → `joined`; a publish offer → answer, then a subscribe offer
/// carrying the echo of both tracks.
async fn serve_echo(listener: TcpListener) -> Vec<usize> {
    let mut declared = Vec::new();
    let (tcp, _) = listener.accept().await.unwrap();
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ServerMessage>();
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let text = serde_json::to_string(&m).unwrap();
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });
    let audio_out = output_track(
        RtpCodecKind::Audio,
        "audio/opus",
        48_000,
        2,
        "minptime=10;useinbandfec=1",
    );
    let video_out = output_track(RtpCodecKind::Video, "video/VP8", 90_000, 0, "");
    let (sub_pc, mut sub_gathering) = server_pc(None).await;
    sub_pc
        .add_track(Arc::clone(&audio_out) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    sub_pc
        .add_track(Arc::clone(&video_out) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let (pub_pc, mut pub_gathering) = server_pc(Some((audio_out, video_out))).await;

    let mut sub_offer_in_flight = false;
    let mut sub_offer_wanted = false;
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let message: ClientMessage = serde_json::from_str(text.as_str()).unwrap();
        match message {
            ClientMessage::Join { room, .. } => {
                out_tx
                    .send(ServerMessage::Joined {
                        participant_id: "p-1".into(),
                        room,
                        role: Role::Participant,
                        ice_servers: vec![],
                        participants: vec![],
                        transcription: samtal_protocol::TranscriptionStatus {
                            enabled: false,
                            language: None,
                            meeting_id: None,
                            available: false,
                            chat_kept: false,
                        },
                        resume: None,
                    })
                    .unwrap();
            }
            ClientMessage::Offer {
                pc: PcKind::Publish,
                sdp,
                tracks,
            } => {
                declared.push(tracks.len());
                pub_pc
                    .set_remote_description(RTCSessionDescription::offer(sdp).unwrap())
                    .await
                    .unwrap();
                let answer = pub_pc.create_answer(None).await.unwrap();
                pub_pc.set_local_description(answer).await.unwrap();
                let sdp = gathered(&pub_pc, &mut pub_gathering).await;
                assert!(sdp.contains("a=ice-lite"), "the echo server is ICE-lite");
                out_tx
                    .send(ServerMessage::Answer {
                        pc: PcKind::Publish,
                        sdp,
                    })
                    .unwrap();

                // Like the real server: never two subscribe offers in flight.
                if sub_offer_in_flight {
                    sub_offer_wanted = true;
                } else {
                    offer_subscribe(&sub_pc, &mut sub_gathering, &out_tx).await;
                    sub_offer_in_flight = true;
                }
            }
            ClientMessage::Answer {
                pc: PcKind::Subscribe,
                sdp,
            } => {
                assert!(sub_offer_in_flight, "a subscribe answer without an offer");
                sub_pc
                    .set_remote_description(RTCSessionDescription::answer(sdp).unwrap())
                    .await
                    .unwrap();
                sub_offer_in_flight = false;
                if std::mem::take(&mut sub_offer_wanted) {
                    offer_subscribe(&sub_pc, &mut sub_gathering, &out_tx).await;
                    sub_offer_in_flight = true;
                }
            }
            ClientMessage::Leave => break,
            _ => {}
        }
    }
    let _ = pub_pc.close().await;
    let _ = sub_pc.close().await;
    declared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_and_receives_its_echo() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("samtal_client=debug,warn")
        .with_test_writer()
        .try_init();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let server = tokio::spawn(serve_echo(listener));

    let mut p = Participant::join(&url, ParticipantOptions::new("echo", "Alice").with_audio().with_video())
        .await
        .expect("join and publish");
    assert_eq!(p.id(), "p-1");
    let mut media = p.take_media().unwrap();
    let mut events = p.take_events().unwrap();
    p.start_media();

    let mut audio = Vec::new();
    let mut video = Vec::new();
    let mut keyframe_starts = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while audio.len() < 50 || video.len() < 60 || keyframe_starts < 2 {
        let r = tokio::time::timeout_at(deadline, media.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "media: {} audio, {} video, stats {:?}",
                    audio.len(),
                    video.len(),
                    p.stats()
                )
            })
            .unwrap();
        assert_eq!(r.participant_id, ECHO_ID);
        let stamp = r.stamp().expect("stamped payload");
        assert!(stamp.age() < Duration::from_secs(5));
        match r.kind {
            MediaKind::Audio => audio.push(stamp.counter),
            MediaKind::Video => {
                if vp8_is_keyframe_start(&r.payload) {
                    keyframe_starts += 1;
                }
                video.push(stamp.counter)
            }
        }
    }
    // On loopback nothing is lost or reordered, so counters arrive in order.
    assert!(
        audio.windows(2).all(|w| w[1] > w[0]),
        "audio counters increase: {audio:?}"
    );
    assert!(video.windows(2).all(|w| w[1] > w[0]), "video counters increase");

    // The echo server sends a PLI every 300 ms; each makes a keyframe.
    let mut started = 0;
    let mut requested = false;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
        match event {
            ParticipantEvent::TrackStarted { participant_id, .. } => {
                assert_eq!(participant_id, ECHO_ID);
                started += 1;
            }
            ParticipantEvent::KeyframeRequested { .. } => requested = true,
            _ => {}
        }
    }
    assert_eq!(started, 2, "audio and video tracks started");
    let stats = p.stats();
    assert!(requested && stats.keyframe_requests > 0, "{stats:?}");
    assert!(stats.keyframes_sent >= 2, "{stats:?}");
    assert_eq!(stats.send_errors, 0, "{stats:?}");
    assert!(
        AUDIO_LEVEL_SEEN.load(Ordering::Relaxed),
        "audio packets carry their audio level"
    );

    // Renegotiation of the publish connection: a screen share comes and goes.
    let screen = p
        .publish(TrackSource::ScreenShare)
        .await
        .expect("publish a screen share");
    assert_eq!(p.published_tracks().len(), 3);
    assert!(
        p.send_video_frame_on(TrackSource::ScreenShare).await.unwrap(),
        "first frame is a keyframe"
    );
    p.unpublish(TrackSource::ScreenShare)
        .await
        .expect("unpublish the screen share");
    assert!(p.published_tracks().iter().all(|t| t.track_id != screen));
    assert!(p.send_video_frame_on(TrackSource::ScreenShare).await.is_err());
    p.send_video_frame().await.expect("the camera still sends");
    assert_eq!(p.stats().send_errors, 0);

    p.close().await;
    let declared = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server saw leave")
        .unwrap();
    assert_eq!(declared, vec![2, 3, 2], "tracks declared in each publish offer");
}

#[tokio::test]
async fn join_errors_come_back_as_server_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("no join")
        };
        let join: ClientMessage = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(join.type_name(), "join");
        let reply = ServerMessage::error(ErrorCode::RoomFull, "full", Some("join"));
        ws.send(Message::text(serde_json::to_string(&reply).unwrap()))
            .await
            .unwrap();
        let _ = ws.close(None).await;
    });
    match SignalingClient::connect(&url, JoinOptions::new("full", "Bob")).await {
        Err(Error::Server {
            code: ErrorCode::RoomFull,
            ..
        }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("joined a full room"),
    }
}

#[tokio::test]
async fn signaling_passes_messages_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut seen = Vec::new();
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            let m: ClientMessage = serde_json::from_str(text.as_str()).unwrap();
            seen.push(m.type_name());
            let reply = match m {
                ClientMessage::Join {
                    room,
                    hidden,
                    token,
                    protocol,
                    ..
                } => {
                    assert!(hidden);
                    assert_eq!(token.as_deref(), Some("t"));
                    assert_eq!(protocol, Some(1));
                    ServerMessage::Joined {
                        participant_id: "svc".into(),
                        room,
                        role: Role::Service,
                        ice_servers: vec![],
                        participants: vec![],
                        transcription: samtal_protocol::TranscriptionStatus {
                            enabled: false,
                            language: None,
                            meeting_id: None,
                            available: false,
                            chat_kept: false,
                        },
                        resume: None,
                    }
                }
                ClientMessage::Ping { nonce } => ServerMessage::Pong { nonce },
                ClientMessage::Leave => break,
                _ => continue,
            };
            ws.send(Message::text(serde_json::to_string(&reply).unwrap()))
                .await
                .unwrap();
        }
        seen
    });
    let (mut client, joined) = SignalingClient::connect(&url, JoinOptions::new("r", "T").with_token("t").hidden(true))
        .await
        .unwrap();
    assert_eq!(joined.role, Role::Service);
    client
        .send(ClientMessage::Ping {
            nonce: Some("n1".into()),
        })
        .unwrap();
    assert_eq!(
        client.recv().await,
        Some(ServerMessage::Pong {
            nonce: Some("n1".into())
        })
    );
    client.close().await;
    assert_eq!(server.await.unwrap(), vec!["join", "ping", "leave"]);
}
