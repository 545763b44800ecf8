//! OA template messages: `POST /cgi-bin/message/template/send`.

use serde_json::{Value, json};

use crate::helpers::*;

const FOLLOWER: &str = "oUser_0001";

async fn oa() -> (Sim, String) {
    let s = Sim::demo().await;
    let t = s.token(OA, OA_SECRET).await;
    (s, t)
}

/// Sending to `to` is rejected with `code` and nothing is delivered.
async fn rejected_for(to: &str, code: i64) {
    let (s, t) = oa().await;
    assert_err(&s.template_send(&t, &legacy_body(to)).await, code);
    let st = s.stats(OA);
    assert_eq!(st.sends_rejected.get(&code), Some(&1));
    assert_eq!((st.sends_accepted, st.deliveries), (0, 0));
}

#[tokio::test]
async fn template_to_a_follower_is_delivered() {
    let (s, t) = oa().await;
    let r = s.template_send(&t, &legacy_body(FOLLOWER)).await;
    assert_ok(&r);
    let d = s.deliveries(OA);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].api.as_str(), d[0].to.as_str()),
        ("template", FOLLOWER)
    );
    assert_eq!(d[0].template_id.as_deref(), Some("TPL_LEGACY"));
    assert_eq!(d[0].msgid, r["msgid"].to_string());
    let st = s.stats(OA);
    assert_eq!((st.sends_accepted, st.deliveries), (1, 1));
}

#[tokio::test]
async fn template_non_follower_openid_40003() {
    rejected_for("user1", 40003).await;
}

#[tokio::test]
async fn template_unfollowed_43004() {
    rejected_for("o-unfollowed-x", 43004).await;
}

#[tokio::test]
async fn template_refused_48002() {
    rejected_for("o-refused-x", 48002).await;
}

#[tokio::test]
async fn template_restricted_user_50002() {
    rejected_for("o-restricted-x", 50002).await;
}

#[tokio::test]
async fn template_missing_template_id_40036() {
    let (s, t) = oa().await;
    let mut body = legacy_body(FOLLOWER);
    body.as_object_mut().unwrap().remove("template_id");
    body["temlate_id"] = "TPL_LEGACY".into();
    assert_err(&s.template_send(&t, &body).await, 40036);
    assert_eq!(s.stats(OA).deliveries, 0);
}

#[tokio::test]
async fn template_unknown_template_40037() {
    let (s, t) = oa().await;
    let mut body = legacy_body(FOLLOWER);
    body["template_id"] = "TPL_DELETED".into();
    let r = s.template_send(&t, &body).await;
    assert_err(&r, 40037);
    assert!(errmsg(&r).starts_with("invalid template_id"));
    assert_eq!(s.stats(OA).deliveries, 0);
}

fn order(amount: Option<&str>, code: Option<&str>) -> Value {
    let mut data =
        json!({"thing1": {"value": "巧克力"}, "time3": {"value": "2014年9月22日 15:01"}});
    if let Some(a) = amount {
        data["amount2"] = json!({"value": a});
    }
    if let Some(c) = code {
        data["character_string4"] = json!({"value": c});
    }
    json!({"touser": FOLLOWER, "template_id": "TPL_ORDER", "data": data})
}

#[tokio::test]
async fn template_typed_keyword_breach_47003_names_the_field() {
    let (s, t) = oa().await;
    let r = s
        .template_send(&t, &order(Some("lots"), Some("SO-1")))
        .await;
    assert_err(&r, 47003);
    assert!(errmsg(&r).contains("data.amount2.value invalid"), "{r}");
    let r = s.template_send(&t, &order(Some("39.8元"), None)).await;
    assert_err(&r, 47003);
    assert!(
        errmsg(&r).contains("data.character_string4.value is empty"),
        "{r}"
    );
    let r = s
        .template_send(&t, &order(Some("39.8元"), Some("订单1")))
        .await;
    assert!(errmsg(&r).contains("data.character_string4.value invalid"));
    assert_eq!(s.stats(OA).sends_rejected.get(&47003), Some(&3));
    assert_eq!(s.stats(OA).deliveries, 0);

    assert_ok(
        &s.template_send(&t, &order(Some("39.8元"), Some("SO-1")))
            .await,
    );
    let d = &s.deliveries(OA)[0];
    assert_eq!(d.content["data"]["amount2"], "39.8元");
    assert_eq!(d.content["data"]["character_string4"], "SO-1");
}

#[tokio::test]
async fn template_legacy_truncates_over_20_chars_and_drops_first_remark() {
    let (s, t) = oa().await;
    let long = "一二三四五六七八九十一二三四五六七八九十超出部分";
    let body = json!({
        "touser": FOLLOWER,
        "template_id": "TPL_LEGACY",
        "data": {
            "first": {"value": "您好"},
            "keyword1": {"value": long, "color": "#173177"},
            "keyword2": {"value": &long[..60]},
            "keyword3": {"value": "短"},
            "remark": {"value": "感谢"}
        }
    });
    assert_ok(&s.template_send(&t, &body).await);
    let data = &s.deliveries(OA)[0].content["data"];
    let k1 = data["keyword1"].as_str().unwrap();
    assert_eq!(k1.chars().count(), 20, "{k1}");
    assert!(k1.ends_with('…'));
    assert!(long.starts_with(k1.trim_end_matches('…')));
    // Exactly 20 characters stay as they are.
    assert_eq!(data["keyword2"], &long[..60]);
    assert_eq!(data["keyword3"], "短");
    assert!(
        data.get("first").is_none() && data.get("remark").is_none(),
        "{data}"
    );
}

#[tokio::test]
async fn template_client_msg_id_dedupes_for_600s() {
    let (s, t) = oa().await;
    let mut body = legacy_body(FOLLOWER);
    body["client_msg_id"] = "MSG_000001".into();
    let first = s.template_send(&t, &body).await;
    assert_ok(&first);
    s.advance_secs(599);
    let again = s.template_send(&t, &body).await;
    assert_ok(&again);
    assert_eq!(again["msgid"], first["msgid"]);
    let st = s.stats(OA);
    assert_eq!(
        (st.dedupe_hits, st.deliveries, st.sends_accepted),
        (1, 1, 1)
    );
    // Per openid: another follower with the same id is a different message.
    let mut other = body.clone();
    other["touser"] = "oUser_0002".into();
    assert_ok(&s.template_send(&t, &other).await);
    assert_eq!(s.stats(OA).deliveries, 2);
    // After the window the same send is delivered again, as a duplicate.
    s.advance_secs(2);
    let late = s.template_send(&t, &body).await;
    assert_ok(&late);
    assert_ne!(late["msgid"], first["msgid"]);
    let st = s.stats(OA);
    assert_eq!((st.dedupe_hits, st.deliveries), (1, 3));
    assert_eq!(st.duplicate_deliveries, 1);
    let d = s.deliveries(OA);
    assert!(!d[0].duplicate && d[2].duplicate);
    assert_eq!(d[2].client_msg_id.as_deref(), Some("MSG_000001"));
}

#[tokio::test]
async fn template_msgid_is_a_u64_above_2_pow_53() {
    let (s, t) = oa().await;
    let path = format!("/cgi-bin/message/template/send?access_token={t}");
    let text = s.post_text(&path, &legacy_body(FOLLOWER)).await;
    let digits: String = text
        .split("\"msgid\":")
        .nth(1)
        .unwrap_or_else(|| panic!("no msgid in {text}"))
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let msgid: u64 = digits.parse().unwrap();
    assert!(msgid > 1 << 53, "{msgid}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["msgid"].as_u64(),
        Some(msgid),
        "an integer, not a float: {text}"
    );
    assert_eq!(s.deliveries(OA)[0].msgid, digits);
}

#[tokio::test]
async fn template_daily_cap_45009() {
    let s = Sim::demo().await;
    s.h.update_app(OA, |a| a.send_daily_limit = Some(2));
    s.align_day();
    let t = s.token(OA, OA_SECRET).await;
    assert_ok(&s.template_send(&t, &legacy_body(FOLLOWER)).await);
    assert_ok(&s.template_send(&t, &legacy_body("oUser_0002")).await);
    let r = s.template_send(&t, &legacy_body("oUser_0003")).await;
    assert_err(&r, 45009);
    assert_eq!(s.stats(OA).deliveries, 2);
    s.advance_secs(86_400);
    let t = s.token(OA, OA_SECRET).await;
    assert_ok(&s.template_send(&t, &legacy_body("oUser_0003")).await);
}

#[tokio::test]
async fn template_with_mp_token_48001() {
    let s = Sim::demo().await;
    let mp = s.token(MP, MP_SECRET).await;
    let r = s.template_send(&mp, &legacy_body(FOLLOWER)).await;
    assert_err(&r, 48001);
    assert!(errmsg(&r).starts_with("api unauthorized"));
    assert_eq!(s.stats(MP).sends_rejected.get(&48001), Some(&1));
    assert_eq!(s.stats(OA).deliveries + s.stats(MP).deliveries, 0);
}

#[tokio::test]
async fn template_missing_token_41001_garbage_token_40014() {
    let s = Sim::demo().await;
    let body = serde_json::to_vec(&legacy_body(FOLLOWER)).unwrap();
    let r = s
        .post_bytes("/cgi-bin/message/template/send", body.clone())
        .await;
    assert_err(&r, 41001);
    let r = s
        .post_bytes("/cgi-bin/message/template/send?access_token=", body.clone())
        .await;
    assert_err(&r, 41001);
    let r = s
        .template_send("83_not-a-real-token", &legacy_body(FOLLOWER))
        .await;
    assert_err(&r, 40014);
    assert_eq!(s.stats(OA).deliveries, 0);
}

#[tokio::test]
async fn template_empty_body_44002_bad_json_47001() {
    let (s, t) = oa().await;
    let path = format!("/cgi-bin/message/template/send?access_token={t}");
    assert_err(&s.post_bytes(&path, "").await, 44002);
    assert_err(&s.post_bytes(&path, "{\"touser\": ").await, 47001);
    assert_err(&s.post_bytes(&path, "touser=oUser_0001").await, 47001);
    let st = s.stats(OA);
    assert_eq!(st.sends_rejected.get(&44002), Some(&1));
    assert_eq!(st.sends_rejected.get(&47001), Some(&2));
    assert_eq!(st.deliveries, 0);
}
