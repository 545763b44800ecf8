//! Command line: `wxgate [--config PATH] <command>`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "wxgate",
    version,
    about = "Self-hosted gateway for WeChat access tokens and message delivery"
)]
pub struct Cli {
    /// Config file (TOML). Default: ./wxgate.toml if it exists. WXGATE_* variables override it.
    #[arg(long, value_name = "PATH", env = "WXGATE_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Also start an in-process WeChat simulator and point the gateway at it.
        #[arg(long)]
        demo: bool,
    },
    /// Run the WeChat simulator (the same as the `wxsim` binary).
    Sim(wxsim::SimArgs),
    /// Print the merged configuration with secrets redacted, or say what is wrong with it.
    CheckConfig {
        /// Also connect to the database and Redis the config names, and say which refuses.
        #[arg(long)]
        connect: bool,
    },
    /// Print a new random master key (64 hex characters) for WXGATE_MASTER_KEY.
    GenKey,
    /// Campaigns against a running wxgate server.
    #[command(subcommand)]
    Campaign(CampaignCommand),
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Upload a CSV of recipients (a `to` column, one column per keyword), show progress until
    /// every message is final, then summarise: sent, failed by errcode, unknown, messages/s.
    Send(CampaignSend),
}

#[derive(Debug, clap::Args)]
pub struct CampaignSend {
    /// The wxgate server.
    #[arg(long, env = "WXGATE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An API key for the app (or the admin token).
    #[arg(long, env = "WXGATE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The app id in wxgate.
    #[arg(long)]
    pub app: String,
    /// template (Official Account) or subscribe (Mini Program).
    #[arg(long = "type", default_value = "template")]
    pub kind: String,
    #[arg(long)]
    pub template_id: String,
    /// The recipients.
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// Send later (RFC 3339), e.g. 2026-11-23T20:00:00+08:00.
    #[arg(long)]
    pub send_at: Option<String>,
    /// Cut over-long free-text values with "…" instead of refusing the campaign.
    #[arg(long)]
    pub truncate: bool,
    /// Return after the upload instead of following the campaign to its end.
    #[arg(long)]
    pub no_wait: bool,
}

/// Parses `std::env::args`; prints help or an error and exits on bad arguments.
pub fn parse() -> Cli {
    Cli::parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_commands() {
        let cli = Cli::try_parse_from(["wxgate", "--config", "x.toml", "serve", "--demo"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert!(matches!(cli.command, Command::Serve { demo: true }));
        let cli = Cli::try_parse_from(["wxgate", "sim"]).unwrap();
        assert!(
            matches!(cli.command, Command::Sim(a) if a.listen.port() == 9000 && a.sim_config.is_none())
        );
        assert!(Cli::try_parse_from(["wxgate", "bogus"]).is_err());
    }
}
