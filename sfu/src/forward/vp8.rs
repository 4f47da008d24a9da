//! VP8 picture numbering toward one subscriber (RFC 7741 payload descriptor).
//!
//! Each simulcast layer numbers its pictures on its own (PictureID, and TL0PICIDX for the base
//! temporal layer), from its own random start. A subscriber switched from one layer to another would
//! see these numbers jump, and a decoder that tracks picture references by them (libwebrtc's frame
//! reference finder, in Chromium and Firefox alike) may hold frames back or drop them until it
//! resynchronises. So the picture numbers are rewritten per subscriber: after a switch to another
//! layer the first forwarded picture continues right after the last one sent. Within one layer they
//! go out as the publisher numbered them (after a pause or mute they jump by the pictures skipped,
//! as a decoder expects of a stream that lost them), so a subscriber that never switched gets every
//! payload byte for byte.

/// Where a VP8 packet's picture numbers sit in its payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Numbers {
    /// PictureID: value, whether it is 15 bits long (else 7), and its byte offset.
    pub picture_id: Option<(u16, bool, usize)>,
    /// TL0PICIDX and its byte offset.
    pub tl0_pic_idx: Option<(u8, usize)>,
}

/// Reads the picture numbers of a VP8 payload descriptor. Every packet of a picture carries them
/// (not only its first), so every packet is rewritten alike. A truncated descriptor reads as
/// having none.
pub fn numbers(p: &[u8]) -> Vp8Numbers {
    let mut n = Vp8Numbers::default();
    let Some(&b0) = p.first() else { return n };
    if b0 & 0x80 == 0 {
        return n;
    }
    let Some(&x) = p.get(1) else { return n };
    let mut i = 2;
    if x & 0x80 != 0 {
        let Some(&hi) = p.get(i) else { return n };
        if hi & 0x80 != 0 {
            let Some(&lo) = p.get(i + 1) else { return n };
            n.picture_id = Some(((u16::from(hi & 0x7f) << 8) | u16::from(lo), true, i));
            i += 2;
        } else {
            n.picture_id = Some((u16::from(hi), false, i));
            i += 1;
        }
    }
    if x & 0x40 != 0 {
        match p.get(i) {
            Some(&tl0) => n.tl0_pic_idx = Some((tl0, i)),
            None => n.picture_id = None,
        }
    }
    n
}

/// New picture numbers for one forwarded packet, to be written over the incoming ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Patch {
    picture_id: Option<(u16, bool, usize)>,
    tl0_pic_idx: Option<(u8, usize)>,
}

impl Vp8Patch {
    /// Writes the numbers into a copy of the packet's payload (the one `numbers` read).
    pub fn apply(&self, payload: &mut [u8]) {
        if let Some((id, long, at)) = self.picture_id {
            if long {
                if let Some(b) = payload.get_mut(at..at + 2) {
                    b[0] = 0x80 | ((id >> 8) as u8 & 0x7f);
                    b[1] = id as u8;
                }
            } else if let Some(b) = payload.get_mut(at) {
                *b = id as u8 & 0x7f;
            }
        }
        if let Some((tl0, at)) = self.tl0_pic_idx
            && let Some(b) = payload.get_mut(at)
        {
            *b = tl0;
        }
    }
}

const PICTURE_ID_SPACE: u16 = 1 << 15;

/// `a` comes after `b` in a numbering space of `space` values (serial number arithmetic).
fn after(a: u16, b: u16, space: u16) -> bool {
    let d = a.wrapping_sub(b) % space;
    d != 0 && d < space / 2
}

/// The rewriting state of one subscriber's VP8 stream.
#[derive(Debug, Clone, Default)]
pub struct PictureNumbering {
    /// `out = in - offset`, in the 15-bit PictureID space.
    picture_offset: u16,
    tl0_offset: u8,
    /// The newest numbers sent.
    last_picture: Option<u16>,
    last_tl0: Option<u8>,
    /// The layer the numbers come from now.
    layer: Option<u8>,
}

impl PictureNumbering {
    /// Maps the numbers of one packet forwarded from `layer`; `None` when they go out as they came.
    /// The first packet from another layer than the last starts a new mapping.
    pub fn rewrite(&mut self, layer: u8, n: Vp8Numbers) -> Option<Vp8Patch> {
        if self.layer.replace(layer).is_some_and(|was| was != layer) {
            if let (Some((id, _, _)), Some(last)) = (n.picture_id, self.last_picture) {
                self.picture_offset = id.wrapping_sub(last.wrapping_add(1)) % PICTURE_ID_SPACE;
            }
            if let (Some((tl0, _)), Some(last)) = (n.tl0_pic_idx, self.last_tl0) {
                self.tl0_offset = tl0.wrapping_sub(last.wrapping_add(1));
            }
        }
        let picture_id = n.picture_id.map(|(id, long, at)| {
            let space = if long { PICTURE_ID_SPACE } else { 128 };
            let out = id.wrapping_sub(self.picture_offset) % PICTURE_ID_SPACE % space;
            if self.last_picture.is_none_or(|last| after(out, last % space, space)) {
                self.last_picture = Some(out);
            }
            (out, long, at)
        });
        let tl0_pic_idx = n.tl0_pic_idx.map(|(tl0, at)| {
            let out = tl0.wrapping_sub(self.tl0_offset);
            if self
                .last_tl0
                .is_none_or(|last| after(u16::from(out), u16::from(last), 256))
            {
                self.last_tl0 = Some(out);
            }
            (out, at)
        });
        let patch = Vp8Patch {
            picture_id,
            tl0_pic_idx,
        };
        (picture_id != n.picture_id || tl0_pic_idx != n.tl0_pic_idx).then_some(patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 packet with X=1, I=1 (15-bit PictureID), L=1 (TL0PICIDX), T=1, then one payload byte.
    fn packet(picture_id: u16, tl0: u8) -> Vec<u8> {
        vec![
            0x90,
            0xe0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
            0x20,
            0x00,
        ]
    }

    /// The numbers a subscriber reads of a packet from `layer` after the patch (if any) is applied.
    fn out(n: &mut PictureNumbering, layer: u8, picture_id: u16, tl0: u8) -> (u16, u8) {
        let mut p = packet(picture_id, tl0);
        if let Some(patch) = n.rewrite(layer, numbers(&p)) {
            patch.apply(&mut p);
        }
        let read = numbers(&p);
        (read.picture_id.unwrap().0, read.tl0_pic_idx.unwrap().0)
    }

    #[test]
    fn descriptors_are_read_in_every_form() {
        let n = numbers(&packet(0x1234, 7));
        assert_eq!(n.picture_id, Some((0x1234, true, 2)));
        assert_eq!(n.tl0_pic_idx, Some((7, 4)));
        // 7-bit PictureID, no TL0PICIDX.
        let n = numbers(&[0x90, 0x80, 0x55, 0x00]);
        assert_eq!(n.picture_id, Some((0x55, false, 2)));
        assert_eq!(n.tl0_pic_idx, None);
        // No extension: nothing to rewrite.
        assert_eq!(numbers(&[0x10, 0x00]), Vp8Numbers::default());
        // Truncated descriptors read as none.
        assert_eq!(numbers(&[0x90, 0x80, 0x81]), Vp8Numbers::default());
        assert_eq!(numbers(&[0x90, 0xc0, 0x81, 0x00]).picture_id, None);
        assert_eq!(numbers(&[]), Vp8Numbers::default());
    }

    #[test]
    fn numbers_pass_unchanged_until_the_first_switch_even_across_a_gap() {
        let mut n = PictureNumbering::default();
        assert_eq!(n.rewrite(2, numbers(&packet(500, 9))), None);
        assert_eq!(out(&mut n, 2, 501, 10), (501, 10));
        // A pause or mute on the same layer: the numbers jump as the publisher's did.
        assert_eq!(n.rewrite(2, numbers(&packet(650, 40))), None);
    }

    #[test]
    fn a_switch_continues_the_numbers_and_later_packets_keep_the_mapping() {
        let mut n = PictureNumbering::default();
        assert_eq!(out(&mut n, 2, 100, 50), (100, 50));
        assert_eq!(out(&mut n, 2, 101, 50), (101, 50));
        // Switched to layer 0, numbering from 30000 / 200.
        assert_eq!(out(&mut n, 0, 30_000, 200), (102, 51));
        assert_eq!(out(&mut n, 0, 30_000, 200), (102, 51), "same picture, next packet");
        assert_eq!(out(&mut n, 0, 30_001, 201), (103, 52));
        // A late packet of the same layer keeps the mapping (no new jump).
        assert_eq!(out(&mut n, 0, 29_999, 199), (101, 50));
        assert_eq!(out(&mut n, 0, 30_002, 201), (104, 52));
        // A gap within the layer keeps the mapping too.
        assert_eq!(out(&mut n, 0, 30_010, 205), (112, 56));
    }

    #[test]
    fn numbers_wrap_in_their_own_width() {
        let mut n = PictureNumbering::default();
        assert_eq!(out(&mut n, 1, 0x7fff, 255), (0x7fff, 255));
        // Next picture after 0x7fff is 0 and after 255 is 0.
        assert_eq!(out(&mut n, 0, 10, 3), (0, 0));
        assert_eq!(out(&mut n, 0, 11, 4), (1, 1));
        // A switch back to a layer whose numbers are below the current output.
        assert_eq!(out(&mut n, 1, 0x7ffe, 254), (2, 2));
    }

    #[test]
    fn seven_bit_picture_ids_stay_seven_bits() {
        let mut n = PictureNumbering::default();
        let mut p = vec![0x90, 0x80, 0x7f, 0x00];
        assert_eq!(n.rewrite(1, numbers(&p)), None);
        p[2] = 0x10;
        let patch = n.rewrite(0, numbers(&p)).expect("rewritten after the switch");
        patch.apply(&mut p);
        assert_eq!(numbers(&p).picture_id, Some((0, false, 2)), "127 + 1 wraps to 0");
        assert_eq!(p[3], 0x00, "payload untouched");
    }
}
