//! `outpost`: parses the command line, sets up logging, loads the settings and hands over to
//! the command. Everything else lives in the library crates.

#![expect(clippy::print_stdout, reason = "the CLI's output is its interface")]

mod admin;
mod check;
mod database;
mod files;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use outpost_core::settings::{LogFormat, Settings};
use tracing_subscriber::EnvFilter;

/// `outpost --version`: the version and the git commit it was built from (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OUTPOST_GIT_COMMIT"),
    ")"
);

/// Outpost, an on-premises Smart Licensing server.
#[derive(Parser)]
#[command(name = "outpost", version = VERSION, about)]
struct Cli {
    /// Settings file (TOML); OUTPOST_* environment variables override it.
    #[arg(long, short, global = true, env = "OUTPOST_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the worker in one process (embedded PostgreSQL unless database.url is set).
    Serve {
        /// Apply pending database migrations first (the default); with --migrate=false an
        /// outdated schema stops the start instead.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
              default_value_t = true, default_missing_value = "true", action = clap::ArgAction::Set)]
        migrate: bool,
    },
    /// Run the API tier only.
    Api {
        /// Apply pending database migrations first. Off by default: with many nodes, run
        /// `outpost migrate` once per upgrade; an outdated schema stops the start.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
              default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
        migrate: bool,
    },
    /// Run the worker tier only.
    Worker {
        /// Apply pending database migrations first. Off by default, as for `api`.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
              default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
        migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Check the settings, the database (reachable, version, schema), the certificate files
    /// and the listen addresses; exits 1 when a check fails.
    CheckConfig,
    /// Administration commands.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

fn init_tracing(settings: &Settings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = cli.command {
        return check::run(&settings, cli.config.as_deref());
    }
    init_tracing(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { migrate } => serve::run(settings, serve::Tiers::Both, migrate).await,
            Command::Api { migrate } => serve::run(settings, serve::Tiers::Api, migrate).await,
            Command::Worker { migrate } => {
                serve::run(settings, serve::Tiers::Worker, migrate).await
            }
            Command::Migrate => serve::migrate(settings).await,
            Command::Admin { command } => admin::run(settings, command).await,
            Command::CheckConfig => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<outpost_app::AppError>() {
                // A rule's refusal with its stable code, as the admin API gives it.
                Some(outpost_app::AppError::Refused { code, message, .. }) => {
                    eprintln!("error: {message} ({code})");
                }
                _ => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
