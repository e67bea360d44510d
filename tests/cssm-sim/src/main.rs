//! `cssm-sim`: runs the CSSM simulator for demos and manual tests. It keeps its CA and ACK
//! signing key in `--dir` so Outpost's configuration stays valid across restarts, and prints
//! the settings that point Outpost at it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use outpost_core::crypto::{self, CertifiedKey};
use outpost_cssm_sim::{CssmSim, Portal, SimConfig};

/// A CSSM simulator for Outpost.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// Where its CA and signing key are kept.
    #[arg(long, default_value = "./cssm-sim-data")]
    dir: PathBuf,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    http: bool,
    /// Answer OK_POLL this many times before the ACKs of a poll are ready.
    #[arg(long, default_value_t = 0)]
    ok_polls: u32,
    /// Require this token to register an on-prem instance.
    #[arg(long)]
    registration_token: Option<String>,
    /// The manual side (CSSM's portal), offline; without one, the simulator serves its API.
    #[command(subcommand)]
    portal: Option<PortalCommand>,
}

/// What an administrator does by hand in CSSM's web portal.
#[derive(clap::Subcommand)]
enum PortalCommand {
    /// Upload a usage bundle (UD_SA_*.tar.gz) and download its ACK bundle.
    AnswerUsage {
        /// The usage bundle.
        input: PathBuf,
        /// Where to write the ACK bundle (a directory, or a file name).
        #[arg(long, default_value = ".")]
        output: PathBuf,
    },
    /// Turn a registration request file into a registration response file.
    AnswerRegistration {
        /// The request file.
        input: PathBuf,
        /// Where to write the response file.
        #[arg(long)]
        output: PathBuf,
    },
}

/// Loads a key pair from `<dir>/<name>.crt|.key`, creating it on first use.
fn load_or_create(
    dir: &Path,
    name: &str,
    create: impl FnOnce() -> anyhow::Result<CertifiedKey>,
) -> anyhow::Result<CertifiedKey> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    if cert.is_file() && key.is_file() {
        return Ok(CertifiedKey {
            cert_pem: std::fs::read_to_string(&cert).with_context(|| cert.display().to_string())?,
            key_pem: std::fs::read_to_string(&key).with_context(|| key.display().to_string())?,
        });
    }
    let pair = create()?;
    std::fs::write(&cert, &pair.cert_pem).with_context(|| cert.display().to_string())?;
    std::fs::write(&key, &pair.key_pem).with_context(|| key.display().to_string())?;
    Ok(pair)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir).with_context(|| args.dir.display().to_string())?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let signing = load_or_create(&dir, "cssm-signing", || {
        Ok(crypto::generate_signing_certificate(
            "CSSM Simulator ACK signing",
        )?)
    })?;
    let tls_ca = load_or_create(&dir, "cssm-ca", || {
        Ok(crypto::generate_ca("CSSM Simulator CA")?)
    })?;
    if let Some(command) = args.portal {
        let portal = Portal::offline(SimConfig {
            signing: Some(signing),
            state_file: Some(dir.join("registrations.json")),
            ..SimConfig::default()
        })?;
        return answer(&portal, command);
    }
    let sim = CssmSim::start(SimConfig {
        listen: args.listen,
        tls: !args.http,
        registration_token: args.registration_token,
        signing: Some(signing),
        tls_ca: Some(tls_ca),
        state_file: Some(dir.join("registrations.json")),
        ..SimConfig::default()
    })
    .await?;
    sim.set_ok_polls(args.ok_polls);

    let mut out = format!(
        "CSSM simulator listening on {}\nPoint Outpost at it with:\n  OUTPOST_CSSM__API_URL={url}\n  OUTPOST_CSSM__TOKEN_URL={url}\n  OUTPOST_CSSM__SIGNING_CERTIFICATE_FILE={}\n",
        sim.url(),
        dir.join("cssm-signing.crt").display(),
        url = sim.url(),
    );
    if !args.http {
        out.push_str(&format!(
            "  OUTPOST_CSSM__CA_FILE={}\n",
            dir.join("cssm-ca.crt").display()
        ));
    }
    out.push_str(
        "Smart Account \"Acme Corp\" with Virtual Accounts \"Campus\" and \"DC\". Ctrl-C stops it.",
    );
    tracing::info!("{out}");
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}

/// Runs one portal operation on files.
fn answer(portal: &Portal, command: PortalCommand) -> anyhow::Result<()> {
    match command {
        PortalCommand::AnswerUsage { input, output } => {
            let name = input
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("usage.tar.gz")
                .to_owned();
            let bytes = std::fs::read(&input).with_context(|| input.display().to_string())?;
            let (ack_name, ack) = portal
                .answer_usage_bundle(&name, &bytes)
                .map_err(anyhow::Error::msg)?;
            let path = if output.is_dir() {
                output.join(&ack_name)
            } else {
                output
            };
            std::fs::write(&path, ack).with_context(|| path.display().to_string())?;
            tracing::info!("wrote {}", path.display());
        }
        PortalCommand::AnswerRegistration { input, output } => {
            let text =
                std::fs::read_to_string(&input).with_context(|| input.display().to_string())?;
            let response = portal
                .answer_registration_request(&text)
                .map_err(anyhow::Error::msg)?;
            std::fs::write(&output, response).with_context(|| output.display().to_string())?;
            tracing::info!("wrote {}", output.display());
        }
    }
    Ok(())
}
