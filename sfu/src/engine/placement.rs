//! Which media loop a room lives on. A new room goes to the loop with the fewest participants; every
//! participant of a room joins the room's loop, so a packet is forwarded by the loop that read it
//! and nothing on the packet path is shared between loops.

use std::collections::HashMap;

pub(crate) struct Placement {
    /// Participants on each loop.
    load: Vec<usize>,
    /// Room → (its loop, its participants).
    rooms: HashMap<String, (usize, usize)>,
    /// Participant → (its loop, its room).
    participants: HashMap<String, (usize, String)>,
}

impl Placement {
    pub fn new(loops: usize) -> Self {
        Self {
            load: vec![0; loops.max(1)],
            rooms: HashMap::new(),
            participants: HashMap::new(),
        }
    }

    /// The loop of a participant joining `room`, and whether it was placed now (a participant
    /// placed already keeps its loop and is counted once).
    pub fn join(&mut self, room: &str, participant: &str) -> (usize, bool) {
        if let Some(&(at, _)) = self.participants.get(participant) {
            return (at, false);
        }
        let at = match self.rooms.get(room) {
            Some(&(at, _)) => at,
            None => self.least_loaded(),
        };
        self.rooms.entry(room.to_owned()).or_insert((at, 0)).1 += 1;
        self.participants.insert(participant.to_owned(), (at, room.to_owned()));
        self.load[at] += 1;
        (at, true)
    }

    /// The loop the participant is on.
    pub fn of(&self, participant: &str) -> Option<usize> {
        self.participants.get(participant).map(|&(at, _)| at)
    }

    /// Forgets the participant (and its room when it was the last there); returns its loop.
    pub fn leave(&mut self, participant: &str) -> Option<usize> {
        let (at, room) = self.participants.remove(participant)?;
        self.load[at] -= 1;
        if let Some(entry) = self.rooms.get_mut(&room) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.rooms.remove(&room);
            }
        }
        Some(at)
    }

    fn least_loaded(&self) -> usize {
        (0..self.load.len()).min_by_key(|&i| self.load[i]).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_spread_over_loops_and_keep_their_participants_together() {
        let mut p = Placement::new(2);
        assert_eq!(p.join("a", "a1"), (0, true));
        assert_eq!(p.join("b", "b1"), (1, true), "a new room goes to the emptier loop");
        assert_eq!(p.join("a", "a2"), (0, true), "a room's participants share its loop");
        assert_eq!(p.join("a", "a3"), (0, true));
        assert_eq!(p.join("c", "c1"), (1, true));
        assert_eq!(p.join("c", "c1"), (1, false), "a second join counts once");
        assert_eq!(p.of("a2"), Some(0));
        assert_eq!(p.of("nobody"), None);
    }

    #[test]
    fn an_emptied_room_is_forgotten_and_placed_afresh() {
        let mut p = Placement::new(2);
        p.join("a", "a1");
        p.join("a", "a2");
        p.join("b", "b1");
        assert_eq!(p.leave("a1"), Some(0));
        assert_eq!(p.leave("a1"), None);
        assert_eq!(p.leave("a2"), Some(0));
        // Room a is gone and loop 0 is empty: a's next participant opens it there anew.
        assert_eq!(p.join("b", "b2"), (1, true));
        assert_eq!(p.join("a", "a3"), (0, true));
        assert!(p.rooms.len() == 2 && p.load == [1, 2]);
    }

    #[test]
    fn one_loop_takes_everything() {
        let mut p = Placement::new(0);
        assert_eq!(p.join("a", "x"), (0, true));
        assert_eq!(p.join("b", "y"), (0, true));
    }
}
