//! Where a new room goes: the decision alone, over the node records read from the registry, so that
//! it is tested without NATS.

use serde::{Deserialize, Serialize};

/// What a node says of itself in the registry, renewed every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    /// Base URL other nodes reach this node's HTTP and websocket listener at.
    pub url: String,
    pub rooms: usize,
    /// Participants in this node's rooms, hidden ones (transcription) included.
    pub participants: usize,
    /// The machine's load: the 1-minute load average per core (1.0 = every core busy).
    pub cpu: f64,
    pub draining: bool,
    /// Unix milliseconds of this record.
    pub at_ms: u64,
}

/// Load per core above which a node takes a new room only when every other node is as loaded.
pub const BUSY_CPU: f64 = 0.85;

/// Loads per core closer than this count as equal: two readings of one machine's load average a
/// few seconds apart differ by about that much, and noise must not decide where a room goes.
pub const CPU_MARGIN: f64 = 0.25;

/// The node a new room is placed on: among the live nodes that are not draining, the least loaded,
/// first by whether its CPU is busy (at or above [`BUSY_CPU`]), then by participants, then rooms,
/// then CPU (by more than [`CPU_MARGIN`]), then id (so that every node decides the same from the
/// same records). None when every node drains.
pub fn choose(nodes: &[NodeRecord]) -> Option<&NodeRecord> {
    nodes.iter().filter(|n| !n.draining).min_by(|a, b| {
        let busy = |n: &NodeRecord| n.cpu >= BUSY_CPU;
        let cpu = if (a.cpu - b.cpu).abs() < CPU_MARGIN {
            std::cmp::Ordering::Equal
        } else {
            a.cpu.total_cmp(&b.cpu)
        };
        busy(a)
            .cmp(&busy(b))
            .then(a.participants.cmp(&b.participants))
            .then(a.rooms.cmp(&b.rooms))
            .then(cpu)
            .then(a.id.cmp(&b.id))
    })
}

/// A node id: 1-32 characters of A-Z a-z 0-9 _ - (it is a NATS key and a prefix of resume tokens).
pub fn valid_node_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The registry key of a room: its name in hex, since room names may hold dots, which NATS keys
/// treat as token separators (a leading, trailing or doubled dot is not a valid key).
pub fn room_key(room: &str) -> String {
    hex::encode(room.as_bytes())
}

/// The room name of a registry key; None for a key this server did not write.
pub fn room_of_key(key: &str) -> Option<String> {
    String::from_utf8(hex::decode(key).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, participants: usize, rooms: usize, cpu: f64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            url: format!("http://{id}"),
            rooms,
            participants,
            cpu,
            draining: false,
            at_ms: 0,
        }
    }

    #[test]
    fn fewest_participants_wins_then_rooms_then_cpu_then_id() {
        let nodes = [node("a", 10, 1, 0.1), node("b", 3, 2, 0.5), node("c", 3, 1, 0.6)];
        assert_eq!(choose(&nodes).unwrap().id, "c");
        let nodes = [node("a", 3, 1, 0.7), node("b", 3, 1, 0.2)];
        assert_eq!(choose(&nodes).unwrap().id, "b");
        let nodes = [node("b", 0, 0, 0.0), node("a", 0, 0, 0.0)];
        assert_eq!(
            choose(&nodes).unwrap().id,
            "a",
            "ties go to the lowest id on every node"
        );
        let nodes = [node("c", 1, 1, 0.40), node("b", 1, 1, 0.55)];
        assert_eq!(
            choose(&nodes).unwrap().id,
            "b",
            "loads within the margin tie: the reading's noise does not decide"
        );
    }

    #[test]
    fn a_busy_cpu_counts_before_participants() {
        let nodes = [node("a", 0, 0, 0.95), node("b", 40, 4, 0.3)];
        assert_eq!(choose(&nodes).unwrap().id, "b");
        // When every node is busy, participants decide again.
        let nodes = [node("a", 1, 1, 0.95), node("b", 40, 4, 1.5)];
        assert_eq!(choose(&nodes).unwrap().id, "a");
    }

    #[test]
    fn draining_nodes_take_no_room() {
        let mut a = node("a", 0, 0, 0.0);
        a.draining = true;
        let nodes = [a.clone(), node("b", 50, 5, 0.5)];
        assert_eq!(choose(&nodes).unwrap().id, "b");
        assert!(choose(&[a]).is_none());
        assert!(choose(&[]).is_none());
    }

    #[test]
    fn node_ids_and_room_keys() {
        assert!(valid_node_id("node-1_a"));
        for bad in ["", "a.b", "a b", "ä", &"x".repeat(33)] {
            assert!(!valid_node_id(bad), "{bad:?}");
        }
        for room in ["a", "board.room", ".x.", "a..b", "A-Z_0.9"] {
            let key = room_key(room);
            assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(room_of_key(&key).as_deref(), Some(room));
        }
        assert_eq!(room_of_key("zz"), None);
    }
}
