//! Meeting summaries on SQLite and PostgreSQL: written once, read back, refused for unknown
//! meetings, and gone with their meeting — but not while it is under legal hold.

use super::*;

on_both!(a_summary_is_stored_once_and_goes_with_its_meeting);

mod scenarios {
    use super::*;

    pub async fn a_summary_is_stored_once_and_goes_with_its_meeting(store: Store) {
        let m = store.start_meeting("styrelse", Some("sv")).await.unwrap();
        assert_eq!(store.summary(&m.id).await.unwrap(), None);
        let body = r#"{"key_points":[{"speaker":"Anna","text":"Budgeten"}],"decisions":[],"action_items":[]}"#;
        // Two servers summarising at once: one summary.
        let (a, b) = futures_util::join!(
            store.put_summary(&m.id, "extractive", body),
            store.put_summary(&m.id, "llm:other", "{}"),
        );
        assert!(a.unwrap() ^ b.unwrap(), "exactly one write wins");
        let stored = store.summary(&m.id).await.unwrap().expect("stored");
        assert_eq!(stored.meeting_id, m.id);
        assert!(stored.created_at > 0);
        assert!(
            (stored.source.as_str(), stored.body.as_str()) == ("extractive", body)
                || (stored.source.as_str(), stored.body.as_str()) == ("llm:other", "{}"),
            "{stored:?}"
        );
        assert!(
            !store.put_summary(&m.id, "extractive", body).await.unwrap(),
            "kept once"
        );
        assert!(matches!(
            store.put_summary("no-such-meeting", "extractive", body).await,
            Err(Error::UnknownMeeting(id)) if id == "no-such-meeting"
        ));

        // Under legal hold the meeting, and so its summary, stays; without, both go.
        end_and_hold_against_deletion(&store, &m.id).await;
        assert!(store.summary(&m.id).await.unwrap().is_some());
        lift_hold_and_delete(&store, &m.id).await;
        assert_eq!(store.summary(&m.id).await.unwrap(), None);
    }
}
