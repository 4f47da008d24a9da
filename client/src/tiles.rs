//! `video_tile` reports: how large this participant shows each video track it receives, which the
//! server uses to choose the simulcast layer it forwards (see docs/protocol.md, "Video layers").
//!
//! A participant with a tile size set reports it for every remote video track as soon as it hears
//! of the track (`joined`, `track_published`) and again when the track's first packet arrives (the
//! server ignores a tile for a track it does not forward to us yet, and the two can race).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use samtal_protocol::{ClientMessage, MediaKind, ParticipantInfo, ServerMessage};
use tracing::debug;

use crate::signal::SignalSender;

/// The tile size reported for every received video track, and the tracks known so far.
pub(crate) struct VideoTiles {
    signal: SignalSender,
    state: Mutex<TileState>,
}

#[derive(Default)]
struct TileState {
    /// Width × height in device pixels; `None`: report nothing.
    size: Option<(u32, u32)>,
    /// Server track ids of the remote video tracks we know of.
    known: HashSet<String>,
    /// Tracks given a size of their own.
    own: HashMap<String, (u32, u32)>,
}

impl VideoTiles {
    pub(crate) fn new(signal: SignalSender, size: Option<(u32, u32)>) -> Self {
        VideoTiles {
            signal,
            state: Mutex::new(TileState {
                size,
                ..TileState::default()
            }),
        }
    }

    fn send(&self, track_id: &str, (width, height): (u32, u32)) {
        debug!(%track_id, width, height, "video_tile");
        let _ = self.signal.send(ClientMessage::VideoTile {
            track_id: track_id.to_owned(),
            width,
            height,
        });
    }

    /// A remote video track exists (announced, or its first packet arrived): report its tile.
    pub(crate) fn track_seen(&self, track_id: &str) {
        let size = match self.state.lock() {
            Ok(mut state) => {
                state.known.insert(track_id.to_owned());
                state.own.get(track_id).copied().or(state.size)
            }
            Err(_) => return,
        };
        if let Some(size) = size {
            self.send(track_id, size);
        }
    }

    /// The video tracks of participants already in the room when we joined.
    pub(crate) fn participants_seen(&self, participants: &[ParticipantInfo]) {
        for track in participants.iter().flat_map(|p| &p.tracks) {
            if track.kind == MediaKind::Video {
                self.track_seen(&track.track_id);
            }
        }
    }

    /// Follows the room: new video tracks get a report, gone ones are forgotten.
    pub(crate) fn on_server_message(&self, message: &ServerMessage) {
        match message {
            ServerMessage::TrackPublished { track, .. } if track.kind == MediaKind::Video => {
                self.track_seen(&track.track_id);
            }
            ServerMessage::TrackUnpublished { track_id, .. } => {
                if let Ok(mut state) = self.state.lock() {
                    state.known.remove(track_id);
                    state.own.remove(track_id);
                }
            }
            ServerMessage::ParticipantLeft { participant_id, .. } => {
                // Server track ids are `<participant id>-t<N>`.
                let prefix = format!("{participant_id}-");
                if let Ok(mut state) = self.state.lock() {
                    state.known.retain(|id| !id.starts_with(&prefix));
                    state.own.retain(|id, _| !id.starts_with(&prefix));
                }
            }
            _ => {}
        }
    }

    /// Shows every received video track at `width` × `height` from now on (0 × 0: not shown) and
    /// reports it for the tracks known so far.
    pub(crate) fn set_all(&self, width: u32, height: u32) {
        let known: Vec<String> = match self.state.lock() {
            Ok(mut state) => {
                state.size = Some((width, height));
                state.own.clear();
                state.known.iter().cloned().collect()
            }
            Err(_) => return,
        };
        for track_id in known {
            self.send(&track_id, (width, height));
        }
    }

    /// Shows one track at `width` × `height` from now on and reports it now (other tracks keep
    /// theirs).
    pub(crate) fn set_one(&self, track_id: &str, width: u32, height: u32) {
        if let Ok(mut state) = self.state.lock() {
            state.known.insert(track_id.to_owned());
            state.own.insert(track_id.to_owned(), (width, height));
        }
        self.send(track_id, (width, height));
    }
}

#[cfg(test)]
mod tests {
    use samtal_protocol::{LeaveReason, ParticipantInfo, Role, TrackInfo, TrackSource};
    use tokio::sync::mpsc;

    use super::*;
    use crate::signal::Outgoing;

    fn sent(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> Vec<(String, u32, u32)> {
        let mut out = Vec::new();
        while let Ok(Outgoing::Message(ClientMessage::VideoTile {
            track_id,
            width,
            height,
        })) = rx.try_recv()
        {
            out.push((track_id, width, height));
        }
        out.sort();
        out
    }

    fn track(track_id: &str, kind: MediaKind) -> TrackInfo {
        TrackInfo {
            track_id: track_id.to_owned(),
            kind,
            source: TrackSource::default_for(kind),
            muted: false,
            stream_id: track_id.split('-').next().unwrap_or_default().to_owned(),
        }
    }

    #[test]
    fn reports_tiles_for_video_tracks_as_they_come() {
        let (signal, mut rx) = SignalSender::detached();
        let tiles = VideoTiles::new(signal, Some((640, 360)));
        tiles.participants_seen(&[ParticipantInfo {
            id: "a".into(),
            name: "A".into(),
            role: Role::Participant,
            tracks: vec![track("a-t1", MediaKind::Audio), track("a-t2", MediaKind::Video)],
            transcription_opt_out: false,
            hand_raised_at: None,
        }]);
        assert_eq!(sent(&mut rx), vec![("a-t2".into(), 640, 360)]);
        tiles.on_server_message(&ServerMessage::TrackPublished {
            participant_id: "b".into(),
            track: track("b-t1", MediaKind::Video),
        });
        tiles.on_server_message(&ServerMessage::TrackPublished {
            participant_id: "b".into(),
            track: track("b-t2", MediaKind::Audio),
        });
        assert_eq!(sent(&mut rx), vec![("b-t1".into(), 640, 360)]);
        // The first packet reports again (the server may not have forwarded the track yet).
        tiles.track_seen("b-t1");
        assert_eq!(sent(&mut rx), vec![("b-t1".into(), 640, 360)]);
        // One track of its own size; then everything hidden; a departed publisher's tracks are
        // forgotten.
        tiles.set_one("a-t2", 1280, 720);
        tiles.track_seen("a-t2");
        assert_eq!(
            sent(&mut rx),
            vec![("a-t2".into(), 1280, 720), ("a-t2".into(), 1280, 720)]
        );
        tiles.on_server_message(&ServerMessage::ParticipantLeft {
            participant_id: "b".into(),
            reason: LeaveReason::Left,
        });
        tiles.set_all(0, 0);
        assert_eq!(sent(&mut rx), vec![("a-t2".into(), 0, 0)]);
    }

    #[test]
    fn reports_nothing_without_a_size() {
        let (signal, mut rx) = SignalSender::detached();
        let tiles = VideoTiles::new(signal, None);
        tiles.track_seen("a-t2");
        assert!(sent(&mut rx).is_empty());
        tiles.set_all(320, 180);
        assert_eq!(sent(&mut rx), vec![("a-t2".into(), 320, 180)]);
    }
}
