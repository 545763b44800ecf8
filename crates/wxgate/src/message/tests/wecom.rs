//! WeCom recipients (§5.1) and bodies (§5.2): limits in UTF-8 bytes, cut where WeChat cuts.

use super::*;

fn text_to(to: Value) -> Value {
    json!({"type":"wecom","to":to,"msgtype":"text","text":{"content":"hi"}})
}

fn with_body(msgtype: &str, body: Value, truncate: bool) -> Value {
    json!({"type":"wecom","to":"u1","msgtype":msgtype, msgtype: body, "truncate": truncate})
}

/// The checked body under the msgtype key.
fn wecom_ok(msgtype: &str, body: Value, truncate: bool) -> Value {
    let p = send(&wecom(), with_body(msgtype, body, truncate)).unwrap_or_else(|e| panic!("{e}"));
    p.body_value()[msgtype].clone()
}

fn wecom_bad(msgtype: &str, body: Value, truncate: bool) -> Vec<(String, &'static str)> {
    problems(&wecom(), with_body(msgtype, body, truncate))
}

fn ids(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn touser_takes_1000_userids() {
    assert!(send(&wecom(), text_to(json!(ids(1000, "u")))).is_ok());
    assert!(send(&wecom(), text_to(json!(ids(1000, "u").join("|")))).is_ok());
    assert_eq!(
        problems(&wecom(), text_to(json!(ids(1001, "u")))),
        one("to", "too_many_recipients")
    );
    // Duplicates are dropped before counting: WeChat sees 1000 distinct ids.
    let mut list = ids(1000, "u");
    list.push("u7".into());
    let p = send(&wecom(), text_to(json!(list))).unwrap();
    assert_eq!(
        p.body_value()["touser"]
            .as_str()
            .unwrap()
            .split('|')
            .count(),
        1000
    );
}

#[test]
fn toparty_and_totag_take_100_ids() {
    let body = |field: &str, n: usize| json!({"type":"wecom",field:ids(n, ""),"msgtype":"text","text":{"content":"hi"}});
    for field in ["toparty", "totag"] {
        assert!(send(&wecom(), body(field, 100)).is_ok(), "{field}");
        assert_eq!(
            problems(&wecom(), body(field, 101)),
            one(field, "too_many_recipients")
        );
    }
    let e = send(&wecom(), body("toparty", 101)).unwrap_err();
    assert!(e.errors[0].message.contains("101") && e.errors[0].message.contains("100"));
}

#[test]
fn at_all_is_alone() {
    let p = send(&wecom(), text_to(json!("@all"))).unwrap();
    assert_eq!(p.body_value()["touser"], "@all");
    assert_eq!(p.to, "@all");
    assert_eq!(
        problems(&wecom(), text_to(json!(["u1", "@all"]))),
        one("to", "invalid_id")
    );
    let got = problems(
        &wecom(),
        json!({"type":"wecom","to":"@all","toparty":"2","msgtype":"text","text":{"content":"x"}}),
    );
    assert_eq!(got, one("to", "conflicting_recipients"));
}

#[test]
fn id_lists_have_no_empty_or_joined_items() {
    assert_eq!(
        problems(&wecom(), text_to(json!("u1||u2"))),
        one("to", "empty_item")
    );
    assert_eq!(
        problems(&wecom(), text_to(json!("u1|"))),
        one("to", "empty_item")
    );
    assert_eq!(
        problems(&wecom(), text_to(json!(["u1|u2"]))),
        one("to", "invalid_id")
    );
    assert_eq!(
        problems(&wecom(), text_to(json!("u 1"))),
        one("to", "invalid_id")
    );
    assert_eq!(
        problems(&wecom(), text_to(json!(""))),
        one("to", "required")
    );
    assert_eq!(
        problems(
            &wecom(),
            json!({"type":"wecom","msgtype":"text","text":{"content":"x"}})
        ),
        one("to", "required")
    );
}

#[test]
fn text_over_2048_bytes_is_cut_as_wechat_cuts_it() {
    let at_limit = "a".repeat(2048);
    assert_eq!(
        wecom_ok("text", json!({"content": at_limit}), false)["content"],
        at_limit
    );
    // 683 Chinese characters = 2049 bytes: over the limit though far under 2048 characters.
    let over = "中".repeat(683);
    let cut = wecom_ok("text", json!({"content": over}), false)["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(cut.len() <= 2048 && cut.ends_with('…'), "{}", cut.len());
    assert_eq!(cut, format!("{}…", "中".repeat(681)));
    assert_eq!(
        wecom_bad("text", json!({"content": ""}), false),
        one("text.content", "required")
    );
}

#[test]
fn markdown_over_2048_bytes_is_refused_unless_truncate() {
    let at_limit = "中".repeat(682) + "ab"; // 2048 bytes
    assert_eq!(
        wecom_ok("markdown", json!({"content": at_limit}), false)["content"],
        at_limit
    );
    let over = "中".repeat(683);
    assert_eq!(
        wecom_bad("markdown", json!({"content": over}), false),
        one("markdown.content", "too_long")
    );
    let cut = wecom_ok("markdown", json!({"content": over}), true);
    assert!(cut["content"].as_str().unwrap().len() <= 2048);
}

#[test]
fn textcard_rules() {
    let card = |title: String, url: String, btntxt: &str| json!({"title":title,"description":"d","url":url,"btntxt":btntxt});
    let ok = wecom_ok(
        "textcard",
        card("t".repeat(128), "https://x".into(), "查看详情"),
        false,
    );
    assert_eq!(ok, card("t".repeat(128), "https://x".into(), "查看详情"));
    // Title over 128 bytes and btntxt over 4 characters are cut, as WeChat cuts them.
    let cut = wecom_ok(
        "textcard",
        card("标".repeat(43), "http://x".into(), "点击查看详情"),
        false,
    );
    assert_eq!(cut["title"], format!("{}…", "标".repeat(41)));
    assert_eq!(cut["btntxt"], "点击查…");
    assert_eq!(
        wecom_bad("textcard", json!({"title":"t","url":"https://x"}), false),
        one("textcard.description", "required")
    );
    assert_eq!(
        wecom_bad(
            "textcard",
            card("t".into(), "www.example.com".into(), "a"),
            false
        ),
        one("textcard.url", "invalid_url")
    );
    let long_url = format!("https://x/{}", "a".repeat(2040));
    assert_eq!(
        wecom_bad("textcard", card("t".into(), long_url, "a"), true),
        one("textcard.url", "too_long")
    );
}

#[test]
fn news_takes_1_to_8_articles() {
    let article = json!({"title":"t","url":"https://x","picurl":"https://x/p.png"});
    assert!(
        send(
            &wecom(),
            with_body("news", json!({"articles": vec![article.clone(); 8]}), false)
        )
        .is_ok()
    );
    assert_eq!(
        wecom_bad("news", json!({"articles": vec![article.clone(); 9]}), false),
        one("news.articles", "too_many_items")
    );
    assert_eq!(
        wecom_bad("news", json!({"articles": []}), false),
        one("news.articles", "too_few_items")
    );
    assert_eq!(
        wecom_bad("news", json!({}), false),
        one("news.articles", "required")
    );
    assert_eq!(
        wecom_bad("news", json!({"articles":[article, {"titel":"t"}]}), false),
        vec![
            ("news.articles[1].titel".to_owned(), "unknown_field"),
            ("news.articles[1].title".to_owned(), "required"),
        ]
    );
    let cut = wecom_ok(
        "news",
        json!({"articles":[{"title":"t","description":"d".repeat(513)}]}),
        false,
    );
    assert_eq!(
        cut["articles"][0]["description"].as_str().unwrap().len(),
        512
    );
}

#[test]
fn mpnews_author_and_safe() {
    let article = |author: &str| json!({"title":"t","thumb_media_id":"m","content":"<p>x</p>","author":author});
    let mpnews = |author: &str, safe: u8| json!({"type":"wecom","to":"u1","msgtype":"mpnews","mpnews":{"articles":[article(author)]},"safe":safe});
    assert!(send(&wecom(), mpnews(&"a".repeat(64), 2)).is_ok());
    assert_eq!(
        problems(&wecom(), mpnews(&"a".repeat(65), 0)),
        one("mpnews.articles[0].author", "too_long")
    );
    let got = problems(
        &wecom(),
        json!({"type":"wecom","to":"u1","msgtype":"text","text":{"content":"x"},"safe":2}),
    );
    assert_eq!(got, one("safe", "invalid_value"));
    let got = problems(
        &wecom(),
        json!({"type":"wecom","to":"u1","msgtype":"text","text":{"content":"x"},"safe":3}),
    );
    assert_eq!(got, one("safe", "invalid_value"));
}

#[test]
fn miniprogram_notice_limits() {
    let item = json!({"key":"k","value":"v"});
    let notice = |page: String, items: usize| json!({"appid":"wxa","page":page,"title":"t","emphasis_first_item":true,"content_item":vec![item.clone(); items]});
    assert!(
        send(
            &wecom(),
            with_body("miniprogram_notice", notice("p".repeat(1024), 10), false)
        )
        .is_ok()
    );
    assert_eq!(
        wecom_bad("miniprogram_notice", notice("p".repeat(1024), 11), false),
        one("miniprogram_notice.content_item", "too_many_items")
    );
    assert_eq!(
        wecom_bad("miniprogram_notice", notice("p".repeat(1025), 1), true),
        one("miniprogram_notice.page", "too_long")
    );
}

#[test]
fn template_card_needs_a_known_card_type() {
    let card = json!({"card_type":"text_notice","main_title":{"title":"t"},"card_action":{"type":1,"url":"https://x"}});
    assert_eq!(wecom_ok("template_card", card.clone(), false), card);
    assert_eq!(
        wecom_bad("template_card", json!({"main_title":{}}), false),
        one("template_card.card_type", "required")
    );
    assert_eq!(
        wecom_bad("template_card", json!({"card_type":"poster"}), false),
        one("template_card.card_type", "invalid_value")
    );
}

#[test]
fn media_and_body_shapes() {
    assert_eq!(
        wecom_ok("image", json!({"media_id":"MEDIA"}), false),
        json!({"media_id":"MEDIA"})
    );
    assert_eq!(
        wecom_bad("file", json!({}), false),
        one("file.media_id", "required")
    );
    assert_eq!(
        wecom_bad("text", json!("hi"), false),
        one("text", "not_an_object")
    );
    assert_eq!(
        wecom_bad("text", json!({"content": 5}), false),
        one("text.content", "not_a_string")
    );
}

#[test]
fn msgtype_and_its_body_go_together() {
    let got = problems(
        &wecom(),
        json!({"type":"wecom","to":"u1","text":{"content":"x"}}),
    );
    assert_eq!(got, one("msgtype", "required"));
    let got = problems(
        &wecom(),
        json!({"type":"wecom","to":"u1","msgtype":"markdown","text":{"content":"x"}}),
    );
    assert_eq!(
        got,
        vec![
            ("text".to_owned(), "not_allowed"),
            ("markdown".to_owned(), "required")
        ]
    );
}

#[test]
fn video_and_textcard_limits_at_the_edge() {
    let video = |title: String, description: String| json!({"media_id":"M","title":title,"description":description});
    let ok = wecom_ok("video", video("t".repeat(128), "d".repeat(512)), false);
    assert_eq!(ok, video("t".repeat(128), "d".repeat(512)));
    let cut = wecom_ok("video", video("t".repeat(129), "说".repeat(171)), false); // 129 B, 513 B
    assert_eq!(cut["title"].as_str().unwrap().len(), 128);
    assert_eq!(cut["description"], format!("{}…", "说".repeat(169)));
    let url = format!("https://x/{}", "a".repeat(2038)); // exactly 2048 bytes
    let card = json!({"title":"t","description":"d","url":url});
    assert_eq!(wecom_ok("textcard", card.clone(), false), card);
    let card = json!({"title":"t","description":"描".repeat(171),"url":"https://x"});
    let cut = wecom_ok("textcard", card, false);
    assert!(cut["description"].as_str().unwrap().len() <= 512);
}
