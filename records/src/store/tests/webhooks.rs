//! The webhook outbox on SQLite and PostgreSQL: rows are leased to one taker at a time, outcomes
//! end the lease, failures come back when due, and the log reads newest first.

use super::*;

on_both!(
    a_row_is_leased_to_one_taker_until_its_outcome,
    failures_are_retried_when_due_and_the_log_keeps_every_outcome
);

mod scenarios {
    use super::*;

    pub async fn a_row_is_leased_to_one_taker_until_its_outcome(store: Store) {
        store
            .enqueue_webhook(
                "e1",
                "audit",
                "room_started",
                Some("r"),
                "{\"id\":\"e1\"}",
                now_ms() - 2,
            )
            .await
            .unwrap();
        store
            .enqueue_webhook(
                "e2",
                "audit",
                "room_finished",
                Some("r"),
                "{\"id\":\"e2\"}",
                now_ms() - 1,
            )
            .await
            .unwrap();
        let now = now_ms();
        // Two servers ask at the same moment: each row goes to exactly one of them.
        let (a, b) = futures_util::join!(
            store.claim_webhooks("a", now, 30_000, 10),
            store.claim_webhooks("b", now, 30_000, 10)
        );
        let mut ids: Vec<String> = a.unwrap().into_iter().chain(b.unwrap()).map(|r| r.id).collect();
        ids.sort();
        assert_eq!(ids, ["e1", "e2"]);
        // While leased, nobody else gets them; after the lease ran out, someone does.
        assert!(
            store
                .claim_webhooks("a", now + 1_000, 30_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let again = store.claim_webhooks("a", now + 30_000, 30_000, 10).await.unwrap();
        assert_eq!(again.len(), 2, "a dead taker's rows come back after the lease");
        store.webhook_delivered("e1", 204, now + 30_001).await.unwrap();
        let log = store.webhook_log(Some("delivered"), 10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].id.as_str(), log[0].last_status, log[0].attempts),
            ("e1", Some(204), 1)
        );
        assert_eq!(log[0].body, "{\"id\":\"e1\"}");
        // A delivered row is never handed out again.
        let later = store.claim_webhooks("a", now + 120_000, 30_000, 10).await.unwrap();
        assert_eq!(later.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["e2"]);
    }

    pub async fn failures_are_retried_when_due_and_the_log_keeps_every_outcome(store: Store) {
        store
            .enqueue_webhook("f1", "ops", "participant_joined", None, "{}", now_ms())
            .await
            .unwrap();
        let now = now_ms();
        assert_eq!(store.claim_webhooks("a", now, 30_000, 10).await.unwrap().len(), 1);
        store
            .webhook_failed("f1", Some(503), "HTTP 503", Some(now + 5_000))
            .await
            .unwrap();
        assert_eq!(store.next_webhook_at().await.unwrap(), Some(now + 5_000));
        assert!(
            store
                .claim_webhooks("a", now + 4_999, 30_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let retried = store.claim_webhooks("a", now + 5_000, 30_000, 10).await.unwrap();
        assert_eq!(retried.len(), 1);
        assert_eq!((retried[0].attempts, retried[0].last_status), (1, Some(503)));
        store
            .webhook_failed("f1", None, "connection refused", None)
            .await
            .unwrap();
        let failed = store.webhook_log(Some("failed"), 10).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!((failed[0].attempts, failed[0].last_status), (2, None));
        assert_eq!(failed[0].last_error.as_deref(), Some("connection refused"));
        assert_eq!(store.next_webhook_at().await.unwrap(), None, "nothing pending");
        assert!(store.webhook_log(Some("pending"), 10).await.unwrap().is_empty());
        assert_eq!(store.webhook_log(None, 10).await.unwrap().len(), 1);
        assert_eq!(store.purge_webhooks(now_ms() + 1).await.unwrap(), 1);
        assert!(store.webhook_log(None, 10).await.unwrap().is_empty());
    }
}
