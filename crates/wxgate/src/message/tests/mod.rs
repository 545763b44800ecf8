//! Tests of the message module: one file per area, shared helpers here.

mod bodies;
mod campaign;
mod csv;
mod keywords;
mod wecom;

use secrecy::SecretString;
use serde_json::{Value, json};

use super::*;
use crate::apps::{App, Source};
use crate::config::{AppConfig, AppKind, TokenApi};

fn app(kind: AppKind) -> App {
    let config = AppConfig {
        id: "demo".into(),
        kind,
        appid: (kind != AppKind::Wecom).then(|| "wx0123456789abcdef".into()),
        corpid: (kind == AppKind::Wecom).then(|| "ww0123456789abcdef".into()),
        secret: SecretString::from("s3cret"),
        agentid: (kind == AppKind::Wecom).then_some(1000002),
        token_api: TokenApi::Stable,
        daily_fetch_budget: None,
        proxy_accepts_secret: false,
    };
    App::new(config, Source::Config).expect("a valid test app")
}

fn oa() -> App {
    app(AppKind::OfficialAccount)
}
fn mp() -> App {
    app(AppKind::MiniProgram)
}
fn wecom() -> App {
    app(AppKind::Wecom)
}

/// `prepare` on a JSON body (with `app` added), without a message id.
fn send(app: &App, body: Value) -> Result<Prepared, ValidationError> {
    send_as(app, body, None)
}

/// `prepare` on a JSON body (with `app` added) for a message stored as `id`.
fn send_as(app: &App, mut body: Value, id: Option<&str>) -> Result<Prepared, ValidationError> {
    body["app"] = json!("demo");
    let req: MessageRequest = serde_json::from_value(body).expect("request parses");
    prepare(app, req, id)
}

/// The (field, rule) pairs of a refused message; panics if it was accepted.
fn problems(app: &App, body: Value) -> Vec<(String, &'static str)> {
    match send(app, body) {
        Ok(p) => panic!("accepted: {}", p.body),
        Err(e) => pairs(&e),
    }
}

fn pairs(e: &ValidationError) -> Vec<(String, &'static str)> {
    e.errors.iter().map(|f| (f.field.clone(), f.rule)).collect()
}

fn one(field: &str, rule: &'static str) -> Vec<(String, &'static str)> {
    vec![(field.to_owned(), rule)]
}

/// An MP subscribe message with one keyword.
fn subscribe(key: &str, value: &str, truncate: bool) -> Value {
    json!({"type":"subscribe","to":"o1","template_id":"T","data":{key: value},"truncate":truncate})
}

/// An OA template message with one keyword.
fn template(key: &str, value: &str, truncate: bool) -> Value {
    json!({"type":"template","to":"o1","template_id":"T","data":{key: value},"truncate":truncate})
}

/// The value sent for keyword `key`.
fn sent(p: &Prepared, key: &str) -> String {
    p.body_value()["data"][key]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no data.{key} in {}", p.body))
        .to_owned()
}
