//! The Matrix outbox on both backends.

use super::{on_postgres, on_sqlite};
use crate::store::*;

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::on_sqlite(super::$name).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::on_postgres(super::$name).await;
            }
        }
    )*};
}

on_both!(
    deliveries_are_enqueued_once_and_handed_out_in_order,
    parts_attempts_and_failures_are_recorded,
    deliveries_go_with_their_meeting,
    each_delivery_goes_to_one_server_and_a_rooms_rows_stay_with_it
);

async fn each_delivery_goes_to_one_server_and_a_rooms_rows_stay_with_it(store: Store) {
    let m = store.start_meeting("weekly", Some("sv")).await.unwrap();
    let now = now_ms();
    for kind in [DeliveryKind::TranscriptionStarted, DeliveryKind::TranscriptionStopped] {
        assert!(store.enqueue_delivery(&m.id, kind, "!a", now).await.unwrap());
    }
    assert!(
        store
            .enqueue_delivery(&m.id, DeliveryKind::Summary, "!b", now)
            .await
            .unwrap()
    );
    // One server takes just the first row (a batch of one): room !a's next row is not for another.
    let first = store.claim_deliveries("a", now, 60_000, 1).await.unwrap();
    assert_eq!(
        first.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>(),
        ["transcription_started"]
    );
    let other = store.claim_deliveries("b", now, 60_000, 10).await.unwrap();
    assert_eq!(
        other.iter().map(|d| d.matrix_room.as_str()).collect::<Vec<_>>(),
        ["!b"],
        "room !a stays with the server that holds its first row"
    );
    assert!(
        store.claim_deliveries("c", now, 60_000, 10).await.unwrap().is_empty(),
        "all held"
    );
    // Only the holder extends its lease, and only while it runs.
    let id = &first[0].id;
    assert!(store.extend_delivery_lease(id, "a", now + 1, 60_000).await.unwrap());
    assert!(!store.extend_delivery_lease(id, "b", now + 1, 60_000).await.unwrap());
    assert!(
        !store
            .extend_delivery_lease(id, "a", now + 60_001, 60_000)
            .await
            .unwrap(),
        "ran out"
    );
    // An outcome ends the lease: the sent row is done, the room's next row is free.
    store.delivery_sent(&first[0].id, now).await.unwrap();
    let next = store.claim_deliveries("a", now + 2, 60_000, 10).await.unwrap();
    assert_eq!(
        next.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>(),
        ["transcription_stopped"]
    );
    // A server that died holding a row: the row comes back once the lease has run out.
    let again = store.claim_deliveries("c", now + 60_002, 60_000, 10).await.unwrap();
    let mut kinds: Vec<&str> = again.iter().map(|d| d.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["summary", "transcription_stopped"]);
    let taken = again.iter().find(|d| d.kind == "transcription_stopped").unwrap();
    assert!(
        !store
            .extend_delivery_lease(&taken.id, "a", now + 60_003, 60_000)
            .await
            .unwrap(),
        "the server whose lease ran out may not deliver it any more"
    );
}

async fn deliveries_are_enqueued_once_and_handed_out_in_order(store: Store) {
    let m = store.start_meeting("weekly", Some("sv")).await.unwrap();
    let now = now_ms();
    assert!(
        store
            .enqueue_delivery(&m.id, DeliveryKind::Summary, "!room", now)
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_delivery(&m.id, DeliveryKind::TranscriptionStopped, "!room", now)
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_delivery(&m.id, DeliveryKind::TranscriptionStarted, "!room", now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .enqueue_delivery(&m.id, DeliveryKind::Summary, "!room", now)
            .await
            .unwrap(),
        "once per kind and room"
    );
    assert!(
        store
            .enqueue_delivery(&m.id, DeliveryKind::Summary, "!other", now + 60_000)
            .await
            .unwrap()
    );
    let err = store
        .enqueue_delivery("no-such-meeting", DeliveryKind::Summary, "!room", now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownMeeting(_)), "{err}");

    let due = store.due_deliveries(now + 1000, 10).await.unwrap();
    let kinds: Vec<_> = due.iter().map(|d| (d.kind.as_str(), d.matrix_room.as_str())).collect();
    // Created within the same millisecond or not, each kind keeps its place when times tie;
    // the later-due summary to !other is not handed out yet.
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(kinds.iter().all(|(_, room)| *room == "!room"), "{kinds:?}");
    assert!(
        due.iter()
            .all(|d| d.state == "pending" && d.attempts == 0 && d.events().is_empty())
    );
    assert_eq!(store.due_deliveries(now + 1000, 1).await.unwrap().len(), 1);
    assert_eq!(store.next_delivery_at().await.unwrap(), Some(now));
    assert_eq!(store.deliveries(&m.id).await.unwrap().len(), 4);
    assert_eq!(DeliveryKind::parse("summary"), Some(DeliveryKind::Summary));
    assert_eq!(DeliveryKind::parse("nope"), None);
}

async fn parts_attempts_and_failures_are_recorded(store: Store) {
    let m = store.start_meeting("weekly", None).await.unwrap();
    let now = now_ms();
    store
        .enqueue_delivery(&m.id, DeliveryKind::Summary, "!room", now)
        .await
        .unwrap();
    let d = store.due_deliveries(now, 10).await.unwrap().remove(0);

    store
        .record_delivery_part(&d.id, "summary", "$one", Some("extractive"))
        .await
        .unwrap();
    store
        .delivery_failed(&d.id, "homeserver down", Some(now + 5000))
        .await
        .unwrap();
    assert!(
        store.due_deliveries(now, 10).await.unwrap().is_empty(),
        "not due before its retry time"
    );
    let retried = store.due_deliveries(now + 5000, 10).await.unwrap().remove(0);
    assert_eq!(
        (retried.attempts, retried.last_error.as_deref()),
        (1, Some("homeserver down"))
    );
    assert_eq!(
        retried.events().get("summary").map(String::as_str),
        Some("$one"),
        "sent parts are kept"
    );
    assert_eq!(retried.summary_source.as_deref(), Some("extractive"));

    store.record_delivery_part(&d.id, "vtt", "$two", None).await.unwrap();
    store.delivery_sent(&d.id, now + 6000).await.unwrap();
    let sent = store.deliveries(&m.id).await.unwrap().remove(0);
    assert_eq!(
        (
            sent.state.as_str(),
            sent.attempts,
            sent.sent_at,
            sent.last_error.as_deref()
        ),
        ("sent", 2, Some(now + 6000), None)
    );
    assert_eq!(sent.events().len(), 2);
    assert_eq!(
        sent.summary_source.as_deref(),
        Some("extractive"),
        "kept when later parts name no source"
    );
    assert_eq!(store.next_delivery_at().await.unwrap(), None);

    store
        .enqueue_delivery(&m.id, DeliveryKind::TranscriptionStopped, "!bad", now)
        .await
        .unwrap();
    let bad = store.due_deliveries(now, 10).await.unwrap().remove(0);
    store.delivery_failed(&bad.id, "not a room id", None).await.unwrap();
    assert!(
        store.due_deliveries(now + 3_600_000, 10).await.unwrap().is_empty(),
        "failed rows are not retried"
    );
    assert_eq!(store.retry_deliveries(&m.id).await.unwrap(), 1);
    store
        .enqueue_delivery(&m.id, DeliveryKind::TranscriptionStarted, "!bad", now)
        .await
        .unwrap();
    assert_eq!(
        store.postpone_room("!bad", now + 9000).await.unwrap(),
        2,
        "both pending rows of the room wait"
    );
    assert!(store.due_deliveries(now + 8000, 10).await.unwrap().is_empty());
    assert_eq!(
        store.postpone_room("!bad", now + 1000).await.unwrap(),
        0,
        "never earlier"
    );
    assert_eq!(store.due_deliveries(now + 9000, 10).await.unwrap().len(), 2);
    store
        .delivery_failed(&store.due_deliveries(now + 9000, 10).await.unwrap()[1].id, "x", None)
        .await
        .unwrap();
    assert_eq!(store.retry_deliveries(&m.id).await.unwrap(), 1);
    assert_eq!(store.due_deliveries(now + 9000, 10).await.unwrap().len(), 2);
}

async fn deliveries_go_with_their_meeting(store: Store) {
    let m = store.start_meeting("weekly", None).await.unwrap();
    store
        .enqueue_delivery(&m.id, DeliveryKind::Summary, "!room", 0)
        .await
        .unwrap();
    let other = store.start_meeting("other", None).await.unwrap();
    assert!(store.deliveries(&other.id).await.unwrap().is_empty());
    assert_eq!(store.deliveries(&m.id).await.unwrap()[0].meeting_id, m.id);
}
