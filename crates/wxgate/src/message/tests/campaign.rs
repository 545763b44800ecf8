//! Campaigns: defaults merged with per-recipient data, duplicates dropped and counted, errors
//! named by recipient, all or nothing.

use super::*;

fn campaign(app: &App, mut body: Value) -> Result<PreparedCampaign, ValidationError> {
    body["app"] = json!("demo");
    prepare_campaign(app, serde_json::from_value(body).expect("campaign parses"))
}

fn campaign_problems(app: &App, body: Value) -> Vec<(String, &'static str)> {
    match campaign(app, body) {
        Ok(c) => panic!("accepted {} messages", c.messages.len()),
        Err(e) => pairs(&e),
    }
}

#[test]
fn recipient_data_overrides_the_defaults() {
    let c = campaign(
        &mp(),
        json!({"type":"subscribe","template_id":"T","page":"index","data":{"thing1":"默认","phrase2":"已发货"},
               "recipients":[{"to":"o1"},{"to":"o2","data":{"thing1":"专属","number3":"42"}}]}),
    )
    .unwrap();
    assert_eq!(
        c.spec,
        CampaignSpec {
            kind: MessageType::Subscribe,
            template: "T".into()
        }
    );
    assert_eq!(c.messages.len(), 2);
    assert_eq!(
        c.messages[0].body_value(),
        json!({"touser":"o1","template_id":"T","page":"index","miniprogram_state":"formal","lang":"zh_CN",
               "data":{"thing1":{"value":"默认"},"phrase2":{"value":"已发货"}}})
    );
    assert_eq!(
        c.messages[1].body_value()["data"],
        json!({"thing1":{"value":"专属"},"phrase2":{"value":"已发货"},"number3":{"value":"42"}})
    );
    assert_eq!(
        (c.messages[1].to.as_str(), c.messages[1].template.as_str()),
        ("o2", "T")
    );
}

#[test]
fn errors_name_the_recipient_and_the_field() {
    let got = campaign_problems(
        &mp(),
        json!({"type":"subscribe","template_id":"T","data":{"number2":"12x"},
               "recipients":[{"to":"o1","data":{"number2":"1"}},{"to":"o2","data":{"thing1":"x".repeat(21)}},
                             {"to":""},{"to":"o4","data":{"phrase3":"ok"}}]}),
    );
    assert_eq!(
        got,
        vec![
            ("data.number2".to_owned(), "not_a_number"),
            ("recipients[1].data.thing1".to_owned(), "too_long"),
            ("recipients[2].to".to_owned(), "required"),
            ("recipients[3].data.phrase3".to_owned(), "not_chinese"),
        ]
    );
}

#[test]
fn truncate_applies_to_every_recipient() {
    let c = campaign(
        &mp(),
        json!({"type":"subscribe","template_id":"T","truncate":true,
               "recipients":[{"to":"o1","data":{"thing1":"x".repeat(30)}}]}),
    )
    .unwrap();
    assert_eq!(
        c.messages[0].body_value()["data"]["thing1"]["value"],
        format!("{}…", "x".repeat(19))
    );
}

#[test]
fn every_recipient_needs_keywords_from_somewhere() {
    let got = campaign_problems(
        &mp(),
        json!({"type":"subscribe","template_id":"T","recipients":[{"to":"o1","data":{"thing1":"x"}},{"to":"o2"}]}),
    );
    assert_eq!(got, one("recipients[1].data", "required"));
    let got = campaign_problems(
        &mp(),
        json!({"type":"subscribe","template_id":"T","data":{"thing1":"x"},"recipients":[]}),
    );
    assert_eq!(got, one("recipients", "required"));
}

#[test]
fn errors_are_capped_and_counted() {
    let recipients: Vec<Value> = (0..30)
        .map(|i| json!({"to":format!("o{i}"),"data":{"number1":"x"}}))
        .collect();
    let e = campaign(
        &mp(),
        json!({"type":"subscribe","template_id":"T","recipients":recipients}),
    )
    .unwrap_err();
    assert_eq!(e.errors.len(), MAX_ERRORS);
    assert_eq!(e.more, 10);
    assert_eq!(e.total(), 30);
    assert_eq!(e.errors[19].field, "recipients[19].data.number1");
    let line = e.to_string();
    assert!(
        line.starts_with("recipients[0].data.number1: ")
            && line.ends_with("; and 29 more problems"),
        "{line}"
    );
}

#[test]
fn kind_mismatch_stops_a_campaign_at_once() {
    let got = campaign_problems(
        &oa(),
        json!({"type":"subscribe","template_id":"T","recipients":[{"to":""}]}),
    );
    assert_eq!(got, one("type", "wrong_app_kind"));
}

#[test]
fn wecom_campaign_sends_one_message_per_userid() {
    let c = campaign(
        &wecom(),
        json!({"type":"wecom","msgtype":"markdown","markdown":{"content":"**hi**"},
               "recipients":[{"to":"Alice"},{"to":"bob"},{"to":"alice"}]}),
    )
    .unwrap();
    assert_eq!(c.spec.template, "markdown");
    // Repeats ("alice" after "Alice") are dropped by the store, not here.
    assert_eq!(c.messages.len(), 3);
    assert_eq!(
        c.messages[1].body_value(),
        json!({"touser":"bob","msgtype":"markdown","agentid":1000002,"markdown":{"content":"**hi**"},
               "enable_duplicate_check":1,"duplicate_check_interval":1800})
    );
    let got = campaign_problems(
        &wecom(),
        json!({"type":"wecom","msgtype":"text","text":{"content":"x"},
               "recipients":[{"to":"@all"},{"to":"a|b"},{"to":"c","data":{"thing1":"x"}}]}),
    );
    assert_eq!(
        got,
        vec![
            ("recipients[0].to".to_owned(), "invalid_recipient"),
            ("recipients[1].to".to_owned(), "invalid_recipient"),
            ("recipients[2].data".to_owned(), "not_allowed"),
        ]
    );
}

#[test]
fn csv_recipients_name_their_line() {
    let recipients =
        parse_csv(b"to,thing1\no1,ok\n\"o2\",\"two\nlines\"\no3,too long for a thing keyword\n")
            .unwrap();
    let req = CampaignRequest {
        app: "demo".into(),
        send_at: None,
        content: serde_json::from_value(json!({"type":"subscribe","template_id":"T"})).unwrap(),
        recipients,
    };
    let e = prepare_campaign(&mp(), req).unwrap_err();
    assert_eq!(
        pairs(&e),
        vec![
            ("recipients[1].data.thing1".to_owned(), "control_character"),
            ("recipients[2].data.thing1".to_owned(), "too_long"),
        ]
    );
    assert!(
        e.errors[1].message.ends_with("(CSV line 5)"),
        "{}",
        e.errors[1].message
    );
}
