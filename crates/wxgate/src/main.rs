//! The `wxgate` binary: parse the command line, load the config, set up logging, dispatch.

use std::process::ExitCode;

use wxgate::cli::{self, Command};
use wxgate::config::{self, LogFormat};
use wxgate::{crypto, telemetry};

/// mimalloc instead of glibc's malloc: the send path allocates and frees small buffers from
/// many threads, where glibc spent ~12 % of the gateway's CPU (bench/README.md, push_campaign).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = cli::parse();
    match cli.command {
        // These two need no gateway config, so a broken wxgate.toml cannot block them.
        Command::GenKey => {
            println!("{}", crypto::generate_key_hex());
            Ok(ExitCode::SUCCESS)
        }
        Command::Campaign(cli::CampaignCommand::Send(args)) => {
            runtime()?.block_on(wxgate::campaign_cli::send(args))
        }
        Command::Sim(args) => {
            telemetry::init(LogFormat::Text);
            runtime()?.block_on(wxsim::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { .. } | Command::Serve { .. } => {
            let cfg = match config::load(cli.config.as_deref()) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            telemetry::init(cfg.log_format);
            if let Command::CheckConfig { connect } = cli.command {
                println!("{}", serde_json::to_string_pretty(&cfg.redacted())?);
                if connect {
                    return runtime()?.block_on(wxgate::startup::check_servers(&cfg));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let Command::Serve { demo } = cli.command else {
                unreachable!()
            };
            runtime()?.block_on(serve(cfg, demo))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Run the gateway until Ctrl-C or SIGTERM, then stop gracefully.
async fn serve(mut cfg: config::Config, demo: bool) -> anyhow::Result<()> {
    let demo_parts = if demo {
        Some(wxgate::demo::prepare(&mut cfg).await?)
    } else {
        None
    };
    let gateway = wxgate::startup::start(cfg, wxgate::clock::Clock::new()).await?;
    if let Some((sim, admin)) = &demo_parts {
        println!(
            "{}",
            wxgate::demo::banner(&gateway.base_url(), &sim.base_url(), admin)
        );
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = ctrl_c => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
