//! WeCom application messages: `POST /cgi-bin/message/send`.

use serde_json::{Value, json};
use wxsim::{AppSpec, SimConfig};

use crate::helpers::*;

async fn wecom() -> (Sim, String) {
    let s = Sim::demo().await;
    let t = s.wecom_token(CORP, WECOM_SECRET).await;
    (s, t)
}

fn recipients(d: &[wxsim::Delivery]) -> Vec<&str> {
    d.iter().map(|d| d.to.as_str()).collect()
}

#[tokio::test]
async fn wecom_pipe_joined_recipients_each_get_the_message_with_a_string_msgid() {
    let (s, t) = wecom().await;
    let mut body = text_body("alice|bob|carol", "hello");
    body["toparty"] = "2|3".into();
    body["totag"] = "7".into();
    let r = s.wecom_send(&t, &body).await;
    assert_ok(&r);
    let msgid = r["msgid"].as_str().expect("msgid is a string");
    assert!(!msgid.is_empty());
    for k in ["invaliduser", "invalidparty", "invalidtag", "response_code"] {
        assert!(r.get(k).is_none(), "{k} in {r}");
    }
    let d = s.deliveries(WECOM);
    assert_eq!(
        recipients(&d),
        ["alice", "bob", "carol", "party:2", "party:3", "tag:7"]
    );
    assert!(d.iter().all(|d| d.msgid == msgid));
    let st = s.stats(WECOM);
    assert_eq!((st.sends_accepted, st.deliveries), (1, 6));
}

#[tokio::test]
async fn wecom_partial_invalid_recipients_errcode_0_lowercased() {
    let (s, t) = wecom().await;
    let mut body = text_body("INVALID_A|Bob", "hello");
    body["toparty"] = "2|99999".into();
    body["totag"] = "abc".into();
    let r = s.wecom_send(&t, &body).await;
    assert_ok(&r);
    assert_eq!(r["invaliduser"], "invalid_a");
    assert_eq!(r["invalidparty"], "99999");
    assert_eq!(r["invalidtag"], "abc");
    assert_eq!(recipients(&s.deliveries(WECOM)), ["bob", "party:2"]);
}

#[tokio::test]
async fn wecom_all_recipients_invalid_81013() {
    let (s, t) = wecom().await;
    let r = s
        .wecom_send(&t, &text_body("invalid_a|Invalid_B", "hello"))
        .await;
    assert_wecom_err(&r, 81013);
    assert_eq!(r["invaliduser"], "invalid_a|invalid_b");
    let st = s.stats(WECOM);
    assert_eq!(
        (st.deliveries, st.sends_rejected.get(&81013)),
        (0, Some(&1))
    );
}

#[tokio::test]
async fn wecom_unlicensed_user_reported_and_not_delivered() {
    let (s, t) = wecom().await;
    let r = s
        .wecom_send(&t, &text_body("unlicensed_x|bob", "hello"))
        .await;
    assert_ok(&r);
    assert_eq!(r["unlicenseduser"], "unlicensed_x");
    assert_eq!(recipients(&s.deliveries(WECOM)), ["bob"]);
}

fn ids(n: usize) -> String {
    (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join("|")
}

#[tokio::test]
async fn wecom_recipient_list_limits_40032_82002_82003() {
    let (s, t) = wecom().await;
    let users: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let r = s.wecom_send(&t, &text_body(&users.join("|"), "x")).await;
    assert_wecom_err(&r, 40032);
    let mut body = text_body("bob", "x");
    body["toparty"] = ids(101).into();
    assert_wecom_err(&s.wecom_send(&t, &body).await, 82002);
    let mut body = text_body("bob", "x");
    body["totag"] = ids(101).into();
    assert_wecom_err(&s.wecom_send(&t, &body).await, 82003);
    assert_eq!(s.stats(WECOM).deliveries, 0);
    // Exactly at the limits is fine.
    let mut body = text_body(&users[..1000].join("|"), "x");
    body["toparty"] = ids(100).into();
    body["totag"] = ids(100).into();
    assert_ok(&s.wecom_send(&t, &body).await);
    assert_eq!(s.stats(WECOM).deliveries, 1200);
}

#[tokio::test]
async fn wecom_token_of_agent_a_with_agentid_b_301002() {
    let s = Sim::start(SimConfig {
        apps: vec![
            AppSpec::wecom(CORP, AGENT, WECOM_SECRET),
            AppSpec::wecom(CORP, 1_000_003, "other-secret"),
        ],
        ..SimConfig::empty()
    })
    .await;
    let t = s.wecom_token(CORP, WECOM_SECRET).await;
    let mut body = text_body("bob", "x");
    body["agentid"] = 1_000_003.into();
    let r = s.wecom_send(&t, &body).await;
    assert_wecom_err(&r, 301002);
    // An agentid that is no app of the corp is 40056.
    body["agentid"] = 42.into();
    assert_wecom_err(&s.wecom_send(&t, &body).await, 40056);
    assert_eq!(s.stats(WECOM).sends_rejected.get(&301002), Some(&1));
    assert_eq!(s.stats("wwdemo_corp:1000003").deliveries, 0);
}

#[tokio::test]
async fn wecom_string_agentid_is_accepted_with_a_warning() {
    let (s, t) = wecom().await;
    let mut body = text_body("bob", "x");
    body["agentid"] = AGENT.to_string().into();
    let r = s.wecom_send(&t, &body).await;
    assert_eq!(r["errcode"], 0, "{r}");
    assert!(errmsg(&r).contains("Warning: wrong json format."), "{r}");
    assert_eq!(s.stats(WECOM).deliveries, 1);
}

#[tokio::test]
async fn wecom_unknown_msgtype_40008() {
    let (s, t) = wecom().await;
    let mut body = text_body("bob", "x");
    body["msgtype"] = "hologram".into();
    assert_wecom_err(&s.wecom_send(&t, &body).await, 40008);
    assert_eq!(s.stats(WECOM).deliveries, 0);
}

#[tokio::test]
async fn wecom_empty_text_44004() {
    let (s, t) = wecom().await;
    assert_wecom_err(&s.wecom_send(&t, &text_body("bob", "")).await, 44004);
    assert_eq!(s.stats(WECOM).deliveries, 0);
}

#[tokio::test]
async fn wecom_textcard_without_description_41033() {
    let (s, t) = wecom().await;
    let card = |desc: Option<&str>| {
        let mut c = json!({"title": "领奖通知", "url": "https://example.com/x"});
        if let Some(d) = desc {
            c["description"] = d.into();
        }
        json!({"touser": "bob", "msgtype": "textcard", "agentid": AGENT, "textcard": c})
    };
    assert_wecom_err(&s.wecom_send(&t, &card(None)).await, 41033);
    assert_eq!(s.stats(WECOM).deliveries, 0);
    assert_ok(&s.wecom_send(&t, &card(Some("恭喜你抽中iPhone"))).await);
    let d = &s.deliveries(WECOM)[0].content["textcard"];
    assert_eq!(d["btntxt"], "详情");
}

#[tokio::test]
async fn wecom_text_over_2048_bytes_is_truncated() {
    let (s, t) = wecom().await;
    let long = "中".repeat(1000); // 3000 bytes
    assert_ok(&s.wecom_send(&t, &text_body("bob", &long)).await);
    let d = &s.deliveries(WECOM)[0];
    assert_eq!(d.msgtype.as_deref(), Some("text"));
    let shown = d.content["text"]["content"].as_str().unwrap();
    assert!(shown.len() <= 2048 && shown.len() > 2040, "{}", shown.len());
    assert!(long.starts_with(shown));
}

#[tokio::test]
async fn wecom_duplicate_check_does_not_deliver_an_identical_body_again() {
    let (s, t) = wecom().await;
    let mut body = text_body("alice|bob", "once");
    body["enable_duplicate_check"] = 1.into();
    body["duplicate_check_interval"] = 60.into();
    let first = s.wecom_send(&t, &body).await;
    assert_ok(&first);
    s.advance_secs(30);
    let again = s.wecom_send(&t, &body).await;
    assert_ok(&again);
    assert_eq!(again["msgid"], first["msgid"]);
    let st = s.stats(WECOM);
    assert_eq!((st.deliveries, st.dedupe_hits), (2, 1));
    // A different body is a different message.
    let mut other = body.clone();
    other["text"]["content"] = "twice".into();
    assert_ok(&s.wecom_send(&t, &other).await);
    assert_eq!(s.stats(WECOM).deliveries, 4);
    // After the interval the same body goes out again.
    s.advance_secs(31);
    let late = s.wecom_send(&t, &body).await;
    assert_ne!(late["msgid"], first["msgid"]);
    let st = s.stats(WECOM);
    assert_eq!(
        (st.deliveries, st.dedupe_hits, st.duplicate_deliveries),
        (6, 1, 2)
    );
}

#[tokio::test]
async fn wecom_member_minute_limit_accepts_but_drops() {
    let s = Sim::demo().await;
    s.h.update_app(WECOM, |a| a.member_minute_limit = 2);
    s.align_minute();
    let t = s.wecom_token(CORP, WECOM_SECRET).await;
    for i in 0..3 {
        assert_ok(&s.wecom_send(&t, &text_body("bob", &format!("m{i}"))).await);
    }
    let st = s.stats(WECOM);
    assert_eq!((st.sends_accepted, st.deliveries), (3, 2));
    assert_eq!(st.dropped_member_limit, 1);
    // Others are not affected, and bob gets messages again the next minute.
    assert_ok(&s.wecom_send(&t, &text_body("bob|carol", "m3")).await);
    assert_eq!(recipients(&s.deliveries(WECOM)), ["bob", "bob", "carol"]);
    s.advance_secs(60);
    assert_ok(&s.wecom_send(&t, &text_body("bob", "m4")).await);
    let st = s.stats(WECOM);
    assert_eq!((st.deliveries, st.dropped_member_limit), (4, 2));
}

fn card(card_type: &str) -> Value {
    json!({"touser": "bob", "msgtype": "template_card", "agentid": AGENT,
        "template_card": {"card_type": card_type, "main_title": {"title": "审批"},
            "task_id": "task-1", "button_list": [{"text": "同意", "key": "yes"}]}})
}

#[tokio::test]
async fn wecom_interactive_template_card_returns_response_code() {
    let (s, t) = wecom().await;
    let r = s.wecom_send(&t, &card("button_interaction")).await;
    assert_ok(&r);
    assert!(!r["response_code"].as_str().expect("a string").is_empty());
    let r = s.wecom_send(&t, &card("text_notice")).await;
    assert_ok(&r);
    assert!(r.get("response_code").is_none(), "{r}");
}

#[tokio::test]
async fn wecom_errors_carry_hint_from_ip_and_more_info() {
    let (s, t) = wecom().await;
    let mut body = text_body("bob", "x");
    body["msgtype"] = "hologram".into();
    let r = s.wecom_send(&t, &body).await;
    assert_wecom_err(&r, 40008);
    let msg = errmsg(&r);
    assert!(msg.starts_with("invalid message type, hint: ["), "{msg}");
    assert!(
        msg.contains("], from ip: 127.0.0.1, more info at "),
        "{msg}"
    );
    let hint = msg
        .split("hint: [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    assert!(!hint.is_empty() && hint.bytes().all(|b| b.is_ascii_digit()));
    // Token errors too.
    assert_wecom_err(
        &s.wecom_send("garbage", &text_body("bob", "x")).await,
        40014,
    );
    let r = s
        .post("/cgi-bin/message/send", &text_body("bob", "x"))
        .await;
    assert_wecom_err(&r, 41001);
    // Bodies WeCom cannot read.
    let path = format!("/cgi-bin/message/send?access_token={t}");
    assert_wecom_err(&s.post_bytes(&path, "").await, 44002);
    assert_wecom_err(&s.post_bytes(&path, "{oops").await, 47001);
}

#[tokio::test]
async fn wecom_at_all_goes_to_everyone_and_ignores_parties() {
    let (s, t) = wecom().await;
    let mut body = text_body("@all", "全员通知");
    body["toparty"] = "99999".into();
    let r = s.wecom_send(&t, &body).await;
    assert_ok(&r);
    assert!(r.get("invalidparty").is_none(), "{r}");
    assert_eq!(recipients(&s.deliveries(WECOM)), ["@all"]);
}

#[tokio::test]
async fn wecom_ip_whitelist_60020_on_business_calls() {
    let mut spec = AppSpec::wecom(CORP, AGENT, WECOM_SECRET);
    spec.ip_whitelist = Some(vec!["10.1.2.3".parse().unwrap()]);
    let s = Sim::start(SimConfig {
        apps: vec![spec],
        ..SimConfig::empty()
    })
    .await;
    // gettoken still works; the business call is refused.
    let t = s.wecom_token(CORP, WECOM_SECRET).await;
    let r = s.wecom_send(&t, &text_body("bob", "x")).await;
    assert_wecom_err(&r, 60020);
    assert!(errmsg(&r).starts_with("not allow to access from your ip"));
    assert!(errmsg(&r).contains("from ip: 127.0.0.1,"), "{r}");
    assert_eq!(s.stats(WECOM).deliveries, 0);
}

#[tokio::test]
async fn wecom_daily_person_times_cap_45009() {
    let s = Sim::demo().await;
    s.h.update_app(WECOM, |a| a.send_daily_limit = Some(3));
    s.align_day();
    let t = s.wecom_token(CORP, WECOM_SECRET).await;
    assert_ok(&s.wecom_send(&t, &text_body("alice|bob", "x")).await);
    // Two more person-times would exceed 3: the whole call is refused.
    let r = s.wecom_send(&t, &text_body("carol|dave", "x")).await;
    assert_wecom_err(&r, 45009);
    assert!(errmsg(&r).starts_with("api freq out of limit"));
    assert_ok(&s.wecom_send(&t, &text_body("carol", "x")).await);
    assert_eq!(s.stats(WECOM).deliveries, 3);
}

#[tokio::test]
async fn wecom_markdown_and_news_limits() {
    let (s, t) = wecom().await;
    let md = |content: String| {
        json!({"touser": "bob", "msgtype": "markdown", "agentid": AGENT,
            "markdown": {"content": content}})
    };
    assert_wecom_err(&s.wecom_send(&t, &md("#".repeat(2049))).await, 45002);
    assert_ok(&s.wecom_send(&t, &md("#".repeat(2048))).await);
    let news = |n: usize| {
        let article = json!({"title": "标".repeat(100), "url": "https://example.com"});
        json!({"touser": "bob", "msgtype": "news", "agentid": AGENT,
            "news": {"articles": vec![article; n]}})
    };
    assert_wecom_err(&s.wecom_send(&t, &news(0)).await, 40058);
    assert_wecom_err(&s.wecom_send(&t, &news(9)).await, 40058);
    assert_ok(&s.wecom_send(&t, &news(8)).await);
    let d = s.deliveries(WECOM);
    assert_eq!(d.len(), 2);
    // Titles are cut to 128 bytes on a character boundary.
    let title = d[1].content["news"]["articles"][0]["title"]
        .as_str()
        .unwrap();
    assert_eq!(title.len(), 126);
}
