//! RFC 2198 redundant audio (`audio/red`): a RED payload is a list of block headers followed by
//! the blocks, the newest (primary) last. Browsers that negotiated RED send each Opus frame once
//! as primary and again as redundancy in the next packet(s), so one lost packet costs nothing.
//!
//! The SFU forwards RED as it came to subscribers that negotiated it, and only the primary block,
//! as plain Opus, to those that did not (the transcription service, other WebRTC stacks).
//!
//! ```text
//! redundant block header:  |F=1| block PT (7) | timestamp offset (14) | block length (10) |
//! primary block header:    |F=0| block PT (7) |
//! ```

/// The primary block of a RED payload: its payload type and where its data starts (it runs to the
/// end of the payload). `None` for a payload that is not well-formed RED.
pub fn primary(payload: &[u8]) -> Option<(u8, usize)> {
    let mut at = 0;
    let mut redundant = 0usize;
    loop {
        let first = *payload.get(at)?;
        if first & 0x80 == 0 {
            let start = at + 1 + redundant;
            return (start <= payload.len()).then_some((first & 0x7f, start));
        }
        let header = payload.get(at..at + 4)?;
        redundant += usize::from(u16::from_be_bytes([header[2], header[3]]) & 0x03ff);
        at += 4;
    }
}

/// One redundant block of a RED payload: its payload type, how far its timestamp lies before the
/// packet's, and where its data lies in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub payload_type: u8,
    pub timestamp_offset: u32,
    pub start: usize,
    pub end: usize,
}

/// At most this many redundant blocks are looked at (browsers send one or two).
pub const MAX_REDUNDANT: usize = 4;

/// The redundant blocks of a well-formed RED payload, oldest first, into `out`; returns how many
/// (0 for a malformed payload or one with more than [`MAX_REDUNDANT`]).
pub fn redundant(payload: &[u8], out: &mut [Block; MAX_REDUNDANT]) -> usize {
    let Some((_, primary_start)) = primary(payload) else {
        return 0;
    };
    // Block data follows the headers (4 bytes each, then the primary's 1), in header order.
    let mut data = 0;
    while payload[data] & 0x80 != 0 {
        data += 4;
    }
    data += 1;
    let (mut at, mut count) = (0, 0);
    while payload[at] & 0x80 != 0 {
        if count == MAX_REDUNDANT {
            return 0;
        }
        let word = u32::from_be_bytes([0, payload[at + 1], payload[at + 2], payload[at + 3]]);
        let len = (word & 0x03ff) as usize;
        out[count] = Block {
            payload_type: payload[at] & 0x7f,
            timestamp_offset: word >> 10,
            start: data,
            end: data + len,
        };
        data += len;
        count += 1;
        at += 4;
    }
    debug_assert_eq!(data, primary_start);
    count
}

/// The payload type of the blocks a RED format carries, from its `a=fmtp` line (`111/111`: Opus
/// with payload type 111, twice).
pub fn block_payload_type(fmtp: &str) -> Option<u8> {
    let mut types = fmtp.trim().split('/').map(str::parse::<u8>);
    let first = types.next()?.ok()?;
    types.all(|t| t == Ok(first)).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RED payload of `redundant` (payload type, timestamp offset, data) blocks and a primary.
    fn red(redundant: &[(u8, u16, &[u8])], primary_pt: u8, primary: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (pt, offset, data) in redundant {
            out.push(0x80 | pt);
            let word = (u32::from(*offset) << 10) | data.len() as u32;
            out.extend_from_slice(&word.to_be_bytes()[1..]);
        }
        out.push(primary_pt);
        for (_, _, data) in redundant {
            out.extend_from_slice(data);
        }
        out.extend_from_slice(primary);
        out
    }

    #[test]
    fn the_primary_is_found_after_every_redundant_block() {
        let payload = red(&[(111, 1920, b"older"), (111, 960, b"old")], 111, b"newest");
        let (pt, start) = primary(&payload).unwrap();
        assert_eq!((pt, &payload[start..]), (111, &b"newest"[..]));
    }

    #[test]
    fn a_payload_without_redundancy_is_a_one_byte_header_and_the_primary() {
        let payload = red(&[], 111, b"frame");
        assert_eq!(primary(&payload), Some((111, 1)));
        // An empty primary (a DTX gap carried only as redundancy) is allowed.
        assert_eq!(primary(&red(&[(111, 960, b"x")], 111, b"")), Some((111, 6)));
    }

    #[test]
    fn redundant_blocks_are_read_oldest_first_with_their_offsets() {
        let payload = red(&[(111, 1920, b"older"), (111, 960, b"old")], 111, b"newest");
        let mut blocks = [Block {
            payload_type: 0,
            timestamp_offset: 0,
            start: 0,
            end: 0,
        }; MAX_REDUNDANT];
        assert_eq!(redundant(&payload, &mut blocks), 2);
        let read: Vec<_> = blocks[..2]
            .iter()
            .map(|b| (b.payload_type, b.timestamp_offset, &payload[b.start..b.end]))
            .collect();
        assert_eq!(read, vec![(111, 1920, &b"older"[..]), (111, 960, &b"old"[..])]);
        assert_eq!(redundant(&red(&[], 111, b"frame"), &mut blocks), 0);
        assert_eq!(redundant(&[0x80 | 111, 0x00], &mut blocks), 0, "malformed");
        let many: Vec<(u8, u16, &[u8])> = vec![(111, 960, b"x"); MAX_REDUNDANT + 1];
        assert_eq!(
            redundant(&red(&many, 111, b"y"), &mut blocks),
            0,
            "more than we look at"
        );
    }

    #[test]
    fn the_block_format_is_read_from_the_fmtp_line() {
        assert_eq!(block_payload_type("111/111"), Some(111));
        assert_eq!(block_payload_type("109"), Some(109));
        // Mixed or unreadable block formats are not forwarded as Opus.
        assert_eq!(block_payload_type("111/0"), None);
        assert_eq!(block_payload_type(""), None);
        assert_eq!(block_payload_type("opus"), None);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        assert_eq!(primary(&[]), None);
        // A redundant header cut short, and one that ends before its primary header.
        assert_eq!(primary(&[0x80 | 111, 0x00]), None);
        assert_eq!(primary(&[0x80 | 111, 0, 0, 1]), None);
        // Block lengths that run past the end.
        let mut long = red(&[(111, 960, b"abc")], 111, b"");
        long.truncate(long.len() - 1);
        assert_eq!(primary(&long), None);
    }
}
