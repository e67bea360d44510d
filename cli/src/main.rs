//! `outpost`: parses the command line, sets up logging, loads the settings and hands over to
//! the command. Everything else lives in the library crates.

#![expect(clippy::print_stdout, reason = "the CLI's output is its interface")]

mod admin;
mod database;
mod files;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use outpost_core::settings::{LogFormat, Settings};
use tracing_subscriber::EnvFilter;

/// Outpost, an on-premises Smart Licensing server.
#[derive(Parser)]
#[command(version, about)]
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
    Serve,
    /// Run the API tier only.
    Api,
    /// Run the worker tier only.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the settings and exit.
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
        println!("settings are valid");
        return ExitCode::SUCCESS;
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
            Command::Serve => serve::run(settings, serve::Tiers::Both).await,
            Command::Api => serve::run(settings, serve::Tiers::Api).await,
            Command::Worker => serve::run(settings, serve::Tiers::Worker).await,
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
