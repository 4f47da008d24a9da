//! Scenarios: `PxS` = P publishers (audio + video) that also receive each other, plus S
//! receive-only subscribers (participants that publish nothing), all in one room.

use std::fmt;
use std::str::FromStr;

/// One load shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Participants publishing audio and video; each also receives the other `publishers - 1`.
    pub publishers: usize,
    /// Receive-only participants; each receives every publisher.
    pub subscribers: usize,
}

impl Scenario {
    /// Everyone in the room.
    pub fn participants(&self) -> usize {
        self.publishers + self.subscribers
    }

    /// Track subscriptions the server serves: how many receivers each published track reaches,
    /// summed over publishers (each publisher has two tracks, so packets fan out this many times).
    pub fn fan_out(&self) -> usize {
        self.publishers * (self.publishers.saturating_sub(1) + self.subscribers)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.publishers, self.subscribers)
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (p, sub) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("scenario {s:?} is not PxS (e.g. 2x20)"))?;
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
                subscribers: 10
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
    }
}
