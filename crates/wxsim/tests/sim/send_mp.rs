//! Mini Program subscribe messages: `POST /cgi-bin/message/subscribe/send`.

use serde_json::{Map, Value, json};
use wxsim::{AppSpec, SimConfig, Subscription, TemplateSpec};

use crate::helpers::*;

const USER: &str = "oUser_0001";

async fn mp() -> (Sim, String) {
    let s = Sim::demo().await;
    let t = s.token(MP, MP_SECRET).await;
    (s, t)
}

/// Every keyword type of §4.2: (name, a passing value, another passing value, a failing value).
const TYPES: &[(&str, &str, &str, &str)] = &[
    (
        "thing1",
        "您的订单已发货",
        "二十个字二十个字二十个字二十个字二十个字",
        "二十一个字二十一个字二十一个字二十一个字二",
    ),
    ("number2", "12345.67", "-3", "12a"),
    ("letter3", "abcXYZ", "Z", "abc1"),
    ("symbol4", "%#@!", "#", "!!!!!!"),
    ("character_string5", "SO-2026-000123", "A B-1", "订单123"),
    ("time6", "2019年10月1日 15:01", "15:01~16:00", "25:01"),
    ("date7", "2019-10-01", "2019/10/01~2019/10/07", "2019-13-01"),
    ("amount8", "¥99.00", "39.8元", "ninety"),
    (
        "phone_number9",
        "+86-0766-66888866",
        "13800138000",
        "call me",
    ),
    ("car_number10", "粤A8Z888挂", "京A12345", "粤A8Z8889挂"),
    ("name11", "张三", "John Smith", "R2D2"),
    ("phrase12", "配送中", "审核通过", "ok"),
];

/// A body with every keyword passing: the first set of values, or the second when `alt`.
fn all_types_body(alt: bool) -> Value {
    let data: Map<String, Value> = TYPES
        .iter()
        .map(|t| {
            (
                t.0.to_string(),
                json!({"value": if alt { t.2 } else { t.1 }}),
            )
        })
        .collect();
    json!({"touser": USER, "template_id": "TPL_ALL", "data": data})
}

#[tokio::test]
async fn subscribe_keyword_rules_by_type_answer_47003_naming_the_field() {
    let names: Vec<&str> = TYPES.iter().map(|t| t.0).collect();
    let mut spec = AppSpec::mini_program(MP, MP_SECRET);
    spec.templates.push(TemplateSpec {
        subscription: Subscription::LongTerm,
        ..TemplateSpec::typed("TPL_ALL", &names)
    });
    let s = Sim::start(SimConfig {
        apps: vec![spec],
        ..SimConfig::empty()
    })
    .await;
    let t = s.token(MP, MP_SECRET).await;

    for (name, _, _, bad) in TYPES {
        let mut body = all_types_body(false);
        body["data"][name]["value"] = (*bad).into();
        let r = s.subscribe_send(&t, &body).await;
        assert_err(&r, 47003);
        assert!(
            errmsg(&r).starts_with(&format!("argument invalid! data.{name}.value invalid")),
            "{name} = {bad:?}: {r}"
        );
    }
    // A missing keyword is "is empty", and so is an empty value.
    let mut body = all_types_body(false);
    body["data"].as_object_mut().unwrap().remove("phrase12");
    let r = s.subscribe_send(&t, &body).await;
    assert!(errmsg(&r).contains("data.phrase12.value is empty"), "{r}");
    body["data"]["phrase12"] = json!({"value": ""});
    assert!(errmsg(&s.subscribe_send(&t, &body).await).contains("data.phrase12.value is empty"));
    // A control character is never allowed.
    let mut body = all_types_body(false);
    body["data"]["thing1"]["value"] = "line\nbreak".into();
    assert!(errmsg(&s.subscribe_send(&t, &body).await).contains("data.thing1.value invalid"));
    let n = TYPES.len() as u64 + 3;
    assert_eq!(s.stats(MP).sends_rejected.get(&47003), Some(&n));
    assert_eq!(s.stats(MP).deliveries, 0);

    // Both sets of passing values are delivered as sent.
    assert_ok(&s.subscribe_send(&t, &all_types_body(false)).await);
    assert_ok(&s.subscribe_send(&t, &all_types_body(true)).await);
    let d = s.deliveries(MP);
    assert_eq!(d.len(), 2);
    for (name, a, b, _) in TYPES {
        assert_eq!(d[0].content["data"][name], *a);
        assert_eq!(d[1].content["data"][name], *b);
    }
}

#[tokio::test]
async fn subscribe_one_time_credit_default_1_then_43101() {
    let (s, t) = mp().await;
    let r = s.subscribe_send(&t, &sub_body(USER)).await;
    assert_ok(&r);
    assert!(r["msgid"].as_u64().is_some());
    let r = s.subscribe_send(&t, &sub_body(USER)).await;
    assert_err(&r, 43101);
    assert!(errmsg(&r).starts_with("user refuse to accept the msg"));
    // Credits are per (openid, template): another user still has theirs.
    assert_ok(&s.subscribe_send(&t, &sub_body("oUser_0002")).await);
    let st = s.stats(MP);
    assert_eq!(
        (st.deliveries, st.sends_rejected.get(&43101)),
        (2, Some(&1))
    );
}

#[tokio::test]
async fn subscribe_set_credits_3_then_43101() {
    let (s, t) = mp().await;
    assert!(s.h.set_credits(MP, USER, "TPL_SUB", 3));
    for _ in 0..3 {
        assert_ok(&s.subscribe_send(&t, &sub_body(USER)).await);
    }
    assert_err(&s.subscribe_send(&t, &sub_body(USER)).await, 43101);
    assert_eq!(s.stats(MP).deliveries, 3);
}

#[tokio::test]
async fn subscribe_long_term_template_is_unlimited() {
    let (s, t) = mp().await;
    let body = json!({"touser": USER, "template_id": "TPL_LONG",
        "data": {"thing1": {"value": "预约提醒"}, "date2": {"value": "2019年10月1日"}}});
    for _ in 0..5 {
        assert_ok(&s.subscribe_send(&t, &body).await);
    }
    let st = s.stats(MP);
    assert_eq!((st.deliveries, st.duplicate_deliveries), (5, 4));
}

#[tokio::test]
async fn subscribe_refused_user_43101_unknown_openid_40003() {
    let (s, t) = mp().await;
    assert_err(&s.subscribe_send(&t, &sub_body("o-refused-x")).await, 43101);
    assert_err(&s.subscribe_send(&t, &sub_body("user1")).await, 40003);
    let mut body = sub_body(USER);
    body["template_id"] = "TPL_NOPE".into();
    assert_err(&s.subscribe_send(&t, &body).await, 40037);
    assert_eq!(s.stats(MP).deliveries, 0);
}

#[tokio::test]
async fn subscribe_bad_miniprogram_state_or_lang_47003() {
    let (s, t) = mp().await;
    let mut body = sub_body(USER);
    body["miniprogram_state"] = "production".into();
    let r = s.subscribe_send(&t, &body).await;
    assert_err(&r, 47003);
    assert!(errmsg(&r).contains("miniprogram_state"), "{r}");
    let mut body = sub_body(USER);
    body["lang"] = "fr_FR".into();
    let r = s.subscribe_send(&t, &body).await;
    assert_err(&r, 47003);
    assert!(errmsg(&r).contains("lang"), "{r}");
    assert_eq!(s.stats(MP).deliveries, 0);
    // The allowed values pass.
    body["lang"] = "en_US".into();
    body["miniprogram_state"] = "trial".into();
    assert_ok(&s.subscribe_send(&t, &body).await);
}

#[tokio::test]
async fn subscribe_unknown_page_41030_when_pages_are_set() {
    let (s, t) = mp().await;
    let mut body = sub_body(USER);
    body["page"] = "pages/anything".into();
    // Without a page list any page goes.
    assert_ok(&s.subscribe_send(&t, &body).await);
    s.h.update_app(MP, |a| a.pages = Some(vec!["pages/index/index".into()]));
    let mut body = sub_body("oUser_0002");
    body["page"] = "pages/missing/missing".into();
    let r = s.subscribe_send(&t, &body).await;
    assert_err(&r, 41030);
    body["page"] = "pages/index/index?id=42".into();
    assert_ok(&s.subscribe_send(&t, &body).await);
    assert_eq!(
        s.deliveries(MP)[1].content["page"],
        "pages/index/index?id=42"
    );
    assert_eq!(s.stats(MP).sends_rejected.get(&41030), Some(&1));
}

#[tokio::test]
async fn subscribe_with_oa_token_48001() {
    let s = Sim::demo().await;
    let oa = s.token(OA, OA_SECRET).await;
    assert_err(&s.subscribe_send(&oa, &sub_body(USER)).await, 48001);
    assert_eq!(s.stats(MP).deliveries, 0);
}

#[tokio::test]
async fn subscribe_daily_cap_45009() {
    let s = Sim::demo().await;
    s.h.update_app(MP, |a| a.send_daily_limit = Some(2));
    s.align_day();
    let t = s.token(MP, MP_SECRET).await;
    assert_ok(&s.subscribe_send(&t, &sub_body("oUser_0001")).await);
    assert_ok(&s.subscribe_send(&t, &sub_body("oUser_0002")).await);
    assert_err(&s.subscribe_send(&t, &sub_body("oUser_0003")).await, 45009);
    // The refused send did not use the user's credit.
    s.advance_secs(86_400);
    let t = s.token(MP, MP_SECRET).await;
    assert_ok(&s.subscribe_send(&t, &sub_body("oUser_0003")).await);
    assert_eq!(s.stats(MP).deliveries, 3);
}
