//! Last-N: when a room limits how many cameras each subscriber receives, which ones it gets. The
//! most recent speakers come first (the dominant speaker, then whoever held the floor before), then
//! everyone else in the order they joined, so a quiet room still shows its first arrivals; nobody
//! counts for themselves and only participants who publish a camera take a place.

/// The publishers whose camera `subscriber` receives: the first `n` of `recent` (speakers, most
/// recent first) followed by `members` (join order), skipping the subscriber itself and anyone
/// without a camera.
pub fn selected<K: Copy + PartialEq>(
    n: usize,
    recent: &[K],
    members: &[K],
    has_camera: impl Fn(K) -> bool,
    subscriber: K,
) -> Vec<K> {
    let mut chosen = Vec::with_capacity(n);
    for &k in recent.iter().chain(members) {
        if chosen.len() == n {
            break;
        }
        if k != subscriber && has_camera(k) && !chosen.contains(&k) {
            chosen.push(k);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speakers_first_then_join_order_never_oneself_nor_the_camera_less() {
        let members = [1, 2, 3, 4, 5];
        let camera = |k| k != 4;
        assert_eq!(
            selected(2, &[], &members, camera, 1),
            vec![2, 3],
            "quiet room: first arrivals"
        );
        assert_eq!(selected(2, &[5, 3], &members, camera, 1), vec![5, 3], "the speakers");
        assert_eq!(selected(2, &[4, 5], &members, camera, 1), vec![5, 2], "4 has no camera");
        assert_eq!(selected(2, &[1, 5], &members, camera, 1), vec![5, 2], "not oneself");
        assert_eq!(
            selected(9, &[3], &members, camera, 2),
            vec![3, 1, 5],
            "fewer than n: everyone"
        );
        assert!(selected(0, &[3], &members, camera, 2).is_empty());
    }
}
