//! `wxsim`: run the WeChat simulator by hand (`wxsim --listen 127.0.0.1:9000`).

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "A faithful WeChat API simulator for tests, demos and benchmarks"
)]
struct Cli {
    #[command(flatten)]
    sim: wxsim::SimArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    wxsim::run(Cli::parse().sim).await
}
