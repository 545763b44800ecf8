//! Reading: campaign counts, listings, exports, the queue depth, one message with its log.

use super::testkit::*;
use super::{TestDb, contract};
use crate::store::{
    CampaignMessage, ExportRow, MessageFilter, MessageKind, MessageState, MessageSummary, Next,
    QueueDepth, StateCounts, Store,
};

/// Campaign "c" (6 messages, one each of sent / failed 43101 / failed 40003 / unknown /
/// sending / pending) and single messages "s1", "s2" of app "crm".
async fn mixed(store: &Store) -> Vec<CampaignMessage> {
    let rows = recipients("c", 6);
    store
        .create_campaign(&campaign("c", "oa", T0), &rows, T0)
        .await
        .unwrap();
    let got = store.claim_due("w", T0, LEASE, 5, &[]).await.unwrap();
    let failed = |code: i64| Next::Failed {
        errcode: Some(code),
        reason: format!("errcode {code}"),
    };
    let unknown = Next::Unknown {
        reason: "timeout".into(),
    };
    let batch = [
        finish(&got[0], sent()),
        finish(&got[1], failed(43101)),
        finish(&got[2], failed(40003)),
        finish(&got[3], unknown),
    ];
    store.finish(&batch, T0 + 1).await.unwrap();
    for id in ["s1", "s2"] {
        let msg = message(id, "crm", T0 + 3_600_000);
        store.insert_message(&msg, T0).await.unwrap();
    }
    rows
}

fn listed(page: &[MessageSummary]) -> Vec<&str> {
    page.iter().map(|m| m.id.as_str()).collect()
}

async fn campaign_counts_every_state(db: TestDb) {
    let store = &db.store;
    mixed(store).await;
    let rec = store.campaign("c").await.unwrap().unwrap();
    let expected = StateCounts {
        pending: 1,
        sending: 1,
        sent: 1,
        failed: 2,
        unknown: 1,
        cancelled: 0,
    };
    assert_eq!(rec.counts, expected);
    assert_eq!((rec.total, rec.kind), (6, MessageKind::Template));
    assert_eq!((rec.app.as_str(), rec.created_at_ms), ("oa", T0));
    assert!(store.campaign("nope").await.unwrap().is_none());
}

async fn listings_filter_and_page_by_id(db: TestDb) {
    let store = &db.store;
    let rows = mixed(store).await;
    let all = store
        .list_messages(&MessageFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));

    let by_app = |app: &str| MessageFilter {
        app: Some(app.into()),
        ..MessageFilter::default()
    };
    let crm = store
        .list_messages(&by_app("crm"), None, 100)
        .await
        .unwrap();
    assert_eq!(listed(&crm), ["s1", "s2"]);
    let failed = MessageFilter {
        campaign: Some("c".into()),
        state: Some(MessageState::Failed),
        ..MessageFilter::default()
    };
    let page = store.list_messages(&failed, None, 100).await.unwrap();
    assert_eq!(page.len(), 2);
    assert!(page.iter().all(|m| m.state == MessageState::Failed));
    let by_code = MessageFilter {
        errcode: Some(43101),
        ..failed.clone()
    };
    let page = store.list_messages(&by_code, None, 100).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].errcode, Some(43101));
    assert_eq!(page[0].reason.as_deref(), Some("errcode 43101"));

    // Pages of 4 over the campaign: every message once, in id order.
    let by_campaign = MessageFilter {
        campaign: Some("c".into()),
        ..MessageFilter::default()
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_messages(&by_campaign, after.as_deref(), 4)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        after = Some(page.last().unwrap().id.clone());
        seen.extend(page.into_iter().map(|m| m.id));
    }
    let mut expected: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

async fn exports_page_by_recipient(db: TestDb) {
    let store = &db.store;
    let rows = mixed(store).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .export_campaign("c", after.as_deref(), 4)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().recipient.clone());
        seen.extend(page);
    }
    let mut recipients: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
    recipients.sort();
    let got: Vec<&str> = seen.iter().map(|r| r.recipient.as_str()).collect();
    assert_eq!(got, recipients);
    let sent: Vec<&ExportRow> = seen
        .iter()
        .filter(|r| r.state == MessageState::Sent)
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].msgid.as_deref(), Some("200228332"));
    assert_eq!((sent[0].attempts, sent[0].updated_at_ms), (1, T0 + 1));
    assert!(
        store
            .export_campaign("nope", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn queue_depth_counts_the_active_queue(db: TestDb) {
    let store = &db.store;
    mixed(store).await;
    let depth = store.queue_depth(T0).await.unwrap();
    // Campaign: 1 pending (due), 1 sending; s1, s2 pending but due in an hour.
    assert_eq!(
        depth,
        QueueDepth {
            due: 1,
            pending: 3,
            sending: 1
        }
    );
    assert_eq!(store.queue_depth(T0 + 3_600_000).await.unwrap().due, 3);
}

async fn a_message_comes_back_with_its_log_in_order(db: TestDb) {
    let store = &db.store;
    assert!(store.get_message("nope").await.unwrap().is_none());
    store
        .insert_message(&message("m", "oa", T0), T0)
        .await
        .unwrap();
    let mut now = T0;
    for errcode in [-1, 45009] {
        let c = store.claim_due("w", now, LEASE, 1, &[]).await.unwrap();
        let mut f = finish(
            &c[0],
            Next::Retry {
                due_at_ms: now + 10,
                count_attempt: errcode == -1,
                errcode: Some(errcode),
                reason: "later".into(),
            },
        );
        let a = f.attempt.as_mut().unwrap();
        (a.errcode, a.at_ms) = (Some(errcode), now);
        store.finish(&[f], now + 1).await.unwrap();
        now += 10;
    }
    let c = store.claim_due("w", now, LEASE, 1, &[]).await.unwrap();
    store
        .finish(&[finish(&c[0], sent())], now + 1)
        .await
        .unwrap();
    let rec = store.get_message("m").await.unwrap().unwrap();
    let codes: Vec<_> = rec.log.iter().map(|a| a.attempt.errcode).collect();
    assert_eq!(codes, [Some(-1), Some(45009), Some(0)]);
    assert_eq!(rec.summary.attempts, 2, "the quota wait did not count");
    assert_eq!(rec.summary.claims, 3);
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["state"], "sent");
    assert_eq!(json["log"][2]["outcome"], "sent");
    assert_eq!(json["log"][2]["fenced"], false);
}

contract!(
    campaign_counts_every_state,
    listings_filter_and_page_by_id,
    exports_page_by_recipient,
    queue_depth_counts_the_active_queue,
    a_message_comes_back_with_its_log_in_order,
);
