//! Every scenario runs against SQLite (a fresh file in a temporary directory) and PostgreSQL (a
//! fresh schema on the server named by `SAMTAL_TEST_POSTGRES`, dropped afterwards). `tests/run`
//! starts a throwaway server of its own and sets `SAMTAL_TEST_POSTGRES` to it, unless the caller has
//! set it to another server; run without `tests/run` and without the variable, the tests use
//! `postgres://postgres@127.0.0.1:5432/test`. The PostgreSQL tests fail, never skip, when that
//! server cannot be reached.

use super::*;
use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn postgres_url() -> String {
    std::env::var("SAMTAL_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

async fn on_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist yet: connect creates it and the file.
    let path = dir.path().join("data").join("transcripts.db");
    let store = Store::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    scenario(store.clone()).await;
    store.close().await;
}

async fn on_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let url = postgres_url();
    let unreachable = |e: sqlx::Error| -> ! {
        panic!(
            "PostgreSQL for the store tests is not reachable at {url} (set SAMTAL_TEST_POSTGRES to another server): {e}"
        )
    };
    // A plain connection first reports the cause (a pool would only report its timeout).
    let options = PgConnectOptions::from_str(&url).unwrap_or_else(|e| unreachable(e));
    options
        .connect()
        .await
        .unwrap_or_else(|e| unreachable(e))
        .close()
        .await
        .unwrap();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap_or_else(|e| unreachable(e));
    let schema = format!("samtal_test_{}", new_id().replace('-', ""));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let outcome = AssertUnwindSafe(async {
        let store = Store::connect(&scoped).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        scenario(store.clone()).await;
        store.close().await;
    })
    .catch_unwind()
    .await;
    let dropped = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await;
    admin.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    dropped.unwrap();
}

/// Declares `mod $name { sqlite, postgres }` running the scenario on each backend.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::on_sqlite(super::scenarios::$name).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::on_postgres(super::scenarios::$name).await;
            }
        }
    )*};
}

on_both!(
    meetings_start_end_and_read_back,
    participants_are_recorded_once,
    segments_are_idempotent_per_utterance_and_ordered,
    interim_segments_are_not_stored,
    concurrent_duplicate_segments_keep_one,
    segments_for_unknown_meetings_are_refused,
    filters_by_room_participant_time_and_limit,
    unicode_names_match_case_insensitively,
    matrix_room_and_digest_can_be_set,
    reconnecting_keeps_data_and_migrations_are_idempotent,
    open_meetings_keep_their_prompt_for_resuming,
    opting_out_is_recorded_with_its_first_time,
);

fn seg(utterance: &str, who: &str, start_ms: i64, text: &str) -> Segment {
    Segment {
        utterance_id: utterance.into(),
        participant_id: who.into(),
        start_ms,
        end_ms: start_ms + 500,
        text: text.into(),
        language: Some("sv".into()),
        confidence: Some(0.5),
        is_final: true,
    }
}

mod scenarios {
    use super::*;

    pub async fn meetings_start_end_and_read_back(store: Store) {
        let before = now_ms();
        let m = store.start_meeting("weekly", Some("sv")).await.unwrap();
        assert!(m.started_at >= before && m.started_at <= now_ms());
        assert_eq!(
            (m.room.as_str(), m.language.as_deref(), m.ended_at),
            ("weekly", Some("sv"), None)
        );
        assert_eq!(m.id.len(), 36, "{}", m.id);
        assert_eq!(store.meeting(&m.id).await.unwrap(), Some(m.clone()));

        assert!(store.end_meeting(&m.id, m.started_at + 1000).await.unwrap());
        // The first end stays.
        assert!(!store.end_meeting(&m.id, m.started_at + 5000).await.unwrap());
        assert!(!store.end_meeting("no-such-meeting", 1).await.unwrap());
        let ended = store.meeting(&m.id).await.unwrap().unwrap();
        assert_eq!(ended.ended_at, Some(m.started_at + 1000));

        let other = store.start_meeting("weekly", None).await.unwrap();
        assert_ne!(other.id, m.id);
        assert_eq!(store.meeting(&other.id).await.unwrap().unwrap().language, None);
        assert_eq!(store.meeting("no-such-meeting").await.unwrap(), None);
        assert!(store.transcript("no-such-meeting").await.unwrap().is_none());

        let t = store.transcript(&m.id).await.unwrap().unwrap();
        assert_eq!(t.meeting, ended);
        assert!(t.participants.is_empty() && t.segments.is_empty());
    }

    pub async fn participants_are_recorded_once(store: Store) {
        let m = store.start_meeting("weekly", None).await.unwrap();
        assert!(store.add_participant(&m.id, "p1", "Anna").await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert!(store.add_participant(&m.id, "p2", "Bo").await.unwrap());
        // Again, even under another name: the first record stays.
        assert!(!store.add_participant(&m.id, "p1", "Anna B").await.unwrap());
        let t = store.transcript(&m.id).await.unwrap().unwrap();
        let people: Vec<_> = t
            .participants
            .iter()
            .map(|p| (p.participant_id.as_str(), p.name.as_str()))
            .collect();
        assert_eq!(people, [("p1", "Anna"), ("p2", "Bo")]);
        assert!(t.participants[0].first_seen <= t.participants[1].first_seen);
        assert!(t.participants[0].first_seen >= m.started_at);

        // The same participant id in another meeting is another record.
        let m2 = store.start_meeting("weekly", None).await.unwrap();
        assert!(store.add_participant(&m2.id, "p1", "Anna").await.unwrap());
        assert!(matches!(
            store.add_participant("no-such-meeting", "p1", "Anna").await,
            Err(Error::UnknownMeeting(id)) if id == "no-such-meeting"
        ));
    }

    pub async fn segments_are_idempotent_per_utterance_and_ordered(store: Store) {
        let m = store.start_meeting("weekly", Some("sv")).await.unwrap();
        store.add_participant(&m.id, "p1", "Anna").await.unwrap();
        let t0 = m.started_at;
        assert!(
            store
                .add_segment(&m.id, &seg("p1-3000", "p1", t0 + 3000, "tre"), "Anna")
                .await
                .unwrap()
        );
        assert!(
            store
                .add_segment(&m.id, &seg("p1-1000", "p1", t0 + 1000, "ett"), "Anna")
                .await
                .unwrap()
        );
        let mut english = seg("p2-2000", "p2", t0 + 2000, "two");
        english.language = Some("en".into());
        english.confidence = None;
        // p2 never joined through add_participant: the segment records it.
        assert!(store.add_segment(&m.id, &english, "Bo").await.unwrap());
        // A restarted worker resends with different text: the first copy stays.
        let mut again = seg("p1-1000", "p1", t0 + 1000, "ETT (again)");
        again.end_ms += 100;
        assert!(!store.add_segment(&m.id, &again, "Anna").await.unwrap());
        // The same utterance id in another meeting is another segment.
        let m2 = store.start_meeting("weekly", None).await.unwrap();
        assert!(
            store
                .add_segment(&m2.id, &seg("p1-1000", "p1", t0 + 1000, "ett"), "Anna")
                .await
                .unwrap()
        );

        let t = store.transcript(&m.id).await.unwrap().unwrap();
        let texts: Vec<_> = t.segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["ett", "two", "tre"]);
        let first = &t.segments[0];
        assert_eq!(
            first,
            &TranscriptSegment {
                utterance_id: "p1-1000".into(),
                participant_id: "p1".into(),
                speaker_name: "Anna".into(),
                start_ms: t0 + 1000,
                end_ms: t0 + 1500,
                text: "ett".into(),
                language: Some("sv".into()),
                confidence: Some(0.5),
            }
        );
        assert_eq!(
            (t.segments[1].speaker_name.as_str(), t.segments[1].language.as_deref()),
            ("Bo", Some("en"))
        );
        assert_eq!(t.segments[1].confidence, None);
        let people: Vec<_> = t
            .participants
            .iter()
            .map(|p| (p.participant_id.as_str(), p.name.as_str()))
            .collect();
        assert_eq!(people.len(), 2);
        assert!(people.contains(&("p1", "Anna")) && people.contains(&("p2", "Bo")));
        let bo = t.participants.iter().find(|p| p.participant_id == "p2").unwrap();
        assert_eq!(bo.first_seen, t0 + 2000);
        assert_eq!(store.transcript(&m2.id).await.unwrap().unwrap().segments.len(), 1);

        // Equal start times: by end, then utterance id (bytewise on both backends).
        let m3 = store.start_meeting("ties", None).await.unwrap();
        for (id, end) in [("b", 900), ("B", 900), ("a", 950)] {
            let mut s = seg(id, "p1", 100, id);
            s.end_ms = end;
            store.add_segment(&m3.id, &s, "Anna").await.unwrap();
        }
        let order: Vec<_> = store
            .transcript(&m3.id)
            .await
            .unwrap()
            .unwrap()
            .segments
            .into_iter()
            .map(|s| s.utterance_id)
            .collect();
        assert_eq!(order, ["B", "b", "a"]);
    }

    pub async fn interim_segments_are_not_stored(store: Store) {
        let m = store.start_meeting("weekly", None).await.unwrap();
        let mut interim = seg("p1-0", "p1", 0, "hal");
        interim.is_final = false;
        assert!(!store.add_segment(&m.id, &interim, "Anna").await.unwrap());
        // The final version of the same utterance is stored afterwards.
        assert!(
            store
                .add_segment(&m.id, &seg("p1-0", "p1", 0, "hallå"), "Anna")
                .await
                .unwrap()
        );
        let t = store.transcript(&m.id).await.unwrap().unwrap();
        assert_eq!(t.segments.len(), 1);
        assert_eq!(t.segments[0].text, "hallå");
    }

    pub async fn concurrent_duplicate_segments_keep_one(store: Store) {
        let m = store.start_meeting("weekly", None).await.unwrap();
        let attempts = (0..16).map(|i| {
            let store = store.clone();
            let id = m.id.clone();
            // Eight utterances, each sent twice at once.
            tokio::spawn(async move {
                store
                    .add_segment(&id, &seg(&format!("u{}", i % 8), "p1", i % 8, "x"), "Anna")
                    .await
            })
        });
        let mut inserted = 0;
        for attempt in attempts {
            if attempt.await.unwrap().unwrap() {
                inserted += 1;
            }
        }
        assert_eq!(inserted, 8);
        let t = store.transcript(&m.id).await.unwrap().unwrap();
        assert_eq!(t.segments.len(), 8);
        assert_eq!(t.participants.len(), 1);
    }

    pub async fn segments_for_unknown_meetings_are_refused(store: Store) {
        let err = store
            .add_segment("no-such-meeting", &seg("u", "p1", 0, "x"), "Anna")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::UnknownMeeting(id) if id == "no-such-meeting"),
            "{err}"
        );
        assert_eq!(err.to_string(), "no meeting no-such-meeting");
    }

    pub async fn filters_by_room_participant_time_and_limit(store: Store) {
        let t0 = 1_700_000_000_000;
        let a1 = store.start_meeting_at("alpha", None, t0).await.unwrap();
        let a2 = store.start_meeting_at("alpha", None, t0 + 1000).await.unwrap();
        let b1 = store.start_meeting_at("beta", None, t0 + 2000).await.unwrap();
        store.add_participant(a1.id.as_str(), "p-anna", "Anna").await.unwrap();
        store.add_participant(b1.id.as_str(), "p-anna2", "anna").await.unwrap();
        store
            .add_segment(a2.id.as_str(), &seg("u", "p-bo", t0 + 1100, "hej"), "Bo")
            .await
            .unwrap();
        let ids = |ms: Vec<Meeting>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let find = |f: MeetingFilter| {
            let store = store.clone();
            async move { ids(store.meetings(&f).await.unwrap()) }
        };

        assert_eq!(
            find(MeetingFilter::default()).await,
            [b1.id.as_str(), a2.id.as_str(), a1.id.as_str()]
        );
        assert_eq!(
            find(MeetingFilter {
                room: Some("alpha".into()),
                ..Default::default()
            })
            .await,
            [a2.id.as_str(), a1.id.as_str()]
        );
        assert!(
            find(MeetingFilter {
                room: Some("ALPHA".into()),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        // By display name (any case) or by participant id; speakers recorded by segments count.
        assert_eq!(
            find(MeetingFilter {
                participant: Some("ANNA".into()),
                ..Default::default()
            })
            .await,
            [b1.id.as_str(), a1.id.as_str()]
        );
        assert_eq!(
            find(MeetingFilter {
                participant: Some("p-anna".into()),
                ..Default::default()
            })
            .await,
            [a1.id.as_str()]
        );
        assert_eq!(
            find(MeetingFilter {
                participant: Some("bo".into()),
                ..Default::default()
            })
            .await,
            [a2.id.as_str()]
        );
        assert!(
            find(MeetingFilter {
                participant: Some("Ann".into()),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        // from inclusive, to exclusive, on the start time.
        assert_eq!(
            find(MeetingFilter {
                from: Some(t0 + 1000),
                ..Default::default()
            })
            .await,
            [b1.id.as_str(), a2.id.as_str()]
        );
        assert_eq!(
            find(MeetingFilter {
                to: Some(t0 + 1000),
                ..Default::default()
            })
            .await,
            [a1.id.as_str()]
        );
        assert_eq!(
            find(MeetingFilter {
                from: Some(t0 + 1000),
                to: Some(t0 + 2000),
                ..Default::default()
            })
            .await,
            [a2.id.as_str()]
        );
        assert_eq!(
            find(MeetingFilter {
                limit: Some(2),
                ..Default::default()
            })
            .await,
            [b1.id.as_str(), a2.id.as_str()]
        );
        assert!(
            find(MeetingFilter {
                limit: Some(0),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        let all = MeetingFilter {
            room: Some("alpha".into()),
            participant: Some("anna".into()),
            from: Some(t0),
            to: Some(t0 + 1),
            limit: Some(10),
        };
        assert_eq!(find(all).await, [a1.id.as_str()]);
        let full = store
            .meetings(&MeetingFilter {
                room: Some("beta".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(full, vec![b1]);
    }

    pub async fn unicode_names_match_case_insensitively(store: Store) {
        let m = store.start_meeting("möte", None).await.unwrap();
        store.add_participant(&m.id, "p1", "Åsa Öberg").await.unwrap();
        for query in ["åsa öberg", "ÅSA ÖBERG", " Åsa Öberg "] {
            let found = store
                .meetings(&MeetingFilter {
                    participant: Some(query.into()),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(found.len(), 1, "{query:?}");
            assert_eq!(found[0].room, "möte");
        }
    }

    pub async fn matrix_room_and_digest_can_be_set(store: Store) {
        let m = store.start_meeting("weekly", None).await.unwrap();
        assert!(store.set_matrix_room(&m.id, Some("!abc:example.org")).await.unwrap());
        assert!(store.set_transcript_digest(&m.id, Some("sha256:00ff")).await.unwrap());
        let m2 = store.meeting(&m.id).await.unwrap().unwrap();
        assert_eq!(
            (m2.matrix_room.as_deref(), m2.transcript_digest.as_deref()),
            (Some("!abc:example.org"), Some("sha256:00ff"))
        );
        assert!(store.set_matrix_room(&m.id, None).await.unwrap());
        assert_eq!(store.meeting(&m.id).await.unwrap().unwrap().matrix_room, None);
        assert!(!store.set_transcript_digest("no-such-meeting", Some("x")).await.unwrap());
    }

    pub async fn reconnecting_keeps_data_and_migrations_are_idempotent(store: Store) {
        let m = store.start_meeting("weekly", None).await.unwrap();
        store
            .add_segment(&m.id, &seg("u1", "p1", 1, "kvar"), "Anna")
            .await
            .unwrap();
        // Run the migrations again through the store's own pool, as a second connect would.
        match &store.pool {
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await.unwrap(),
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await.unwrap(),
        }
        assert_eq!(store.transcript(&m.id).await.unwrap().unwrap().segments[0].text, "kvar");
    }

    pub async fn open_meetings_keep_their_prompt_for_resuming(store: Store) {
        let done = store.start_meeting_at("a", None, 1_000).await.unwrap();
        store.end_meeting(&done.id, 2_000).await.unwrap();
        let running = store.start_meeting_at("b", Some("sv"), 3_000).await.unwrap();
        assert!(
            store
                .set_prompt(&running.id, Some("Försäkringskassan, LSS"))
                .await
                .unwrap()
        );
        let open = store.open_meetings().await.unwrap();
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(
            (open[0].id.as_str(), open[0].prompt.as_deref()),
            (running.id.as_str(), Some("Försäkringskassan, LSS"))
        );
        assert!(!store.set_prompt("no-such-meeting", None).await.unwrap());
    }

    pub async fn opting_out_is_recorded_with_its_first_time(store: Store) {
        let m = store.start_meeting("consent", None).await.unwrap();
        store.add_participant(&m.id, "p1", "Anna").await.unwrap();
        store.set_opted_out(&m.id, "p1", "Anna", true, 5_000).await.unwrap();
        store.set_opted_out(&m.id, "p1", "Anna", true, 9_000).await.unwrap();
        // Someone who opts out before they were recorded is added.
        store.set_opted_out(&m.id, "p2", "Bo", true, 6_000).await.unwrap();
        let t = store.transcript(&m.id).await.unwrap().unwrap();
        let by_id = |id: &str| {
            t.participants
                .iter()
                .find(|p| p.participant_id == id)
                .unwrap()
                .opted_out_at
        };
        assert_eq!((by_id("p1"), by_id("p2")), (Some(5_000), Some(6_000)));
        store.set_opted_out(&m.id, "p1", "Anna", false, 10_000).await.unwrap();
        let t = store.transcript(&m.id).await.unwrap().unwrap();
        assert_eq!(
            t.participants
                .iter()
                .find(|p| p.participant_id == "p1")
                .unwrap()
                .opted_out_at,
            None
        );
        assert!(matches!(
            store.set_opted_out("no-such", "p", "P", true, 1).await,
            Err(crate::Error::UnknownMeeting(_))
        ));
    }
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("samtal.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.unwrap();
    assert!(path.exists());
    let m = store.start_meeting("weekly", None).await.unwrap();
    store
        .add_segment(&m.id, &seg("u1", "p1", 1, "bevarad"), "Anna")
        .await
        .unwrap();
    let Pool::Sqlite(pool) = &store.pool else {
        unreachable!()
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
    assert_eq!(mode, "wal");
    store.close().await;

    let reopened = Store::connect(&url).await.unwrap();
    let t = reopened.transcript(&m.id).await.unwrap().unwrap();
    assert_eq!(t.segments[0].text, "bevarad");
    reopened.close().await;
}

#[tokio::test]
async fn sqlite_in_memory_works_for_the_lifetime_of_the_store() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let m = store.start_meeting("weekly", None).await.unwrap();
    assert!(store.meeting(&m.id).await.unwrap().is_some());
}

#[tokio::test]
async fn unsupported_and_unreachable_databases_are_errors() {
    let err = Store::connect("mysql://localhost/x").await.unwrap_err().to_string();
    assert!(err.contains("sqlite://") && err.contains("postgres://"), "{err}");
    // Port 1 on loopback: nothing listens there.
    let started = std::time::Instant::now();
    let err = Store::connect("postgres://postgres@127.0.0.1:1/x")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot connect to PostgreSQL") && !err.contains("timed out"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

// Compliance scenarios (search, chains, audit, retention), on both backends like those above.
mod compliance;

// The Matrix outbox scenarios, on both backends.
mod outbox;

// The webhook outbox scenarios, on both backends.
mod webhooks;

/// Ends meeting `id` and puts it under legal hold: deleting it is then refused.
async fn end_and_hold_against_deletion(store: &Store, id: &str) {
    store.end_meeting(id, now_ms()).await.unwrap();
    let hold = LegalHold {
        since: now_ms(),
        reason: "tvist".into(),
        set_by: "registrator".into(),
    };
    store.set_legal_hold(id, Some(&hold)).await.unwrap();
    assert!(matches!(store.delete_meeting(id).await.unwrap(), Deletion::Held));
}

/// Lifts meeting `id`'s legal hold and deletes it.
async fn lift_hold_and_delete(store: &Store, id: &str) {
    store.set_legal_hold(id, None).await.unwrap();
    assert!(matches!(store.delete_meeting(id).await.unwrap(), Deletion::Deleted(_)));
}

// Meeting summaries, on both backends.
mod summaries;

// A meeting's kept chat, on both backends.
mod chat;
