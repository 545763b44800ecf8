//! Integration tests of the gateway's HTTP API against the WeChat simulator. One binary, so the
//! workspace links once.

mod apps;
mod auth;
mod campaign_idempotency;
mod campaign_stream;
mod check_config;
mod fleet;
mod helpers;
mod logs;
mod proxy;
mod push;
mod sdk_clients;
mod slow_app;
mod token_failures;
mod tokens;
