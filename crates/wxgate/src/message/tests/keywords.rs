//! Keyword rules (`wechat-api.md` §4.2 for MP and OA category templates, §3.2 for legacy OA
//! templates), each just inside and just outside its limit.

use super::*;

/// A subscribe keyword that must be accepted and sent unchanged.
fn mp_ok(key: &str, value: &str) {
    let p = send(&mp(), subscribe(key, value, false))
        .unwrap_or_else(|e| panic!("{key}={value:?} refused: {e}"));
    assert_eq!(sent(&p, key), value, "{key}");
}

/// A subscribe keyword that must be refused with `rule`, with or without `truncate`.
fn mp_bad(key: &str, value: &str, rule: &'static str) {
    for truncate in [false, true] {
        let got = problems(&mp(), subscribe(key, value, truncate));
        assert_eq!(
            got,
            one(&format!("data.{key}"), rule),
            "{key}={value:?} truncate={truncate}"
        );
    }
}

#[test]
fn thing_is_20_characters_counted_as_characters_not_bytes() {
    mp_ok("thing1", &"一".repeat(20)); // 60 bytes
    mp_ok("thing1", "Order #12, 2 items!");
    let long = "一".repeat(21);
    assert_eq!(
        problems(&mp(), subscribe("thing1", &long, false)),
        one("data.thing1", "too_long")
    );
    let cut = send(&mp(), subscribe("thing1", &long, true)).unwrap();
    assert_eq!(sent(&cut, "thing1"), format!("{}…", "一".repeat(19)));
    assert_eq!(sent(&cut, "thing1").chars().count(), 20);
}

#[test]
fn too_long_message_names_the_limit_and_the_length() {
    let e = send(&mp(), subscribe("thing1", &"a".repeat(23), false)).unwrap_err();
    let m = &e.errors[0].message;
    assert!(
        m.contains("at most 20 characters") && m.contains("has 23"),
        "{m}"
    );
    assert!(m.contains("\"truncate\": true"), "{m}");
    assert_eq!(e.to_string(), format!("data.thing1: {m} (too_long)"));
}

#[test]
fn control_characters_are_refused_even_with_truncate() {
    mp_bad("thing1", "line\nbreak", "control_character");
    mp_bad("phrase2", "配\t送", "control_character");
}

#[test]
fn empty_values_are_refused() {
    mp_bad("thing1", "", "required");
    mp_bad("number2", "", "required");
    mp_bad("custom_type3", "", "required");
}

#[test]
fn number_is_up_to_32_digits_with_an_optional_decimal_point() {
    mp_ok("number1", &"9".repeat(32));
    mp_ok("number1", &format!("{}.5", "9".repeat(31)));
    mp_ok("number1", "0.25");
    mp_bad("number1", &"9".repeat(33), "too_long");
    mp_bad("number1", &format!("{}.5", "9".repeat(32)), "too_long");
    mp_bad("number1", "12a", "not_a_number");
    mp_bad("number1", "-3", "not_a_number");
    mp_bad("number1", "1,000", "not_a_number");
}

#[test]
fn letter_is_up_to_32_ascii_letters() {
    mp_ok("letter1", &"Ab".repeat(16));
    mp_bad("letter1", &"a".repeat(33), "too_long");
    mp_bad("letter1", "abc1", "not_letters");
    mp_bad("letter1", "中", "not_letters");
}

#[test]
fn symbol_is_up_to_5_symbols() {
    mp_ok("symbol1", "!@#$%");
    mp_ok("symbol1", "，。！？…"); // 5 characters, 15 bytes
    mp_bad("symbol1", "!@#$%^", "too_long");
    mp_bad("symbol1", "a!", "not_symbols");
}

#[test]
fn character_string_is_32_ascii_characters_without_chinese() {
    mp_ok("character_string1", &"A1-_".repeat(8));
    mp_bad("character_string1", &"a".repeat(33), "too_long");
    // The 47003 seen for data.character_string21: Chinese is not allowed.
    mp_bad("character_string21", "订单123", "not_ascii");
}

#[test]
fn time_and_date() {
    mp_ok("time1", "15:01");
    mp_ok("time1", "2019年10月1日 15:01");
    mp_ok("time1", "2019年10月1日 15:01~16:00");
    mp_bad("time1", "25:00", "not_a_time");
    mp_bad("time1", "3pm", "not_a_time");
    mp_ok("date2", "2019年10月1日");
    mp_ok("date2", "2019-12-25 09:42");
    mp_bad("date2", "15:01", "not_a_date");
    mp_bad("date2", "2019-02-30", "not_a_date");
}

#[test]
fn amount_is_a_currency_sign_and_up_to_10_digits() {
    mp_ok("amount1", "¥99.00");
    mp_ok("amount1", "1234567890元");
    mp_ok("amount1", "￥12345678.90");
    mp_bad("amount1", "¥12345678901", "too_long");
    mp_bad("amount1", "99 dollars", "not_an_amount");
}

#[test]
fn phone_number_is_17_digits_and_symbols() {
    mp_ok("phone_number1", "+86-0766-66888866"); // 17
    mp_bad("phone_number1", "+86-0766-668888660", "too_long");
    mp_bad("phone_number1", "call 110", "not_a_phone_number");
}

#[test]
fn car_number_is_8_characters() {
    mp_ok("car_number1", "粤A8Z888挂");
    mp_ok("car_number1", "粤AD12345"); // 8, new-energy plate
    mp_bad("car_number1", "粤AD123456", "too_long");
    mp_bad("car_number1", "粤A-8888", "not_a_car_number");
}

#[test]
fn name_is_10_chinese_or_20_other_characters() {
    mp_ok("name1", &"张".repeat(10));
    mp_ok("name1", &"a".repeat(20));
    mp_ok("name1", "John O'Neil-Smith");
    mp_bad_unless_truncated("name1", &"张".repeat(11), 10);
    mp_bad_unless_truncated("name1", &"a".repeat(21), 20);
    // Mixed text counts as Chinese: 11 characters with one Chinese is over 10.
    mp_bad_unless_truncated("name1", "张abcdefghij", 10);
}

fn mp_bad_unless_truncated(key: &str, value: &str, limit: usize) {
    assert_eq!(
        problems(&mp(), subscribe(key, value, false)),
        one(&format!("data.{key}"), "too_long")
    );
    let cut = sent(&send(&mp(), subscribe(key, value, true)).unwrap(), key);
    assert_eq!(cut.chars().count(), limit, "{cut}");
    assert!(cut.ends_with('…'));
}

#[test]
fn phrase_is_up_to_5_chinese_characters_only() {
    mp_ok("phrase1", "配送中");
    mp_ok("phrase1", "五个字以内");
    mp_bad("phrase1", "六个字的短语", "too_long");
    mp_bad("phrase1", "ok", "not_chinese");
    mp_bad("phrase1", "配送中!", "not_chinese");
}

#[test]
fn types_without_published_rules_pass() {
    mp_ok("enum1", "任意值 any value");
    mp_ok("short_thing1", &"长".repeat(40));
    // Types missing from the doc's table are live in the MP admin: not refused.
    mp_ok("some_new_type4", &"x".repeat(100));
}

#[test]
fn the_doc_example_passes() {
    // §4.1's request body.
    let p = send(
        &mp(),
        json!({"type":"subscribe","to":"o1","template_id":"T","page":"index?foo=bar",
               "miniprogram_state":"formal","lang":"zh_CN",
               "data":{"phrase3":"审核通过","name1":"订阅","date2":"2019-12-25 09:42"}}),
    )
    .unwrap();
    assert_eq!(sent(&p, "phrase3"), "审核通过");
}

#[test]
fn keyword_names_are_a_type_and_a_number() {
    for bad in ["Thing1", "thing", "1thing", "thing-1", "thing1a"] {
        let got = problems(&mp(), subscribe(bad, "x", false));
        assert_eq!(
            got,
            one(&format!("data.{bad}"), "invalid_keyword_name"),
            "{bad}"
        );
    }
    let e = send(&mp(), subscribe("thing1.DATA", "x", false)).unwrap_err();
    assert_eq!(pairs(&e), one("data.thing1.DATA", "invalid_keyword_name"));
    assert!(
        e.errors[0].message.contains("without .DATA"),
        "{}",
        e.errors[0].message
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let body = json!({"type":"subscribe","to":"o1","template_id":"T",
        "data":{"thing1":"x".repeat(21),"number2":"abc","phrase3":"ok"}});
    assert_eq!(
        problems(&mp(), body),
        vec![
            ("data.number2".to_owned(), "not_a_number"),
            ("data.phrase3".to_owned(), "not_chinese"),
            ("data.thing1".to_owned(), "too_long"),
        ]
    );
}

// ---- OA templates (§3.2) ----

#[test]
fn legacy_keywords_are_cut_to_20_characters_by_us_as_by_wechat() {
    let twenty = "巧".repeat(20);
    let p = send(&oa(), template("keyword1", &twenty, false)).unwrap();
    assert_eq!(sent(&p, "keyword1"), twenty);
    // No "truncate" needed: WeChat itself cuts legacy keywords.
    let p = send(&oa(), template("keyword1", &"巧".repeat(21), false)).unwrap();
    assert_eq!(sent(&p, "keyword1"), format!("{}…", "巧".repeat(19)));
    let p = send(&oa(), template("productType", &"a".repeat(30), false)).unwrap();
    assert_eq!(sent(&p, "productType").chars().count(), 20);
}

#[test]
fn first_and_remark_pass_untouched() {
    let long = "说明".repeat(30);
    let p = send(&oa(), template("remark", &long, false)).unwrap();
    assert_eq!(sent(&p, "remark"), long);
    let p = send(&oa(), template("first", "", false)).unwrap();
    assert_eq!(sent(&p, "first"), "");
}

#[test]
fn category_template_keywords_follow_the_subscribe_rules() {
    let got = problems(&oa(), template("thing2", &"x".repeat(21), false));
    assert_eq!(got, one("data.thing2", "too_long"));
    let got = problems(&oa(), template("character_string21", "订单", true));
    assert_eq!(got, one("data.character_string21", "not_ascii"));
    let p = send(&oa(), template("thing2", &"x".repeat(21), true)).unwrap();
    assert_eq!(sent(&p, "thing2"), format!("{}…", "x".repeat(19)));
    assert!(send(&oa(), template("const3", "", false)).is_ok());
}

#[test]
fn oa_doc_example_passes() {
    // §3.1's request body.
    let p = send(
        &oa(),
        json!({"type":"template","to":"OPENID","template_id":"ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",
               "data":{"keyword1":"巧克力","amount2":"39.8元","time3":"2014年9月22日"}}),
    )
    .unwrap();
    assert_eq!(sent(&p, "amount2"), "39.8元");
}

#[test]
fn oa_keyword_names_are_identifiers() {
    let got = problems(&oa(), template("key word", "x", false));
    assert_eq!(got, one("data.key word", "invalid_keyword_name"));
    let got = problems(&oa(), template("keyword1.DATA", "x", false));
    assert_eq!(got, one("data.keyword1.DATA", "invalid_keyword_name"));
}
