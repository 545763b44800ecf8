//! Claiming: order, send_at, paused apps, next_due, takeovers of expired leases, extending
//! leases, and claimers on two stores never sharing a message.

use std::collections::HashSet;

use super::testkit::*;
use super::{TestDb, contract};
use crate::store::{
    Claimed, Finish, Lane, Lease, MessageKind, MessageState, Next, StateCounts, Store,
};

async fn insert(store: &Store, id: &str, app: &str, due: i64) {
    let msg = message(id, app, due);
    store.insert_message(&msg, T0).await.unwrap();
}

async fn claims_due_messages_oldest_first_and_not_before_send_at(db: TestDb) {
    let store = &db.store;
    insert(store, "late", "oa", T0 + 20_000).await;
    insert(store, "b", "oa", T0 - 10).await;
    insert(store, "a", "oa", T0 - 20).await;
    insert(store, "c", "oa", T0).await;

    let first = store.claim_due("w1", T0, LEASE, 1, &[]).await.unwrap();
    assert_eq!(ids(&first), ["a"], "the oldest due first");
    let c = &first[0];
    assert_eq!((c.claims, c.attempts, c.first_claimed_at_ms), (1, 0, T0));
    assert_eq!(c.lease_until_ms, T0 + LEASE);
    assert!(c.lease_token.starts_with("1."), "{}", c.lease_token);
    assert!(!c.was_sending && !c.ever_abandoned);
    assert_eq!((c.app.as_str(), c.kind), ("oa", MessageKind::Template));
    assert_eq!(c.body, message("a", "oa", 0).body);

    let rest = store.claim_due("w1", T0, LEASE, 10, &[]).await.unwrap();
    assert_eq!(ids(&rest), ["b", "c"], "not `late`: due in 20 s");
    assert!(
        store
            .claim_due("w2", T0 + 19_999, LEASE, 10, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let late = store
        .claim_due("w2", T0 + 20_000, LEASE, 10, &[])
        .await
        .unwrap();
    assert_eq!(ids(&late), ["late"]);
    let rec = store.get_message("late").await.unwrap().unwrap();
    assert_eq!(rec.summary.state, MessageState::Sending);
    assert_eq!(rec.lease_owner.as_deref(), Some("w2"));
    assert_eq!(rec.lease_until_ms, Some(T0 + 20_000 + LEASE));
}

async fn paused_apps_are_skipped(db: TestDb) {
    let store = &db.store;
    insert(store, "p1", "paused", T0 - 100).await;
    insert(store, "p2", "paused", T0 - 90).await;
    insert(store, "o1", "oa", T0 - 10).await;
    insert(store, "w1", "crm", T0 - 5).await;
    let skip = ["paused".to_string()];

    assert_eq!(store.next_due_ms(&skip).await.unwrap(), Some(T0 - 10));
    let got = store.claim_due("w", T0, LEASE, 1, &skip).await.unwrap();
    assert_eq!(ids(&got), ["o1"], "not p1 although it is older");
    let skip_two = ["paused".to_string(), "crm".to_string()];
    assert!(
        store
            .claim_due("w", T0, LEASE, 10, &skip_two)
            .await
            .unwrap()
            .is_empty()
    );
    let got = store.claim_due("w", T0, LEASE, 10, &skip).await.unwrap();
    assert_eq!(ids(&got), ["w1"]);
    // The lease ends are next now, for every app.
    assert_eq!(store.next_due_ms(&skip).await.unwrap(), Some(T0 + LEASE));
    assert_eq!(store.next_due_ms(&[]).await.unwrap(), Some(T0 - 100));
    let got = store.claim_due("w", T0, LEASE, 10, &[]).await.unwrap();
    assert_eq!(ids(&got), ["p1", "p2"]);
}

/// `per_app` caps what one app gives to a claim, and the claim still takes the earliest due
/// rows overall from what the apps gave.
async fn per_app_claims_take_at_most_that_many_of_each_app(db: TestDb) {
    let store = &db.store;
    for i in 0..5 {
        insert(store, &format!("a{i}"), "oa", T0 - 100 + i).await;
        insert(store, &format!("b{i}"), "crm", T0 - 50 + i).await;
    }
    let got = store
        .claim_due_per_app("w", T0, LEASE, 3, 2, &[])
        .await
        .unwrap();
    assert_eq!(
        ids(&got),
        ["a0", "a1", "b0"],
        "two of oa, then the earliest of crm"
    );
    let got = store
        .claim_due_per_app("w", T0, LEASE, 10, 2, &[])
        .await
        .unwrap();
    assert_eq!(ids(&got), ["a2", "a3", "b1", "b2"]);
}

/// The singles claim takes single messages only, from every app, however many older campaign
/// messages are queued, and keeps the per-app cap; the claim of everything then takes the
/// campaigns' messages, oldest due first.
async fn singles_are_claimed_apart_from_campaign_messages(db: TestDb) {
    let store = &db.store;
    for (id, app, tag) in [("c1", "oa", "r"), ("c2", "crm", "q")] {
        let rows = recipients(tag, 50);
        store
            .create_campaign(&campaign(id, app, T0 - 1_000), &rows, T0)
            .await
            .unwrap();
    }
    insert(store, "s-oa", "oa", T0 - 10).await;
    insert(store, "s-oa2", "oa", T0 - 9).await;
    insert(store, "s-crm", "crm", T0 - 5).await;

    let singles = store
        .claim_due_in(Lane::Singles, ("w", T0, LEASE), 10, 1, &[])
        .await
        .unwrap();
    assert_eq!(ids(&singles), ["s-crm", "s-oa"], "one per app, the oldest");
    let next = store
        .claim_due_in(Lane::Singles, ("w", T0, LEASE), 10, 5, &[])
        .await
        .unwrap();
    assert_eq!(ids(&next), ["s-oa2"]);
    let rest = store
        .claim_due_per_app("w", T0, LEASE, 10, 5, &[])
        .await
        .unwrap();
    assert_eq!(rest.len(), 10);
    assert!(rest.iter().all(|c| c.campaign_id.is_some()));
    assert!(
        store
            .claim_due_in(Lane::Singles, ("w", T0, LEASE), 10, 5, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn next_due_is_none_when_nothing_is_active(db: TestDb) {
    let store = &db.store;
    assert_eq!(store.next_due_ms(&[]).await.unwrap(), None);
    insert(store, "m", "oa", T0 + 5).await;
    assert_eq!(store.next_due_ms(&[]).await.unwrap(), Some(T0 + 5));
    let c = store.claim_due("w", T0 + 5, LEASE, 1, &[]).await.unwrap();
    store
        .finish(&[finish(&c[0], sent())], T0 + 6)
        .await
        .unwrap();
    assert_eq!(store.next_due_ms(&[]).await.unwrap(), None);
}

async fn an_expired_lease_is_taken_over_and_says_so(db: TestDb) {
    let store = &db.store;
    insert(store, "m", "oa", T0).await;
    let first = store.claim_due("dead", T0, LEASE, 10, &[]).await.unwrap();
    assert_eq!(first.len(), 1);
    // Not before the lease ends…
    let t_end = T0 + LEASE;
    assert!(
        store
            .claim_due("w2", t_end - 1, LEASE, 10, &[])
            .await
            .unwrap()
            .is_empty()
    );
    // …then taken over, with a new token.
    let second = store.claim_due("w2", t_end, LEASE, 10, &[]).await.unwrap();
    assert_eq!(second.len(), 1);
    let (a, b) = (&first[0], &second[0]);
    assert!(b.was_sending && b.ever_abandoned);
    assert_eq!((b.claims, b.first_claimed_at_ms), (2, T0));
    assert_ne!(a.lease_token, b.lease_token);
    assert!(b.lease_token.starts_with("2."), "{}", b.lease_token);

    // Released (say its app paused): the next claim is not a takeover, but remembers one.
    let done = store
        .finish(&[finish(b, Next::Release)], t_end + 1)
        .await
        .unwrap();
    assert_eq!(done, [true]);
    let third = store
        .claim_due("w3", t_end + 1, LEASE, 10, &[])
        .await
        .unwrap();
    assert_eq!(third.len(), 1);
    assert!(!third[0].was_sending && third[0].ever_abandoned);
    assert_eq!(third[0].claims, 3);
}

async fn extended_leases_are_not_taken_over(db: TestDb) {
    let store = &db.store;
    insert(store, "a", "oa", T0).await;
    insert(store, "b", "oa", T0).await;
    let got = store.claim_due("w1", T0, LEASE, 10, &[]).await.unwrap();
    let leases: Vec<Lease> = got.iter().map(Claimed::lease).collect();
    let until = T0 + 3 * LEASE;
    let held = store
        .extend_leases("w1", &leases[..1], until)
        .await
        .unwrap();
    assert_eq!(held, [true]);
    // Another owner cannot extend them, a stale token neither.
    let stale = Lease {
        id: leases[1].id.clone(),
        token: "1.0000000000000000".into(),
    };
    let held = store
        .extend_leases("w2", &leases[1..], until)
        .await
        .unwrap();
    assert_eq!(held, [false]);
    assert_eq!(
        store.extend_leases("w1", &[stale], until).await.unwrap(),
        [false]
    );

    let taken = store
        .claim_due("w2", T0 + LEASE, LEASE, 10, &[])
        .await
        .unwrap();
    assert_eq!(
        ids(&taken),
        [leases[1].id.clone()],
        "only the one not extended"
    );
    assert_eq!(
        store.extend_leases("w1", &leases, until).await.unwrap(),
        [true, false],
        "the second was taken over"
    );
    let rec = store.get_message(&leases[0].id).await.unwrap().unwrap();
    assert_eq!(rec.lease_until_ms, Some(until));
    assert_eq!(rec.summary.due_at_ms, until);
}

/// Many tasks on two stores (two instances sharing the database) claim and finish in a loop
/// until nothing is left: each message is claimed exactly once.
async fn concurrent_claimers_never_share_a_message(db: TestDb) {
    const N: usize = 3000;
    let (a, b) = (db.store.clone(), db.connect().await);
    let rows = recipients("race", N);
    a.create_campaign(&campaign("race", "oa", T0), &rows, T0)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let store = if worker % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        tasks.push(tokio::spawn(async move {
            let owner = format!("w{worker}");
            let mut mine = Vec::new();
            loop {
                let got = store.claim_due(&owner, T0, LEASE, 7, &[]).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                let finishes: Vec<Finish> = got.iter().map(|c| finish(c, sent())).collect();
                let applied = store.finish(&finishes, T0 + 1).await.unwrap();
                assert!(applied.iter().all(|&ok| ok), "{owner}: {applied:?}");
                mine.extend(got.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut all = Vec::new();
    let mut busy_workers = 0;
    for task in tasks {
        let mine = task.await.unwrap();
        busy_workers += usize::from(!mine.is_empty());
        all.extend(mine);
    }
    assert_eq!(all.len(), N, "claims in total");
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), N, "each message claimed once");
    assert!(busy_workers > 1, "the claims were spread over workers");
    let rec = a.campaign("race").await.unwrap().unwrap();
    assert_eq!(
        rec.counts,
        StateCounts {
            sent: N as u64,
            ..StateCounts::default()
        }
    );
    assert_eq!(db.int("SELECT MAX(claims) FROM messages").await, 1);
    assert_eq!(db.count("attempts").await, N as i64);
}

contract!(
    claims_due_messages_oldest_first_and_not_before_send_at,
    paused_apps_are_skipped,
    per_app_claims_take_at_most_that_many_of_each_app,
    singles_are_claimed_apart_from_campaign_messages,
    next_due_is_none_when_nothing_is_active,
    an_expired_lease_is_taken_over_and_says_so,
    extended_leases_are_not_taken_over,
    concurrent_claimers_never_share_a_message(flavor = "multi_thread", worker_threads = 4),
);
