//! wxgate: a self-hosted gateway that owns WeChat access tokens and message delivery.

pub mod api;
pub mod apps;
pub mod campaign_cli;
pub mod cli;
pub mod clock;
pub mod config;
pub mod coord;
pub mod crypto;
pub mod demo;
pub mod message;
pub mod metrics;
pub mod proxy;
pub mod push;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod wechat;
