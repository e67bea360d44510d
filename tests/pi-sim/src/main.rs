//! `pi-sim`: a simulated product instance on the command line. Its state (report ids, poll
//! ids, ACKs, trust codes and authorization codes received) is kept in a JSON file between runs.

#![expect(clippy::print_stdout, reason = "the CLI's output is its interface")]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use outpost_core::device::{AuthorizationMode, AuthorizationScope, DeviceRequest};
use outpost_core::offline_file;
use outpost_pi_sim::load::LoadArgs;
use outpost_pi_sim::server::{DeviceFarm, FarmDevice};
use outpost_pi_sim::sink::Sink;
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
    /// Play devices Outpost pulls from (REST, RESTCONF, NETCONF) until Ctrl-C.
    ///
    /// Each answers the REST API and RESTCONF over HTTPS and plain HTTP, and NETCONF over SSH,
    /// on loopback ports it prints, and prints every call it answers. `--ca-file` is the Outpost
    /// CA the devices trust when they reach Outpost's one-time URLs.
    Serve(ServeArgs),
    /// Many devices at once, to measure Outpost's push path: steady (a fixed offered rate, or
    /// closed-loop) or storm (every device at once, honouring Retry-After).
    ///
    /// Prints a summary (answers by status, reports/s, p50/p95/p99, OK_TRY_AGAIN share);
    /// --results writes every request (device UDI, report ids, answer, latency) as JSON lines.
    /// Tenants: --tenant-url (repeat), --base-url with --tenant-pattern, or the global --url;
    /// HTTPS trusts --ca-file.
    Load(Box<LoadArgs>),
    /// Answer every push at once with OK_POLL and store nothing (measures `load` itself).
    Sink(SinkArgs),
    #[command(flatten)]
    Device(DeviceCommand),
}

/// What `serve` plays.
#[derive(clap::Args)]
struct ServeArgs {
    /// How many devices.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Their PID.
    #[arg(long, default_value = "C9300-24UX")]
    pid: String,
    /// Serial numbers are this and a number: FCWPULL001, FCWPULL002, ...
    #[arg(long, default_value = "FCWPULL")]
    serial_prefix: String,
    /// The login the devices accept.
    #[arg(long, default_value = "netops")]
    username: String,
    /// Its password.
    #[arg(long, default_value = "S3cret!")]
    password: String,
}

/// What `sink` serves.
#[derive(clap::Args)]
struct SinkArgs {
    /// Address to listen on (port 0: any; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Serve HTTPS with a fresh CA, written to this file (trust it with `load --ca-file`).
    #[arg(long)]
    tls_ca_out: Option<PathBuf>,
    /// Server threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Share of requests answered OK_TRY_AGAIN (429 with Retry-After).
    #[arg(long, default_value_t = 0.0)]
    try_again_share: f64,
    /// Retry-After of those answers, seconds.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
}

/// What one simulated device does against its transport URL.
#[derive(Subcommand)]
enum DeviceCommand {
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
        /// A new device's HA standby (serial); then its stack members with --member.
        #[arg(long)]
        standby: Option<String>,
        /// A stack member of a new device (serial); repeat for more.
        #[arg(long)]
        member: Vec<String>,
        /// The entitlement a new device uses (default: Network Advantage).
        #[arg(long)]
        entitlement: Option<String>,
        /// Ask for trust codes for the device and its HA set with these reports.
        #[arg(long)]
        trust: bool,
    },
    /// Ask for authorization codes (SLAC); `poll` picks them up.
    Authorize {
        /// Entitlement tag, e.g. the HSECK9 tag.
        #[arg(long)]
        entitlement: String,
        /// Licenses per device.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// For every UDI of the HA set, not only this device.
        #[arg(long)]
        all: bool,
        /// Replace what the devices hold instead of adding to it.
        #[arg(long)]
        replace: bool,
    },
    /// Confirm every authorization code received (the device installed them).
    Confirm,
    /// Return the authorization code(s) of one device of the set.
    Return {
        /// Serial of the device giving its codes back (default: this device).
        #[arg(long)]
        serial: Option<String>,
    },
    /// Tell Outpost the trust codes received are installed.
    TrustSync,
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

/// Serves a device farm until Ctrl-C, printing what the devices are asked.
async fn serve(
    devices: Vec<FarmDevice>,
    outpost_ca: Option<&str>,
    serials: &[String],
) -> anyhow::Result<()> {
    let farm = DeviceFarm::start_trusting(devices, 0, 0, outpost_ca).await?;
    println!(
        "SSH host key of every device: {}",
        farm.host_key_fingerprint
    );
    for (i, serial) in serials.iter().enumerate() {
        println!(
            "{serial}: rest/restconf https port {}, plain http port {}, netconf port {}",
            farm.port(i),
            farm.plain_port(i),
            farm.netconf_port(i)
        );
    }
    println!("Serving on 127.0.0.1; Ctrl-C stops.");
    let mut seen = vec![(0, 0); serials.len()];
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {}
        }
        for (i, serial) in serials.iter().enumerate() {
            let (calls, imported) = (farm.calls(farm.port(i)), farm.imported(farm.port(i)));
            for call in &calls[seen[i].0..] {
                println!("{serial}: {call}");
            }
            if imported.len() > seen[i].1 {
                println!("{serial}: ACK installed ({} in all)", imported.len());
            }
            seen[i] = (calls.len(), imported.len());
        }
    }
    farm.stop().await;
    Ok(())
}

/// Runs a sink until Ctrl-C.
async fn sink(args: SinkArgs) -> anyhow::Result<()> {
    let sink = Sink::start(
        args.listen,
        args.workers,
        args.tls_ca_out.is_some(),
        args.try_again_share,
        args.retry_after,
    )
    .await?;
    if let (Some(path), Some(pem)) = (&args.tls_ca_out, &sink.ca_pem) {
        std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    let scheme = if sink.ca_pem.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "pi-sim sink listening on {scheme}://{}/cslu/v1/pi/<tenant>",
        sink.addr
    );
    tokio::signal::ctrl_c().await?;
    sink.stop().await;
    Ok(())
}

fn read_ca(path: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    path.map(|path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    })
    .transpose()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The load generator sizes its own runtime (--threads); everything else runs on one with a
    // thread per core.
    if let Command::Load(load) = args.command {
        let ca = read_ca(args.ca_file.as_ref())?;
        let summary = outpost_pi_sim::load::run_blocking(*load, args.url.as_deref(), ca)?;
        print!("{}", summary.text());
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let command = match args.command {
        // `main` runs it before any runtime exists.
        Command::Load(_) => anyhow::bail!("`load` runs on a runtime of its own"),
        Command::Sink(sink_args) => return sink(sink_args).await,
        Command::Device(command) => command,
        Command::Serve(ServeArgs {
            devices,
            pid,
            serial_prefix,
            username,
            password,
        }) => {
            let serials: Vec<String> = (1..=devices)
                .map(|i| format!("{serial_prefix}{i:03}"))
                .collect();
            let farm = serials
                .iter()
                .map(|serial| FarmDevice {
                    device: Device::new(&pid, serial),
                    username: username.clone(),
                    password: password.clone(),
                })
                .collect();
            let ca = match &args.ca_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            return serve(farm, ca.as_deref(), &serials).await;
        }
    };
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
    match command {
        DeviceCommand::Push {
            reports,
            pid,
            serial,
            standby,
            member,
            entitlement,
            trust,
        } => {
            let mut device = if args.state.is_file() {
                load(&args.state, &pid, &serial)?
            } else {
                let mut device = Device::new(&pid, &serial);
                for unit in standby.iter().chain(&member) {
                    device = device.with_member(unit);
                }
                if let Some(tag) = entitlement {
                    device.entitlement_tag = tag;
                }
                device
            };
            device.request_trust = trust;
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
        DeviceCommand::Poll => {
            let mut device = load(&args.state, "C9300-24UX", "FCW2134L00C")?;
            let pending = device.pending_polls.len();
            let completed = device.poll(&client).await?;
            save(&args.state, &device)?;
            println!(
                "{}: {completed} of {pending} pending polls completed; ACKs held: {}; reports acknowledged: {:?}; policy: {}; trust codes: {}; authorization codes: {}",
                device.sudi,
                device.acks.len(),
                device.acknowledged_report_ids(),
                if device.policy.is_some() {
                    "received"
                } else {
                    "none"
                },
                device.trust_codes.len(),
                device.authorizations.len(),
            );
        }
        DeviceCommand::Authorize {
            entitlement,
            count,
            all,
            replace,
        } => {
            let mut device = load(&args.state, "C9300-24UX", "FCW2134L00C")?;
            let mode = if replace {
                AuthorizationMode::Replace
            } else {
                AuthorizationMode::Add
            };
            let scope = if all {
                AuthorizationScope::All
            } else {
                AuthorizationScope::Local
            };
            let request =
                device.authorization_request(&[(entitlement.as_str(), count)], mode, scope);
            exchange(&client, &mut device, &args.state, request).await?;
        }
        DeviceCommand::Confirm => {
            let mut device = load(&args.state, "C9300-24UX", "FCW2134L00C")?;
            let request = device.confirmation_request();
            exchange(&client, &mut device, &args.state, request).await?;
        }
        DeviceCommand::Return { serial } => {
            let mut device = load(&args.state, "C9300-24UX", "FCW2134L00C")?;
            let member = match serial {
                Some(serial) => outpost_core::Sudi::new(device.sudi.udi_pid.clone(), serial),
                None => device.sudi.clone(),
            };
            let request = device.return_request(&member);
            exchange(&client, &mut device, &args.state, request).await?;
        }
        DeviceCommand::TrustSync => {
            let mut device = load(&args.state, "C9300-24UX", "FCW2134L00C")?;
            let request = device.trust_sync_request();
            exchange(&client, &mut device, &args.state, request).await?;
        }
        DeviceCommand::Hello => {
            let mut device = load(&args.state, "C9300-24UX", "FCW2134L00C")?;
            let (_, response) = client.exchange(&device.hello_request()).await?;
            device.absorb(&response)?;
            save(&args.state, &device)?;
            println!("{}: {}", device.sudi, response.message);
        }
        DeviceCommand::Replay { file, json } => {
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

/// Sends one request, keeps what the answer brings, and prints the answer.
async fn exchange(
    client: &PiClient,
    device: &mut Device,
    state: &PathBuf,
    request: DeviceRequest,
) -> anyhow::Result<()> {
    let (status, response) = client.exchange(&request).await?;
    device.absorb(&response)?;
    save(state, device)?;
    println!(
        "{} HTTP {status} {} {:?}: {} {}",
        device.sudi,
        response.message_code_text(),
        response.message_code,
        response.message,
        response
            .poll_id
            .as_deref()
            .map(|p| format!("(poll id {p})"))
            .unwrap_or_default()
    );
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
