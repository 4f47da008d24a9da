//! Scenarios: `PxS` = P publishers (audio + video) that also receive each other, plus S
//! receive-only subscribers (participants that publish nothing), all in one room. `PxS-simulcast`:
//! the publishers send their camera as three simulcast layers and everyone reports a tile size
//! for the video it receives ([`Tiles`]; by default a third each 1280×720, 640×360 and 320×180).
//! `PxS-audio`: the publishers send audio only (Opus, 50 packets/s), the per-packet cost of an
//! audio conference.

use std::fmt;
use std::str::FromStr;

use samtal_client::ParticipantOptions;

/// One load shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Participants publishing audio and video; each also receives the other `publishers - 1`.
    pub publishers: usize,
    /// Receive-only participants; each receives every publisher.
    pub subscribers: usize,
    /// Cameras as simulcast, tiles of mixed sizes.
    pub simulcast: bool,
    /// Publishers send audio only.
    pub audio_only: bool,
}

/// Suffix of a simulcast scenario's name.
const SIMULCAST_SUFFIX: &str = "-simulcast";
/// Suffix of an audio-only scenario's name.
const AUDIO_SUFFIX: &str = "-audio";

/// Height of the top simulcast layer the load generator's publishers send.
const TOP_HEIGHT: u32 = 720;
/// Simulcast layers the load generator's publishers send.
const LAYERS: usize = 3;

/// The tile sizes (width, height in device pixels) the participants of a simulcast scenario report
/// for all video they receive, by join order (publishers first): participant `i` uses tile class
/// `i % n`. `0x0` means not shown. Written `1280x720,640x360,320x180` (the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiles(pub Vec<(u32, u32)>);

impl Default for Tiles {
    fn default() -> Self {
        Tiles(vec![(1280, 720), (640, 360), (320, 180)])
    }
}

impl Tiles {
    /// Number of tile classes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no tile class (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tile class of participant `index` (join order, publishers first).
    pub fn class(&self, index: usize) -> usize {
        index % self.0.len().max(1)
    }

    /// The size of tile class `class`.
    pub fn size(&self, class: usize) -> (u32, u32) {
        self.0[class]
    }

    /// The layer (0 = `q`) tile class `class` needs; `None` for a tile not shown.
    pub fn layer(&self, class: usize) -> Option<usize> {
        let (width, height) = self.size(class);
        tile_layer(width, height)
    }

    /// How many (receiver, publisher) video pairs of `scenario` fall in each tile class:
    /// participant `i` receives every publisher but itself.
    pub fn video_pairs(&self, scenario: &Scenario) -> Vec<usize> {
        let mut pairs = vec![0; self.len()];
        for i in 0..scenario.participants() {
            pairs[self.class(i)] += scenario.publishers - usize::from(i < scenario.publishers);
        }
        pairs
    }
}

/// The simulcast layer (0 = `q`, lowest) a `width` × `height` tile needs from the load generator's
/// publishers, by the server's rule (docs/protocol.md, "Video layers"): the height 16:9 video needs
/// to fill the tile, `max(height, width × 9/16)`, and the smallest layer at least that high, the
/// top one being 720 pixels and each lower one half the next. `None`: not shown.
pub fn tile_layer(width: u32, height: u32) -> Option<usize> {
    if width == 0 || height == 0 {
        return None;
    }
    let needed = height.max(width.saturating_mul(9) / 16);
    let mut layer = LAYERS - 1;
    let mut layer_height = TOP_HEIGHT;
    while layer > 0 && layer_height / 2 >= needed {
        layer -= 1;
        layer_height /= 2;
    }
    Some(layer)
}

impl fmt::Display for Tiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<String> = self.0.iter().map(|(w, h)| format!("{w}x{h}")).collect();
        f.write_str(&sizes.join(","))
    }
}

impl FromStr for Tiles {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sizes = s
            .split(',')
            .map(|size| {
                let (w, h) = size
                    .trim()
                    .split_once(['x', 'X'])
                    .ok_or_else(|| format!("tile {size:?} is not WxH (e.g. 640x360)"))?;
                let w: u32 = w.trim().parse().map_err(|_| format!("bad width in {size:?}"))?;
                let h: u32 = h.trim().parse().map_err(|_| format!("bad height in {size:?}"))?;
                Ok((w, h))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Tiles(sizes))
    }
}

impl Scenario {
    /// Everyone in the room.
    pub fn participants(&self) -> usize {
        self.publishers + self.subscribers
    }

    /// Track subscriptions the server serves: how many receivers each published track reaches,
    /// summed over publishers (each publisher has two tracks, so packets fan out this many times).
    pub fn fan_out(&self) -> usize {
        self.publishers * self.receivers_per_publisher()
    }

    /// How many participants receive each publisher: the other publishers and every subscriber.
    pub fn receivers_per_publisher(&self) -> usize {
        self.publishers.saturating_sub(1) + self.subscribers
    }

    /// The join options of participant `i` (publishers first) in `room`: a publisher sends audio,
    /// and video unless the scenario is audio-only (as simulcast in a simulcast scenario); the
    /// others only receive. Named `pub-N` and `sub-N`.
    pub fn participant_options(&self, room: &str, i: usize) -> ParticipantOptions {
        if i >= self.publishers {
            return ParticipantOptions::new(room, format!("sub-{}", i - self.publishers));
        }
        let options = ParticipantOptions::new(room, format!("pub-{i}")).with_audio();
        match (self.audio_only, self.simulcast) {
            (true, _) => options,
            (false, false) => options.with_video(),
            (false, true) => options.with_video().with_simulcast(),
        }
    }

    /// The same load with or without simulcast.
    pub fn with_simulcast(self, simulcast: bool) -> Self {
        Scenario {
            simulcast: simulcast && !self.audio_only,
            ..self
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.publishers, self.subscribers)?;
        if self.simulcast {
            f.write_str(SIMULCAST_SUFFIX)?;
        }
        if self.audio_only {
            f.write_str(AUDIO_SUFFIX)?;
        }
        Ok(())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let (s, simulcast, audio_only) = match (name.strip_suffix(SIMULCAST_SUFFIX), name.strip_suffix(AUDIO_SUFFIX)) {
            (Some(shape), _) => (shape, true, false),
            (_, Some(shape)) => (shape, false, true),
            _ => (name, false, false),
        };
        let (p, sub) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("scenario {name:?} is not PxS, PxS-simulcast or PxS-audio (e.g. 2x20)"))?;
        let publishers: usize = p.trim().parse().map_err(|_| format!("bad publisher count in {s:?}"))?;
        let subscribers: usize = sub
            .trim()
            .parse()
            .map_err(|_| format!("bad subscriber count in {s:?}"))?;
        if publishers == 0 {
            return Err(format!("scenario {s:?} has no publisher"));
        }
        if publishers + subscribers < 2 {
            return Err(format!("scenario {s:?} has nobody to receive"));
        }
        Ok(Scenario {
            publishers,
            subscribers,
            simulcast,
            audio_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_counts() {
        let s: Scenario = "10x10".parse().unwrap();
        assert_eq!(
            s,
            Scenario {
                publishers: 10,
                subscribers: 10,
                simulcast: false,
                audio_only: false,
            }
        );
        assert_eq!(s.participants(), 20);
        assert_eq!(s.fan_out(), 10 * (9 + 10));
        let s: Scenario = "2X20".parse().unwrap();
        assert_eq!(s.fan_out(), 2 * 21);
        assert_eq!(s.to_string(), "2x20");
        assert!("0x5".parse::<Scenario>().is_err());
        assert!("1x0".parse::<Scenario>().is_err());
        assert!("ten".parse::<Scenario>().is_err());
        let s: Scenario = "8x8-audio".parse().unwrap();
        assert!(s.audio_only && !s.simulcast && s.to_string() == "8x8-audio");
        assert!(
            !s.with_simulcast(true).simulcast,
            "audio only has no camera to simulcast"
        );
    }

    #[test]
    fn simulcast_scenarios_and_their_tiles() {
        let s: Scenario = "10x20-simulcast".parse().unwrap();
        assert!(s.simulcast);
        assert_eq!((s.publishers, s.subscribers), (10, 20));
        assert_eq!(s.to_string(), "10x20-simulcast");
        assert_eq!(s.with_simulcast(false).to_string(), "10x20");
        assert!("10x20-simul".parse::<Scenario>().is_err());
        let tiles = Tiles::default();
        assert_eq!(tiles.to_string(), "1280x720,640x360,320x180");
        assert_eq!("1280x720, 640X360,320x180".parse::<Tiles>(), Ok(tiles.clone()));
        assert_eq!(tiles.size(tiles.class(0)), (1280, 720));
        assert_eq!(tiles.size(tiles.class(4)), (640, 360));
        assert_eq!(tiles.size(tiles.class(29)), (320, 180));
        assert_eq!(
            (0..3).map(|c| tiles.layer(c)).collect::<Vec<_>>(),
            [Some(2), Some(1), Some(0)]
        );
        // 30 participants, 10 per tile; each receives 10 publishers but itself: 4 publishers are
        // in the first class (0, 3, 6, 9), 3 in each other one.
        let pairs = tiles.video_pairs(&s);
        assert_eq!(pairs, [10 * 10 - 4, 10 * 10 - 3, 10 * 10 - 3]);
        assert_eq!(
            pairs.iter().sum::<usize>(),
            s.publishers * (s.publishers - 1 + s.subscribers)
        );
        let small: Tiles = "320x180,0x0".parse().unwrap();
        assert_eq!((small.layer(0), small.layer(1)), (Some(0), None));
        assert!("320".parse::<Tiles>().is_err());
        assert!("".parse::<Tiles>().is_err());
        // Wide and tall tiles: 16:9 video filling a 1280x200 tile needs 720 lines; 400x400 needs 400.
        assert_eq!(tile_layer(1280, 200), Some(2));
        assert_eq!(tile_layer(400, 400), Some(2));
        assert_eq!(tile_layer(300, 100), Some(0));
    }

    /// What the client synthesises is what the server reads: each layer's keyframes announce the
    /// size the layer was meant to have (the server takes the top layer's height from them), and
    /// each tile maps to the layer the load generator expects.
    #[test]
    fn the_server_reads_the_synthetic_layers_as_intended() {
        use samtal_client::synthetic::{Vp8Config, Vp8Synth, simulcast_layers};
        use samtal_sfu::forward::codec::VideoCodec;
        use samtal_sfu::forward::layers::layer_for_height;

        let top = Vp8Config {
            width: 1280,
            height: 720,
            ..Vp8Config::default()
        };
        let layers = simulcast_layers(&top);
        let sizes: Vec<(u16, u16)> = layers.iter().map(|l| (l.video.width, l.video.height)).collect();
        assert_eq!(sizes, vec![(320, 180), (640, 360), (1280, 720)]);
        for (index, layer) in layers.iter().enumerate() {
            let mut synth = Vp8Synth::for_layer(layer.video.clone(), index as u8);
            let key = synth.next_frame();
            assert!(key.keyframe);
            assert_eq!(VideoCodec::Vp8.starts_keyframe(&key.packets[0]), Some(true));
            assert_eq!(
                VideoCodec::Vp8.keyframe_size(&key.packets[0]),
                Some((layer.video.width, layer.video.height))
            );
            let delta = synth.next_frame();
            assert_eq!(VideoCodec::Vp8.starts_keyframe(&delta.packets[0]), Some(false));
            assert_eq!(VideoCodec::Vp8.keyframe_size(&delta.packets[0]), None);
        }
        for (width, height) in [
            (1280, 720),
            (640, 360),
            (320, 180),
            (1280, 200),
            (400, 400),
            (300, 100),
            (1, 1),
        ] {
            // The server's rule: the height 16:9 video needs to fill the tile.
            let needed = height.max(width * 9 / 16);
            assert_eq!(
                layer_for_height(needed, 720, 3),
                tile_layer(width, height).map(|l| l as u8),
                "{width}x{height}"
            );
        }
        assert_eq!(layer_for_height(0, 720, 3), tile_layer(0, 0).map(|l| l as u8));
    }
}
