//! Compliance scenarios on SQLite and PostgreSQL: full-text search, sealed transcript chains and
//! their check after changes made directly in the database, the audit trail, holds, deletion and
//! retention. Results are compared with fixed expectations, so the two backends must agree.

use super::*;
use crate::compliance::audit::Event;
use crate::compliance::retention::RetentionConfig;
use crate::compliance::retention::purge_expired;
use crate::compliance::search::Query;

on_both!(
    search_finds_words_prefixes_and_filters,
    sealing_and_verify_detect_changed_and_removed_segments,
    audit_trail_is_chained_append_only_and_tampering_is_detected,
    delete_respects_holds_and_running_meetings,
    retention_purges_expired_unheld_meetings_and_audits_each,
    purges_at_once_delete_and_audit_each_meeting_once,
);

/// Runs SQL directly, as someone with database access would, behind the application's back.
async fn tamper(store: &Store, sql: &str) -> std::result::Result<u64, sqlx::Error> {
    with_pool!(store, pool, _DB => {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.map(|r| r.rows_affected())
    })
}

fn said(utterance: &str, who: &str, start_ms: i64, text: &str) -> Segment {
    let mut s = seg(utterance, who, start_ms, text);
    s.end_ms = start_ms + 900;
    s
}

fn event(actor: &str, action: &str, target: &str) -> Event {
    Event {
        at: now_ms(),
        actor: actor.into(),
        role: "compliance".into(),
        action: action.into(),
        target: target.into(),
        client: "127.0.0.1".into(),
        outcome: "ok".into(),
        detail: String::new(),
    }
}

mod scenarios {
    use super::*;

    pub async fn search_finds_words_prefixes_and_filters(store: Store) {
        let t0 = 1_740_819_600_000;
        let alpha = store.start_meeting_at("alpha", Some("sv"), t0).await.unwrap().id;
        store
            .add_segment(
                &alpha,
                &said("a1", "p-anna", t0 + 1_000, "Budgeten för 2025 är klar."),
                "Anna",
            )
            .await
            .unwrap();
        store
            .add_segment(
                &alpha,
                &said("a2", "p-bo", t0 + 2_000, "Vi ses på mötet i morgon."),
                "Bo",
            )
            .await
            .unwrap();
        store
            .add_segment(
                &alpha,
                &said("a3", "p-anna", t0 + 3_000, "Hej Anna, budget igen?"),
                "Anna",
            )
            .await
            .unwrap();
        let beta = store
            .start_meeting_at("beta", Some("en"), t0 + 86_400_000)
            .await
            .unwrap()
            .id;
        store
            .add_segment(
                &beta,
                &said("b1", "p-cleo", t0 + 86_401_000, "The budget meeting is today."),
                "Cleo",
            )
            .await
            .unwrap();
        store
            .add_segment(
                &beta,
                &said("b2", "p-cleo", t0 + 86_402_000, "Möte om e-post och BUDGET."),
                "Cleo",
            )
            .await
            .unwrap();
        store.end_meeting(&alpha, t0 + 60_000).await.unwrap();

        let find = |q: &str, filter: MeetingFilter| {
            let store = store.clone();
            let q = Query::parse(q).unwrap();
            async move {
                store
                    .search(&q, &filter)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|h| h.segment.utterance_id)
                    .collect::<Vec<_>>()
            }
        };
        let all = MeetingFilter::default;
        // Whole words, any case; newest meeting first, then transcript order.
        assert_eq!(find("budget", all()).await, ["b1", "b2", "a3"]);
        assert_eq!(find("budget*", all()).await, ["b1", "b2", "a1", "a3"]);
        // Accents count: möte is not mötet, but a prefix finds both.
        assert_eq!(find("möte", all()).await, ["b2"]);
        assert_eq!(find("MÖTE*", all()).await, ["b2", "a2"]);
        // Every word must occur; punctuation separates words.
        assert_eq!(find("budget anna", all()).await, ["a3"]);
        assert_eq!(find("e-post", all()).await, ["b2"]);
        assert_eq!(find("2025", all()).await, ["a1"]);
        assert!(find("budgetar", all()).await.is_empty());
        // The meeting filters apply.
        assert_eq!(
            find(
                "budget*",
                MeetingFilter {
                    room: Some("alpha".into()),
                    ..Default::default()
                }
            )
            .await,
            ["a1", "a3"]
        );
        assert_eq!(
            find(
                "budget",
                MeetingFilter {
                    participant: Some("cleo".into()),
                    ..Default::default()
                }
            )
            .await,
            ["b1", "b2"]
        );
        assert_eq!(
            find(
                "budget",
                MeetingFilter {
                    to: Some(t0 + 86_400_000),
                    ..Default::default()
                }
            )
            .await,
            ["a3"]
        );
        assert_eq!(
            find(
                "budget*",
                MeetingFilter {
                    limit: Some(3),
                    ..Default::default()
                }
            )
            .await,
            ["b1", "b2", "a1"]
        );

        let q = Query::parse("budget*").unwrap();
        let hits = store
            .search(
                &q,
                &MeetingFilter {
                    room: Some("alpha".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(hits[0].meeting.id, alpha);
        assert!(hits[0].meeting.transcript_digest.is_some(), "sealed when it ended");
        assert_eq!(
            (hits[0].segment.speaker_name.as_str(), hits[0].segment.start_ms),
            ("Anna", t0 + 1_000)
        );
        assert_eq!(
            q.highlight(&hits[0].segment.text),
            "<mark>Budgeten</mark> för 2025 är klar."
        );

        // A segment changed or deleted in the database is found by its new text only.
        tamper(
            &store,
            &format!("UPDATE segments SET text = 'Inget här.' WHERE meeting_id = '{beta}' AND utterance_id = 'b1'"),
        )
        .await
        .unwrap();
        assert_eq!(find("budget", all()).await, ["b2", "a3"]);
        assert_eq!(find("inget", all()).await, ["b1"]);
        assert!(matches!(
            store.delete_meeting(&alpha).await.unwrap(),
            Deletion::Deleted(_)
        ));
        assert_eq!(find("budget*", all()).await, ["b2"]);
    }

    pub async fn sealing_and_verify_detect_changed_and_removed_segments(store: Store) {
        let t0 = 1_700_000_000_000;
        let fill = |room: &'static str| {
            let store = store.clone();
            async move {
                let id = store.start_meeting_at(room, Some("sv"), t0).await.unwrap().id;
                for (i, text) in ["ett", "två", "tre", "fyra"].iter().enumerate() {
                    let start = t0 + 1_000 * (i as i64 + 1);
                    store
                        .add_segment(&id, &said(&format!("u{}", i + 1), "p1", start, text), "Åsa")
                        .await
                        .unwrap();
                }
                id
            }
        };
        let running = fill("running").await;
        let v = store.verify_meeting(&running).await.unwrap().unwrap();
        assert!(v.ok && !v.sealed && v.stored_digest.is_none(), "{v:?}");

        let intact = fill("intact").await;
        assert!(store.end_meeting(&intact, t0 + 60_000).await.unwrap());
        let sealed = store.meeting(&intact).await.unwrap().unwrap();
        let t = store.transcript(&intact).await.unwrap().unwrap();
        assert_eq!(
            sealed.transcript_digest,
            Some(crate::compliance::integrity::digest(&sealed, &t.segments))
        );
        let v = store.verify_meeting(&intact).await.unwrap().unwrap();
        assert!(v.ok && v.sealed && v.segments == 4, "{v:?}");
        assert_eq!(Some(v.computed_digest.clone()), v.stored_digest);

        // A late segment (a worker flushing after the end) is sealed into the chain.
        store
            .add_segment(&intact, &said("u5", "p1", t0 + 5_500, "fem"), "Åsa")
            .await
            .unwrap();
        let v = store.verify_meeting(&intact).await.unwrap().unwrap();
        assert!(v.ok && v.segments == 5, "{v:?}");
        assert_ne!(v.stored_digest, sealed.transcript_digest);

        // Changed in the database: the break is at that segment.
        let changed = fill("changed").await;
        store.end_meeting(&changed, t0 + 60_000).await.unwrap();
        tamper(
            &store,
            &format!("UPDATE segments SET text = 'TVÅ' WHERE meeting_id = '{changed}' AND utterance_id = 'u2'"),
        )
        .await
        .unwrap();
        let v = store.verify_meeting(&changed).await.unwrap().unwrap();
        assert!(!v.ok);
        let at: Vec<_> = v.breaks.iter().map(|b| (b.index, b.utterance_id.clone())).collect();
        assert_eq!(at, [(Some(1), Some("u2".to_owned()))], "{v:?}");
        // The speaker renamed, a time moved: found as well.
        tamper(
            &store,
            &format!(
                "UPDATE segments SET start_ms = start_ms + 1 WHERE meeting_id = '{changed}' AND utterance_id = 'u4'"
            ),
        )
        .await
        .unwrap();
        let v = store.verify_meeting(&changed).await.unwrap().unwrap();
        assert_eq!(v.breaks.iter().map(|b| b.index).collect::<Vec<_>>(), [Some(1), Some(3)]);

        // Removed: the break is at the segment after it; the last one removed: the digest.
        let removed = fill("removed").await;
        store.end_meeting(&removed, t0 + 60_000).await.unwrap();
        tamper(
            &store,
            &format!("DELETE FROM segments WHERE meeting_id = '{removed}' AND utterance_id = 'u2'"),
        )
        .await
        .unwrap();
        let v = store.verify_meeting(&removed).await.unwrap().unwrap();
        assert_eq!(
            v.breaks.iter().map(|b| b.utterance_id.as_deref()).collect::<Vec<_>>(),
            [Some("u3")],
            "{v:?}"
        );
        tamper(
            &store,
            &format!("DELETE FROM segments WHERE meeting_id = '{removed}' AND utterance_id = 'u4'"),
        )
        .await
        .unwrap();
        let v = store.verify_meeting(&removed).await.unwrap().unwrap();
        assert_eq!(
            v.breaks.iter().map(|b| b.index).collect::<Vec<_>>(),
            [Some(1), None],
            "{v:?}"
        );
        // A segment slipped in directly has no link.
        tamper(
            &store,
            &format!(
                "INSERT INTO segments (meeting_id, utterance_id, participant_id, speaker_name, start_ms, end_ms, text) \
                 VALUES ('{intact}', 'x', 'p9', 'Mallory', {}, {}, 'inskjutet')",
                t0 + 1_500,
                t0 + 1_600
            ),
        )
        .await
        .unwrap();
        let v = store.verify_meeting(&intact).await.unwrap().unwrap();
        assert_eq!(
            v.breaks.first().map(|b| (b.index, b.problem.contains("added after"))),
            Some((Some(1), true)),
            "{v:?}"
        );
        assert!(store.verify_meeting("no-such-meeting").await.unwrap().is_none());
    }

    pub async fn audit_trail_is_chained_append_only_and_tampering_is_detected(store: Store) {
        assert!(store.audit_head().await.unwrap().is_none());
        assert!(store.verify_audit().await.unwrap().ok);
        // Concurrent appends get consecutive numbers and one chain.
        let appends: Vec<_> = (0..12)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append_audit(event(&format!("user{}", i % 3), "transcript.read", &format!("m{i}")))
                        .await
                })
            })
            .collect();
        for a in appends {
            a.await.unwrap().unwrap();
        }
        let entries = store.audit_entries(&AuditFilter::default()).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=12).collect::<Vec<i64>>()
        );
        assert_eq!(entries[0].prev_hash, crate::compliance::audit::ZERO_HASH);
        let v = store.verify_audit().await.unwrap();
        assert!(v.ok && v.entries == 12, "{v:?}");
        assert_eq!(v.head.unwrap().seq, 12);
        // Filters.
        let f = |filter: AuditFilter| {
            let store = store.clone();
            async move {
                store
                    .audit_entries(&filter)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.seq)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            f(AuditFilter {
                actor: Some("user0".into()),
                ..Default::default()
            })
            .await
            .len(),
            4
        );
        assert_eq!(
            f(AuditFilter {
                after: Some(10),
                ..Default::default()
            })
            .await,
            [11, 12]
        );
        assert_eq!(
            f(AuditFilter {
                after: Some(2),
                limit: Some(2),
                ..Default::default()
            })
            .await,
            [3, 4]
        );
        assert!(
            f(AuditFilter {
                action: Some("meeting.delete".into()),
                ..Default::default()
            })
            .await
            .is_empty()
        );

        // The database refuses updates and deletes.
        let err = tamper(&store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{err}");
        let err = tamper(&store, "DELETE FROM audit_log WHERE seq = 3")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{err}");

        // Someone who can drop the triggers edits one entry and removes another: both are found.
        match store.backend() {
            "sqlite" => {
                tamper(&store, "DROP TRIGGER audit_log_no_update").await.unwrap();
                tamper(&store, "DROP TRIGGER audit_log_no_delete").await.unwrap();
            }
            _ => {
                tamper(&store, "DROP TRIGGER audit_log_append_only ON audit_log")
                    .await
                    .unwrap();
            }
        }
        assert_eq!(
            tamper(&store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
                .await
                .unwrap(),
            1
        );
        assert_eq!(tamper(&store, "DELETE FROM audit_log WHERE seq = 7").await.unwrap(), 1);
        let v = store.verify_audit().await.unwrap();
        assert!(!v.ok);
        let breaks: Vec<_> = v.breaks.iter().map(|b| (b.seq, b.problem.as_str())).collect();
        assert_eq!(
            breaks,
            [
                (3, "edited: the entry's hash does not match its content"),
                (8, "entry 7 is missing (removed)")
            ],
            "{v:?}"
        );
        // Appending goes on after the newest entry.
        assert_eq!(
            store.append_audit(event("anna", "audit.verify", "")).await.unwrap().seq,
            13
        );
    }

    pub async fn delete_respects_holds_and_running_meetings(store: Store) {
        let m = store.start_meeting("alpha", None).await.unwrap().id;
        store
            .add_segment(&m, &said("u1", "p1", 1, "hej"), "Anna")
            .await
            .unwrap();
        assert_eq!(store.delete_meeting(&m).await.unwrap(), Deletion::Running);
        store.end_meeting(&m, now_ms()).await.unwrap();
        let hold = LegalHold {
            since: 5,
            reason: "ärende 2025/114".into(),
            set_by: "anna".into(),
        };
        assert!(store.set_legal_hold(&m, Some(&hold)).await.unwrap());
        // Again: the first hold stays.
        let again = LegalHold {
            since: 9,
            reason: "other".into(),
            set_by: "bo".into(),
        };
        assert!(store.set_legal_hold(&m, Some(&again)).await.unwrap());
        assert_eq!(store.legal_hold(&m).await.unwrap(), Some(hold.clone()));
        assert_eq!(store.legal_holds().await.unwrap().get(&m), Some(&hold));
        assert_eq!(store.delete_meeting(&m).await.unwrap(), Deletion::Held);
        assert!(store.transcript(&m).await.unwrap().is_some());
        assert!(store.set_legal_hold(&m, None).await.unwrap());
        assert_eq!(store.legal_hold(&m).await.unwrap(), None);
        match store.delete_meeting(&m).await.unwrap() {
            Deletion::Deleted(gone) => assert_eq!(gone.id, m),
            other => panic!("{other:?}"),
        }
        assert!(store.transcript(&m).await.unwrap().is_none());
        assert_eq!(store.delete_meeting(&m).await.unwrap(), Deletion::NotFound);
        assert!(!store.set_legal_hold(&m, Some(&hold)).await.unwrap());
        // Nothing of it is left behind.
        let (participants, segments) = with_pool!(store, pool, _DB => {
            let p: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meeting_participants WHERE meeting_id = $1").bind(&m).fetch_one(pool).await.unwrap();
            let s: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM segments WHERE meeting_id = $1").bind(&m).fetch_one(pool).await.unwrap();
            (p, s)
        });
        assert_eq!((participants, segments), (0, 0));
    }

    pub async fn retention_purges_expired_unheld_meetings_and_audits_each(store: Store) {
        const DAY: i64 = 86_400_000;
        let now = 1_800_000_000_000;
        let meeting = |room: &'static str, started_days_ago: i64, ended_days_ago: Option<i64>| {
            let store = store.clone();
            async move {
                let id = store
                    .start_meeting_at(room, None, now - started_days_ago * DAY)
                    .await
                    .unwrap()
                    .id;
                store
                    .add_segment(
                        &id,
                        &said("u1", "p1", now - started_days_ago * DAY + 1_000, "arkivord"),
                        "Anna",
                    )
                    .await
                    .unwrap();
                if let Some(ended) = ended_days_ago {
                    store.end_meeting(&id, now - ended * DAY).await.unwrap();
                }
                id
            }
        };
        let old = meeting("alpha", 41, Some(40)).await;
        let held = meeting("alpha", 41, Some(40)).await;
        let recent = meeting("alpha", 6, Some(5)).await;
        let board = meeting("board", 41, Some(40)).await;
        let scratch = meeting("scratch", 3, Some(2)).await;
        let running = meeting("alpha", 50, None).await;
        let hold = LegalHold {
            since: now,
            reason: "tvist".into(),
            set_by: "anna".into(),
        };
        store.set_legal_hold(&held, Some(&hold)).await.unwrap();

        let config = RetentionConfig {
            days: 30,
            rooms: [("board".to_owned(), 3650), ("scratch".to_owned(), 1)]
                .into_iter()
                .collect(),
            purge_interval_secs: 60,
        };
        let purged: Vec<String> = purge_expired(&store, &config, now)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(purged, [old.clone(), scratch.clone()]);
        for gone in [&old, &scratch] {
            assert!(store.meeting(gone).await.unwrap().is_none());
            assert!(store.transcript(gone).await.unwrap().is_none());
        }
        for kept in [&held, &recent, &board, &running] {
            assert!(store.transcript(kept).await.unwrap().is_some(), "{kept}");
        }
        let found = store
            .search(&Query::parse("arkivord").unwrap(), &MeetingFilter::default())
            .await
            .unwrap();
        assert_eq!(found.len(), 4);
        let audited = store
            .audit_entries(&AuditFilter {
                action: Some("retention.purge".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            audited.iter().map(|e| e.target.clone()).collect::<Vec<_>>(),
            [old.clone(), scratch.clone()]
        );
        assert!(audited.iter().all(|e| e.actor == "system" && e.outcome == "ok"));
        let detail: serde_json::Value = serde_json::from_str(&audited[1].detail).unwrap();
        assert_eq!(
            (detail["room"].as_str(), detail["retention_days"].as_i64()),
            (Some("scratch"), Some(1))
        );
        assert!(store.verify_audit().await.unwrap().ok);

        // Nothing more to do now; the hold lifted, the held meeting goes at the next purge.
        assert!(purge_expired(&store, &config, now).await.unwrap().is_empty());
        store.set_legal_hold(&held, None).await.unwrap();
        let purged: Vec<String> = purge_expired(&store, &config, now)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(purged, std::slice::from_ref(&held));
        // Without a retention period nothing is ever purged.
        assert!(
            purge_expired(&store, &RetentionConfig::default(), now + 10_000 * DAY)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.meeting(&recent).await.unwrap().is_some());
    }

    /// Several servers on one store purge at the same moment (here: five purges at once on one pool of
    /// connections): each expired meeting is deleted by one of them and audited once, and the audit
    /// chain stays whole.
    pub async fn purges_at_once_delete_and_audit_each_meeting_once(store: Store) {
        const DAY: i64 = 86_400_000;
        let now = now_ms();
        let mut expired = Vec::new();
        for room in ["alpha", "beta", "gamma"] {
            let id = store.start_meeting_at(room, None, now - 41 * DAY).await.unwrap().id;
            store.end_meeting(&id, now - 40 * DAY).await.unwrap();
            expired.push(id);
        }
        let config = RetentionConfig {
            days: 30,
            rooms: Default::default(),
            purge_interval_secs: 60,
        };
        let purges = (0..5).map(|_| purge_expired(&store, &config, now));
        let mut purged: Vec<String> = futures_util::future::join_all(purges)
            .await
            .into_iter()
            .flat_map(|r| r.unwrap())
            .map(|m| m.id)
            .collect();
        purged.sort();
        expired.sort();
        assert_eq!(purged, expired, "each meeting purged by exactly one purge");
        let audited = store
            .audit_entries(&AuditFilter {
                action: Some("retention.purge".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut targets: Vec<String> = audited.into_iter().map(|e| e.target).collect();
        targets.sort();
        assert_eq!(targets, expired, "each purge audited once");
        assert!(store.verify_audit().await.unwrap().ok);
    }
}
