//! What the SFU needs to know of codec payloads: which video packets start a keyframe, and the
//! RFC 6464 audio level a publisher attached to its audio packets.

/// Video codecs the SFU can look into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    /// Forwarded without looking inside (no keyframe detection: forwarded from the first packet).
    Other,
}

impl VideoCodec {
    pub fn from_mime(mime: &str) -> Self {
        if mime.eq_ignore_ascii_case("video/vp8") {
            VideoCodec::Vp8
        } else if mime.eq_ignore_ascii_case("video/vp9") {
            VideoCodec::Vp9
        } else if mime.eq_ignore_ascii_case("video/h264") {
            VideoCodec::H264
        } else {
            VideoCodec::Other
        }
    }

    /// Whether this packet is the first packet of a keyframe. `None` when the codec is not
    /// inspected, so callers do not wait for a keyframe they cannot recognise.
    pub fn starts_keyframe(self, payload: &[u8]) -> Option<bool> {
        match self {
            VideoCodec::Vp8 => Some(vp8_starts_keyframe(payload)),
            VideoCodec::Vp9 => Some(vp9_starts_keyframe(payload)),
            VideoCodec::H264 => Some(h264_has_keyframe(payload)),
            VideoCodec::Other => None,
        }
    }

    /// The picture size a keyframe's first packet announces (width, height), where the codec
    /// says it plainly (VP8).
    pub fn keyframe_size(self, payload: &[u8]) -> Option<(u16, u16)> {
        match self {
            VideoCodec::Vp8 => vp8_keyframe_size(payload),
            _ => None,
        }
    }
}

/// RFC 7741: where the VP8 payload starts, after the payload descriptor, in the first packet of a
/// frame (`None` in any other packet).
fn vp8_frame_start(p: &[u8]) -> Option<usize> {
    let &b0 = p.first()?;
    let extended = b0 & 0x80 != 0;
    let start = b0 & 0x10 != 0;
    let partition = b0 & 0x07;
    if !start || partition != 0 {
        return None;
    }
    let mut i = 1;
    if extended {
        let &x = p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            let &pid = p.get(i)?;
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    (i < p.len()).then_some(i)
}

/// The VP8 frame tag's lowest bit is 0 for a keyframe.
fn vp8_starts_keyframe(p: &[u8]) -> bool {
    vp8_frame_start(p).is_some_and(|i| p[i] & 0x01 == 0)
}

/// A VP8 keyframe's picture size (RFC 6386 §9.1): the 3-byte frame tag, the start code 9d 01 2a,
/// then width and height, 14 bits each, little-endian.
fn vp8_keyframe_size(p: &[u8]) -> Option<(u16, u16)> {
    let i = vp8_frame_start(p)?;
    let h = p.get(i..i + 10)?;
    if h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([h[6], h[7]]) & 0x3fff;
    let height = u16::from_le_bytes([h[8], h[9]]) & 0x3fff;
    Some((width, height))
}

/// VP9 payload descriptor (RFC 9628): B (start of frame) set and P (inter-picture predicted) clear.
fn vp9_starts_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let inter_predicted = b0 & 0x40 != 0;
    let begins_frame = b0 & 0x08 != 0;
    begins_frame && !inter_predicted
}

/// RFC 6184: an IDR slice or SPS in a single NAL unit, a STAP-A, or the first fragment of an FU-A.
fn h264_has_keyframe(p: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        IDR | SPS => true,
        24 => {
            // STAP-A: 16-bit size, then a NAL unit, repeated.
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if matches!(p[i + 2] & 0x1f, IDR | SPS) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, IDR | SPS)),
        _ => false,
    }
}

/// The abs-send-time header extension's value for a packet sent `since` the sender's origin: 24
/// bits of seconds in 6.18 fixed point, wrapping every 64 s (the receiver only uses differences).
pub fn abs_send_time(since: std::time::Duration) -> [u8; 3] {
    let value = ((since.as_nanos() << 18) / 1_000_000_000) as u32 & 0x00ff_ffff;
    let [_, a, b, c] = value.to_be_bytes();
    [a, b, c]
}

/// RFC 6464 client-to-mixer audio level: `(voice_activity, level)` with level in -dBov (0 loudest,
/// 127 silence) from the one-byte extension payload.
pub fn audio_level(ext: &[u8]) -> Option<(bool, u8)> {
    ext.first().map(|b| (b & 0x80 != 0, b & 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_and_interframe() {
        // S=1, partition 0, no extension; frame tag bit0 = 0 -> keyframe.
        assert_eq!(VideoCodec::Vp8.starts_keyframe(&[0x10, 0x00, 0x9d]), Some(true));
        assert_eq!(VideoCodec::Vp8.starts_keyframe(&[0x10, 0x01, 0x9d]), Some(false));
        // Not the start of a partition.
        assert_eq!(VideoCodec::Vp8.starts_keyframe(&[0x00, 0x00]), Some(false));
        // Extended: X=1, I=1 with a 15-bit picture id, then the frame tag.
        assert_eq!(
            VideoCodec::Vp8.starts_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]),
            Some(true)
        );
        assert_eq!(
            VideoCodec::Vp8.starts_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x01]),
            Some(false)
        );
        assert_eq!(VideoCodec::Vp8.starts_keyframe(&[]), Some(false));
    }

    #[test]
    fn vp8_keyframe_size() {
        // Descriptor (S=1), frame tag (keyframe), start code, 640 x 480 with scaling bits set.
        let key = [0x10, 0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x82, 0xe0, 0x41];
        assert_eq!(VideoCodec::Vp8.keyframe_size(&key), Some((640, 480)));
        let mut delta = key;
        delta[1] |= 1;
        assert_eq!(VideoCodec::Vp8.keyframe_size(&delta), None);
        assert_eq!(VideoCodec::Vp8.keyframe_size(&key[..8]), None, "truncated");
        let mut bad = key;
        bad[5] = 0;
        assert_eq!(VideoCodec::Vp8.keyframe_size(&bad), None, "no start code");
        assert_eq!(VideoCodec::H264.keyframe_size(&[0x65]), None);
    }

    #[test]
    fn h264_keyframes_in_all_packetizations() {
        assert_eq!(VideoCodec::H264.starts_keyframe(&[0x65, 0x88]), Some(true)); // IDR
        assert_eq!(VideoCodec::H264.starts_keyframe(&[0x41, 0x9a]), Some(false)); // non-IDR
        // STAP-A holding SPS.
        assert_eq!(
            VideoCodec::H264.starts_keyframe(&[0x78, 0x00, 0x02, 0x67, 0x42]),
            Some(true)
        );
        // FU-A, start bit, IDR.
        assert_eq!(VideoCodec::H264.starts_keyframe(&[0x7c, 0x85, 0x00]), Some(true));
        // FU-A, middle fragment.
        assert_eq!(VideoCodec::H264.starts_keyframe(&[0x7c, 0x05, 0x00]), Some(false));
    }

    #[test]
    fn vp9_and_unknown_codecs() {
        assert_eq!(VideoCodec::Vp9.starts_keyframe(&[0x08]), Some(true));
        assert_eq!(VideoCodec::Vp9.starts_keyframe(&[0x48]), Some(false));
        assert_eq!(VideoCodec::from_mime("video/AV1"), VideoCodec::Other);
        assert_eq!(VideoCodec::Other.starts_keyframe(&[0]), None);
    }

    #[test]
    fn abs_send_time_is_six_dot_eighteen_seconds_wrapping_at_64() {
        use std::time::Duration;
        assert_eq!(abs_send_time(Duration::ZERO), [0, 0, 0]);
        // One second is 1 << 18.
        assert_eq!(abs_send_time(Duration::from_secs(1)), [0x04, 0x00, 0x00]);
        assert_eq!(abs_send_time(Duration::from_millis(1500)), [0x06, 0x00, 0x00]);
        assert_eq!(abs_send_time(Duration::from_secs(64)), [0, 0, 0], "wraps");
        assert_eq!(abs_send_time(Duration::from_secs(63)), [0xfc, 0x00, 0x00]);
    }

    #[test]
    fn audio_level_byte() {
        assert_eq!(audio_level(&[0x80 | 30]), Some((true, 30)));
        assert_eq!(audio_level(&[127]), Some((false, 127)));
        assert_eq!(audio_level(&[]), None);
    }
}
