//! Storing campaigns: whole or not at all, one per idempotency key however many requests
//! race, unique recipients and ids, big ones, and their text kept byte for byte.

use super::testkit::*;
use super::{TestDb, contract};
use crate::store::{
    CampaignInserted, CampaignMessage, CampaignStatus, Idempotency, MessageKind, NewCampaign,
    StoreError,
};

async fn racing_campaigns_with_one_key_store_one_campaign(db: TestDb) {
    let (a, b) = (db.store.clone(), db.connect().await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let id = format!("c{i}");
            let c = NewCampaign {
                idempotency: Some(Idempotency {
                    key: "cron-0800".into(),
                    request_hash: "h".into(),
                }),
                ..campaign(&id, "oa", T0)
            };
            // 52 rows, two of them a recipient listed again.
            let mut rows = recipients(&id, 52);
            rows[50].recipient = rows[0].recipient.clone();
            rows[51].recipient = rows[1].recipient.clone();
            store.create_campaign(&c, &rows, T0).await.unwrap()
        }));
    }
    let mut created = 0;
    let mut existing = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            CampaignInserted::Created {
                total,
                duplicates_skipped,
            } => {
                assert_eq!((total, duplicates_skipped), (50, 2));
                created += 1
            }
            CampaignInserted::Existing(e) => {
                assert!(e.same_request);
                assert_eq!((e.total, e.duplicates_skipped), (50, 2));
                existing.push(e.id);
            }
        }
    }
    assert_eq!(created, 1);
    assert!(existing.windows(2).all(|w| w[0] == w[1]), "{existing:?}");
    assert_eq!(db.count("campaigns").await, 1);
    assert_eq!(db.count("messages").await, 50, "the losers stored nothing");

    let key = Idempotency {
        key: "cron-0800".into(),
        request_hash: "other".into(),
    };
    let found = a.campaign_by_key("oa", &key).await.unwrap().unwrap();
    assert_eq!((found.id, found.same_request), (existing[0].clone(), false));
    assert!(
        a.campaign_by_key("crm", &key).await.unwrap().is_none(),
        "per app"
    );
}

async fn a_campaign_is_stored_whole(db: TestDb) {
    let store = &db.store;
    // 2,203 rows: several chunks of either backend's bulk insert (SQLite: 1,000 rows per
    // INSERT; PostgreSQL: 2,000 per COPY message) and a partial one.
    let rows = recipients("c1", 2203);
    store
        .create_campaign(&campaign("c1", "oa", T0 + 5), &rows, T0)
        .await
        .unwrap();
    let rec = store.campaign("c1").await.unwrap().unwrap();
    assert_eq!(rec.total, 2203);
    assert_eq!(rec.status, CampaignStatus::Running);
    assert_eq!(rec.counts.pending, 2203);
    assert_eq!(rec.counts, counts_pending(2203));
    assert!(!rec.is_done());
    let last = store.get_message(&rows[2202].id).await.unwrap().unwrap();
    assert_eq!(last.summary.recipient, rows[2202].recipient);
    assert_eq!(last.body, rows[2202].body);
    assert_eq!(last.summary.campaign_id.as_deref(), Some("c1"));
    assert_eq!(last.summary.template, "tpl-1");
    assert_eq!(last.summary.due_at_ms, T0 + 5);
}

async fn a_recipient_listed_again_is_dropped_and_counted_the_first_kept(db: TestDb) {
    let store = &db.store;
    let mut rows = recipients("c1", 2100);
    // The repeat sits in the last chunk of 2,000, after the first was stored.
    rows[2099].recipient = rows[3].recipient.clone();
    // Openids are case-sensitive: this one is another person.
    rows[2098].recipient = rows[4].recipient.to_uppercase();
    let got = store
        .create_campaign(&campaign("c1", "oa", T0), &rows, T0)
        .await
        .unwrap();
    assert_eq!(
        got,
        CampaignInserted::Created {
            total: 2099,
            duplicates_skipped: 1
        }
    );
    let rec = store.campaign("c1").await.unwrap().unwrap();
    assert_eq!((rec.total, rec.counts.pending), (2099, 2099));
    assert!(store.get_message(&rows[2099].id).await.unwrap().is_none());
    let first = store.get_message(&rows[3].id).await.unwrap().unwrap();
    assert_eq!(first.body, rows[3].body, "the first one listed is kept");

    // WeCom userids compare case-insensitively, as WeCom treats them.
    let wecom = NewCampaign {
        kind: MessageKind::Wecom,
        ..campaign("w1", "corp", T0)
    };
    let ids = new_ids_for("w1", 3);
    let rows: Vec<CampaignMessage> = ["Alice", "bob", "alice"]
        .iter()
        .zip(ids)
        .map(|(to, id)| CampaignMessage {
            id,
            recipient: (*to).into(),
            body: format!("{{\"touser\":\"{to}\"}}"),
        })
        .collect();
    let got = store.create_campaign(&wecom, &rows, T0).await.unwrap();
    assert_eq!(
        got,
        CampaignInserted::Created {
            total: 2,
            duplicates_skipped: 1
        }
    );
    let kept = store.export_campaign("w1", None, 10).await.unwrap();
    let kept: Vec<&str> = kept.iter().map(|r| r.recipient.as_str()).collect();
    assert_eq!(kept, ["Alice", "bob"]);
    assert_eq!(db.count("messages").await, 2101);

    // The same recipient in two different campaigns is fine.
    let rows = recipients("c2", 10);
    store
        .create_campaign(&campaign("c2", "oa", T0), &rows, T0)
        .await
        .unwrap();
    let again: Vec<_> = rows
        .iter()
        .map(|r| CampaignMessage {
            id: format!("{}-again", r.id),
            ..r.clone()
        })
        .collect();
    store
        .create_campaign(&campaign("c3", "oa", T0), &again, T0)
        .await
        .unwrap();
    assert_eq!(db.count("messages").await, 2121);
    // A campaign id used twice is a conflict too, and leaves the first one intact.
    let err = store
        .create_campaign(&campaign("c2", "oa", T0), &recipients("x", 3), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(db.count("messages").await, 2121);
    // A message id used again (by another campaign) is a conflict too.
    let reused = vec![CampaignMessage {
        recipient: "someone-else".into(),
        ..rows[0].clone()
    }];
    let err = store
        .create_campaign(&campaign("c4", "oa", T0), &reused, T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(db.count("messages").await, 2121);
    assert_eq!(db.count("campaigns").await, 4, "nothing of c4 is left");
}

/// 20k rows: a 100k-row campaign takes seconds in a debug build (see `sqlite/perf.rs` and
/// `postgres/tests.rs`), too slow for the normal suite.
async fn a_20k_campaign_is_stored_whole(db: TestDb) {
    let store = &db.store;
    let rows = recipients("big", 20_000);
    store
        .create_campaign(&campaign("big", "oa", T0), &rows, T0)
        .await
        .unwrap();
    let rec = store.campaign("big").await.unwrap().unwrap();
    assert_eq!(rec.counts, counts_pending(20_000));
    assert_eq!(rec.total, 20_000);
    assert_eq!(db.count("messages").await, 20_000);
    let first = store.export_campaign("big", None, 1).await.unwrap();
    assert_eq!(first[0].key, first[0].recipient);
    let mut sorted: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
    sorted.sort();
    assert_eq!(first[0].recipient, sorted[0]);
}

/// Text comes back byte for byte whatever it holds (the bulk insert of PostgreSQL writes CSV
/// for `COPY`): separators, quotes, line breaks, backslashes and COPY's own markers, non-ASCII,
/// blanks, and empty strings (which CSV could take for NULL).
async fn a_campaign_keeps_its_text_byte_for_byte(db: TestDb) {
    let awkward = [
        "plain",
        "with,comma;and\ttab\t",
        "with \"quotes\" and 'apostrophes'",
        "line\nbreak\r\nand a CR\r",
        "back\\slash \\N \\. \\0",
        "\\.",
        "\\N",
        "NULL",
        "中文 openid ✓ 😀",
        " leading and trailing ",
        "",
    ];
    for (n, template) in ["", "a,b\n\"c\""].into_iter().enumerate() {
        let id = format!("c{n}");
        let rows: Vec<CampaignMessage> = new_ids_for(&id, awkward.len())
            .into_iter()
            .zip(awkward)
            .enumerate()
            .map(|(i, (id, recipient))| CampaignMessage {
                id,
                recipient: recipient.into(),
                body: awkward[(i + 1) % awkward.len()].into(),
            })
            .collect();
        let c = NewCampaign {
            template: template.into(),
            ..campaign(&id, "oa", T0)
        };
        db.store.create_campaign(&c, &rows, T0).await.unwrap();
        for row in &rows {
            let rec = db.store.get_message(&row.id).await.unwrap().unwrap();
            assert_eq!(rec.summary.recipient, row.recipient);
            assert_eq!(rec.body, row.body, "{:?}", row.recipient);
            assert_eq!(rec.summary.template, template);
        }
        // Each recipient exported once. (Sorted here: where non-ASCII text sorts depends on
        // the PostgreSQL server's collation; SQLite compares bytes.)
        let exported = db.store.export_campaign(&id, None, 100).await.unwrap();
        let mut got: Vec<&str> = exported.iter().map(|r| r.recipient.as_str()).collect();
        got.sort();
        let mut expected: Vec<&str> = awkward.to_vec();
        expected.sort();
        assert_eq!(got, expected);
    }
}

fn new_ids_for(tag: &str, n: usize) -> Vec<String> {
    recipients(tag, n).into_iter().map(|r| r.id).collect()
}

contract!(
    racing_campaigns_with_one_key_store_one_campaign,
    a_campaign_is_stored_whole,
    a_recipient_listed_again_is_dropped_and_counted_the_first_kept,
    a_20k_campaign_is_stored_whole,
    a_campaign_keeps_its_text_byte_for_byte,
);
