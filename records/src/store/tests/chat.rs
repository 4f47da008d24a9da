//! A meeting's kept chat on SQLite and PostgreSQL: stored once per message id, read back in the
//! order written, refused for unknown meetings, and gone with its meeting — but not while it is
//! under legal hold.

use super::*;

on_both!(chat_is_kept_once_in_order_and_goes_with_its_meeting);

mod scenarios {
    use super::*;

    fn line(meeting_id: &str, message_id: &str, at: i64, text: &str) -> StoredChat {
        StoredChat {
            meeting_id: meeting_id.into(),
            message_id: message_id.into(),
            participant_id: "p-1".into(),
            name: "Åsa Öberg".into(),
            text: text.into(),
            at,
        }
    }

    pub async fn chat_is_kept_once_in_order_and_goes_with_its_meeting(store: Store) {
        let m = store.start_meeting("styrelse", Some("sv")).await.unwrap();
        let other = store.start_meeting("annat", None).await.unwrap();
        assert!(store.chat(&m.id).await.unwrap().is_empty());
        let later = line(&m.id, "2000-2", 2000, "Vi tar budgeten sist.\nOK?");
        let earlier = line(&m.id, "1000-1", 1000, "Hej alla");
        assert!(store.put_chat(&later).await.unwrap());
        assert!(store.put_chat(&earlier).await.unwrap());
        assert!(
            !store.put_chat(&line(&m.id, "1000-1", 1000, "again")).await.unwrap(),
            "one copy per message id"
        );
        assert!(
            store
                .put_chat(&line(&other.id, "1000-1", 1000, "elsewhere"))
                .await
                .unwrap()
        );
        assert_eq!(store.chat(&m.id).await.unwrap(), [earlier, later]);
        assert!(matches!(
            store.put_chat(&line("no-such-meeting", "1", 1, "x")).await,
            Err(Error::UnknownMeeting(id)) if id == "no-such-meeting"
        ));

        // Under legal hold the meeting, and so its chat, stays; without, both go.
        end_and_hold_against_deletion(&store, &m.id).await;
        assert_eq!(store.chat(&m.id).await.unwrap().len(), 2);
        lift_hold_and_delete(&store, &m.id).await;
        assert!(store.chat(&m.id).await.unwrap().is_empty());
        assert_eq!(
            store.chat(&other.id).await.unwrap().len(),
            1,
            "other meetings keep theirs"
        );
    }
}
