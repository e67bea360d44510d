//! `pi-sim`: a simulated product instance on the command line. Its state (report ids, poll
//! ids, ACKs received) is kept in a JSON file between runs.

#![expect(clippy::print_stdout, reason = "the CLI's output is its interface")]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use outpost_core::device::DeviceRequest;
use outpost_core::offline_file;
use outpost_pi_sim::{Device, PiClient};

/// A simulated product instance (Catalyst switch) for Outpost.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Transport URL, e.g. https://localhost:8444/cslu/v1/pi/Acme%20Campus-1
    #[arg(long, global = true)]
    url: Option<String>,
    /// CA certificate to trust for the URL (Outpost's data_dir/tls/ca.crt).
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Where the device remembers its state.
    #[arg(long, global = true, default_value = "pi-sim-state.json")]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Close usage periods into RUM reports and push them.
    Push {
        /// Reports to push.
        #[arg(long, default_value_t = 3)]
        reports: usize,
        /// PID of a new device.
        #[arg(long, default_value = "C9300-24UX")]
        pid: String,
        /// Serial number of a new device.
        #[arg(long, default_value = "FCW2134L00C")]
        serial: String,
    },
    /// Ask for the result of every pending report; shows the ACKs received.
    Poll,
    /// Say hello (and pick up anything waiting).
    Hello,
    /// Send a RUM file written by a device (`license smart save usage`), as XML or as JSON.
    Replay {
        /// The file.
        file: PathBuf,
        /// Convert it to a JSON usage_report instead of posting the XML.
        #[arg(long)]
        json: bool,
    },
}

fn load(path: &PathBuf, pid: &str, serial: &str) -> anyhow::Result<Device> {
    if path.is_file() {
        let text = std::fs::read_to_string(path)?;
        return serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()));
    }
    Ok(Device::new(pid, serial))
}

fn save(path: &PathBuf, device: &Device) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(device)?)
        .with_context(|| format!("writing {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = args
        .url
        .clone()
        .context("--url is required (the tenant transport URL)")?;
    let ca = match &args.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let client = PiClient::new(&url, ca.as_deref())?;
    match args.command {
        Command::Push {
            reports,
            pid,
            serial,
        } => {
            let mut device = load(&args.state, &pid, &serial)?;
            let batch: Vec<_> = (0..reports).map(|_| device.next_report()).collect();
            let response = device.push(&client, batch).await?;
            save(&args.state, &device)?;
            println!(
                "{} {}: {} {}",
                device.sudi,
                response.message_code_text(),
                response.message,
                response
                    .poll_id
                    .as_deref()
                    .map(|p| format!("(poll id {p})"))
                    .unwrap_or_default()
            );
        }
        Command::Poll => {
            let mut device = load(&args.state, "C9300-24UX", "FCW2134L00C")?;
            let pending = device.pending_polls.len();
            let completed = device.poll(&client).await?;
            save(&args.state, &device)?;
            println!(
                "{}: {completed} of {pending} pending polls completed; ACKs held: {}; reports acknowledged: {:?}",
                device.sudi,
                device.acks.len(),
                device.acknowledged_report_ids()
            );
        }
        Command::Hello => {
            let mut device = load(&args.state, "C9300-24UX", "FCW2134L00C")?;
            let (_, response) = client.exchange(&device.hello_request()).await?;
            device.absorb(&response)?;
            save(&args.state, &device)?;
            println!("{}: {}", device.sudi, response.message);
        }
        Command::Replay { file, json } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let (status, body) = if json {
                let parsed = offline_file::parse(&text)?;
                let request =
                    DeviceRequest::from_offline_file(parsed).map_err(|e| anyhow::anyhow!(e.0))?;
                client
                    .post_raw("application/json", serde_json::to_vec(&request)?)
                    .await?
            } else {
                client
                    .post_raw("application/xml", text.into_bytes())
                    .await?
            };
            println!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
    }
    Ok(())
}

trait CodeText {
    fn message_code_text(&self) -> String;
}

impl CodeText for outpost_core::device::DeviceResponse {
    fn message_code_text(&self) -> String {
        serde_json::to_value(self.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}
