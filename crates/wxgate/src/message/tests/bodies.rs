//! Exact WeChat bodies, the message type against the app kind, fields of other types, and how
//! the API input is read.

use super::*;

#[test]
fn template_body_is_wechat_shaped() {
    let p = send(
        &oa(),
        json!({"type":"template","to":"o1","template_id":"T1","url":"https://example.com/o/1",
               "miniprogram":{"appid":"wxa","pagepath":"index?foo=bar"},
               "data":{"keyword1":"巧克力","amount2":"39.8元"}}),
    )
    .unwrap();
    assert_eq!(p.kind, MessageType::Template);
    assert_eq!(p.to, "o1");
    assert_eq!(p.template, "T1");
    assert_eq!(
        p.body_value(),
        json!({"touser":"o1","template_id":"T1","url":"https://example.com/o/1",
               "miniprogram":{"appid":"wxa","pagepath":"index?foo=bar"},
               "data":{"keyword1":{"value":"巧克力"},"amount2":{"value":"39.8元"}}})
    );
}

#[test]
fn client_msg_id_is_added_to_a_template_body() {
    let p = send(&oa(), template("keyword1", "x", false)).unwrap();
    assert!(p.body_value().get("client_msg_id").is_none());
    let with_id = send_as(&oa(), template("keyword1", "x", false), Some("m-42")).unwrap();
    let sent = with_id.body_value();
    assert_eq!(sent["client_msg_id"], "m-42");
    assert_eq!(sent.as_object().unwrap().len(), 4);
    // Everything else is the body without the id.
    let mut rest = sent.clone();
    rest.as_object_mut().unwrap().remove("client_msg_id");
    assert_eq!(rest, p.body_value());
    // A subscribe message has no client_msg_id, whatever the id.
    let mut sub = template("thing1", "x", false);
    sub["type"] = json!("subscribe");
    let s = send_as(&mp(), sub, Some("m-42")).unwrap();
    assert!(s.body_value().get("client_msg_id").is_none());
}

#[test]
fn subscribe_body_always_names_state_and_lang() {
    let p = send(&mp(), subscribe("thing1", "到货", false)).unwrap();
    assert_eq!(
        p.body_value(),
        json!({"touser":"o1","template_id":"T","miniprogram_state":"formal","lang":"zh_CN",
               "data":{"thing1":{"value":"到货"}}})
    );
    let p = send(
        &mp(),
        json!({"type":"subscribe","to":"o1","template_id":"T","data":{"thing1":"x"},
               "page":"pages/a?b=1","miniprogram_state":"trial","lang":"en_US"}),
    )
    .unwrap();
    assert_eq!(p.body_value()["page"], "pages/a?b=1");
    assert_eq!(p.body_value()["miniprogram_state"], "trial");
    assert_eq!(p.body_value()["lang"], "en_US");
}

#[test]
fn wecom_body_is_wechat_shaped_with_duplicate_check_on() {
    let p = send(
        &wecom(),
        json!({"type":"wecom","to":"u1|u2","toparty":[1, 2],"totag":"7","msgtype":"text",
               "text":{"content":"hello"},"safe":0}),
    )
    .unwrap();
    assert_eq!(p.kind, MessageType::Wecom);
    assert_eq!(p.to, "u1|u2 party:1|2 tag:7");
    assert_eq!(p.template, "text");
    assert_eq!(
        p.body_value(),
        json!({"touser":"u1|u2","toparty":"1|2","totag":"7","msgtype":"text","agentid":1000002,
               "text":{"content":"hello"},"safe":0,
               "enable_duplicate_check":1,"duplicate_check_interval":1800})
    );
}

#[test]
fn message_type_must_match_the_app_kind() {
    for (app, body, needs) in [
        (mp(), template("keyword1", "x", false), "official_account"),
        (wecom(), subscribe("thing1", "x", false), "mini_program"),
        (
            oa(),
            json!({"type":"wecom","to":"u1","msgtype":"text","text":{"content":"x"}}),
            "wecom",
        ),
    ] {
        let e = send(&app, body).unwrap_err();
        assert_eq!(pairs(&e), one("type", "wrong_app_kind"));
        assert!(
            e.errors[0].message.contains(needs),
            "{}",
            e.errors[0].message
        );
    }
    assert_eq!(MessageType::Subscribe.app_kind(), AppKind::MiniProgram);
    assert_eq!(MessageType::Wecom.to_string(), "wecom");
}

#[test]
fn fields_of_another_type_are_not_allowed() {
    let got = problems(
        &oa(),
        json!({"type":"template","to":"o1","template_id":"T","data":{"keyword1":"x"},
               "page":"p","lang":"en_US","toparty":"1","text":{"content":"x"}}),
    );
    assert_eq!(
        got,
        vec![
            ("page".to_owned(), "not_allowed"),
            ("lang".to_owned(), "not_allowed"),
            ("text".to_owned(), "not_allowed"),
            ("toparty".to_owned(), "not_allowed"),
        ]
    );
    let got = problems(
        &wecom(),
        json!({"type":"wecom","to":"u1","msgtype":"text","text":{"content":"x"},
               "template_id":"T","data":{"thing1":"x"}}),
    );
    assert_eq!(
        got,
        vec![
            ("template_id".to_owned(), "not_allowed"),
            ("data".to_owned(), "not_allowed")
        ]
    );
}

#[test]
fn required_fields_of_keyword_messages() {
    let got = problems(&mp(), json!({"type":"subscribe"}));
    assert_eq!(
        got,
        vec![
            ("template_id".to_owned(), "required"),
            ("to".to_owned(), "required"),
            ("data".to_owned(), "required"),
        ]
    );
    let got = problems(
        &oa(),
        json!({"type":"template","to":"o1","template_id":"T","data":{},
                                     "miniprogram":{"appid":""}}),
    );
    assert_eq!(
        got,
        vec![
            ("miniprogram.appid".to_owned(), "required"),
            ("data".to_owned(), "required")
        ]
    );
}

#[test]
fn openid_is_one_id_without_spaces() {
    let body =
        |to: Value| json!({"type":"template","to":to,"template_id":"T","data":{"keyword1":"x"}});
    assert_eq!(
        problems(&oa(), body(json!("o1 "))),
        one("to", "invalid_recipient")
    );
    assert_eq!(
        problems(&oa(), body(json!("o1|o2"))),
        one("to", "invalid_recipient")
    );
    assert_eq!(
        problems(&oa(), body(json!(["o1", "o2"]))),
        one("to", "invalid_recipient")
    );
    let got = problems(
        &oa(),
        json!({"type":"template","to":"o1","template_id":"T x","data":{"keyword1":"x"}}),
    );
    assert_eq!(got, one("template_id", "invalid_template_id"));
}

#[test]
fn unknown_and_mistyped_fields_fail_to_parse() {
    let parse = |v: Value| {
        serde_json::from_value::<MessageRequest>(v)
            .unwrap_err()
            .to_string()
    };
    let e = parse(json!({"app":"a","type":"template","to":"o1","tempalte_id":"T","data":{}}));
    assert!(e.contains("unknown field `tempalte_id`"), "{e}");
    let e = parse(json!({"type":"template","to":"o1","template_id":"T","data":{}}));
    assert!(e.contains("missing field `app`"), "{e}");
    let e = parse(json!({"app":"a","type":"sms","to":"o1"}));
    assert!(e.contains("unknown variant `sms`"), "{e}");
    let e = parse(
        json!({"app":"a","type":"subscribe","to":"o1","template_id":"T",
                         "data":{"number1":42}}),
    );
    assert!(e.contains("expected a string"), "{e}");
    let e = parse(json!({"app":"a","type":"subscribe","to":"o1","lang":"zh-CN"}));
    assert!(e.contains("unknown variant `zh-CN`"), "{e}");
    let e = parse(
        json!({"app":"a","type":"template","to":"o1","miniprogram":{"appid":"x","path":"p"}}),
    );
    assert!(e.contains("unknown field `path`"), "{e}");
    let e = parse(json!({"app":"a","type":"wecom","msgtype":"sms"}));
    assert!(e.contains("unknown variant `sms`"), "{e}");
}

#[test]
fn app_and_send_at_are_read_but_not_checked_here() {
    let req: MessageRequest =
        serde_json::from_value(json!({"app":"shop","send_at":"2030-01-01T00:00:00Z",
        "type":"template","to":"o1","template_id":"T","data":{"keyword1":"x"}}))
        .unwrap();
    assert_eq!(req.app, "shop");
    assert_eq!(req.send_at.as_deref(), Some("2030-01-01T00:00:00Z"));
    let req: CampaignRequest = serde_json::from_value(json!({"app":"shop","type":"template",
        "template_id":"T","recipients":[{"to":"o1"}]}))
    .unwrap();
    assert_eq!(req.recipients.len(), 1);
    let e =
        serde_json::from_value::<CampaignRequest>(json!({"app":"a","type":"template","to":"o1",
        "recipients":[]}))
        .unwrap_err();
    assert!(e.to_string().contains("per recipient"), "{e}");
}

#[test]
fn data_is_an_object_of_unique_string_keywords() {
    let parse = |data: Value| {
        let body = json!({"app":"a","type":"subscribe","to":"o1","template_id":"T","data":data});
        serde_json::from_value::<MessageRequest>(body).map(|r| r.content.data.unwrap())
    };
    // Input order is kept (json! sorts keys, so this reads a raw body).
    let raw = r#"{"app":"a","type":"subscribe","to":"o1","template_id":"T","data":{"thing2":"b","thing1":"a"}}"#;
    let data = serde_json::from_str::<MessageRequest>(raw)
        .unwrap()
        .content
        .data
        .unwrap();
    assert_eq!(
        data.iter().collect::<Vec<_>>(),
        [("thing2", "b"), ("thing1", "a")]
    );
    assert_eq!(
        parse(json!({"thing1":"a"})).unwrap().get("thing1"),
        Some("a")
    );
    // serde_json keeps the last of repeated keys in a Value; a raw body keeps both.
    let raw = r#"{"app":"a","type":"subscribe","to":"o1","template_id":"T","data":{"thing1":"a","thing1":"b"}}"#;
    let e = serde_json::from_str::<MessageRequest>(raw)
        .unwrap_err()
        .to_string();
    assert!(e.contains("keyword `thing1` appears twice"), "{e}");
    let many: serde_json::Map<String, Value> = (0..=MAX_KEYWORDS)
        .map(|i| (format!("thing{i}"), json!("x")))
        .collect();
    let e = parse(Value::Object(many)).unwrap_err().to_string();
    assert!(e.contains("more than 32 keywords"), "{e}");
}

#[test]
fn values_are_escaped_and_defaults_come_before_overrides() {
    let p = send(
        &wecom(),
        json!({"type":"wecom","to":"u1","msgtype":"text","text":{"content":"a \"quote\"\n\\ <a href=\"x\">"}}),
    )
    .unwrap();
    assert_eq!(
        p.body_value()["text"]["content"],
        "a \"quote\"\n\\ <a href=\"x\">"
    );
    let c = prepare_campaign(
        &mp(),
        serde_json::from_value(json!({"app":"a","type":"subscribe","template_id":"T",
            "data":{"thing1":"d1","thing2":"d2"},"recipients":[{"to":"o\"1","data":{"thing3":"r3","thing1":"r1"}}]}))
        .unwrap(),
    )
    .unwrap();
    let body = &c.messages[0].body;
    assert!(
        body.starts_with(r#"{"touser":"o\"1","template_id":"T","#),
        "{body}"
    );
    assert!(
        body.contains(
            r#""data":{"thing2":{"value":"d2"},"thing1":{"value":"r1"},"thing3":{"value":"r3"}}"#
        ),
        "{body}"
    );
}
