//! `pi-sim load`: many simulated devices pushing usage to Outpost at once, to measure the push
//! path (issue 15).
//!
//! - **Devices** are numbers: device `d` has serial `<prefix><d:08>`, reports to tenant
//!   `d % tenants`, and its report number `n` has id `report_id_base + n`. A report is a pure
//!   function of those (see [`body`]), so duplicates and retries are rebuilt byte for byte and a
//!   million devices cost no memory. Only a bounded ring of recently accepted reports (for
//!   duplicates and polls) and, in a storm, the devices waiting out a `Retry-After` are kept.
//! - **Connections**: one task per connection, each with its own keep-alive HTTP/1.1 client
//!   (HTTPS with `--ca-file`, or HTTP), so the number of connections is exactly `--connections`.
//! - **Steady** mode walks request slots `0..devices × reports_per_device` (slot `s` is round
//!   `s / devices` of device `s % devices`; a share of slots re-sends an accepted report or polls
//!   for one instead). With `--rate` it is open-loop: slot `s` is due at `s / rate` seconds and
//!   its latency counts from then, so a slow server cannot hide its queue (no coordinated
//!   omission); without `--rate` it is closed-loop, each connection sending as soon as it is
//!   answered (a throughput measurement). `OK_TRY_AGAIN` is recorded, not retried. Closed-loop,
//!   the connection that got it honours its `Retry-After` before it takes another slot (a
//!   device told to come back later does not come back sooner, and a refused connection must
//!   not spin); open-loop, arrivals keep their schedule, and sends more than 10 ms late are
//!   counted (the generator was short of connections or CPU).
//! - **Storm** mode: every device sends at once (as fast as the connections carry them); a
//!   device told `OK_TRY_AGAIN` waits `Retry-After` times `1 + jitter × U(0,1)` and sends the
//!   same reports again, until every device is answered `OK_POLL` or a bound is hit.
//! - A **quiet tenant** can run beside either mode at a low fixed rate, with its own figures.
//! - Every request becomes one line of the results file (JSON lines: device UDI, report ids,
//!   answer, latency), written by a thread of its own; the summary comes from fixed-size
//!   histograms.

pub mod body;
pub mod stats;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use outpost_core::device::{MessageCode, Status};
use serde::Deserialize;

use self::body::{Templates, mix, nonce_text, unit};
use self::stats::{Histogram, NoAnswer, Outcome, TenantStats, code_name, status_name};

/// Accepted reports remembered for duplicates and polls; older ones are forgotten.
const RECENT: usize = 4096;
/// Results waiting for the writer thread before senders wait.
const RESULTS_QUEUE: usize = 65_536;
/// A device whose connection failed tries again after this long (times the jitter).
const TRANSPORT_RETRY: Duration = Duration::from_secs(1);
/// An open-loop request sent later than this after it was due counts as late.
const LATE: Duration = Duration::from_millis(10);
/// Used when an `OK_TRY_AGAIN` names no delay.
const DEFAULT_RETRY_AFTER: u64 = 1;

/// Steady or storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Slots at a fixed offered rate (`--rate`, open-loop) or as fast as answered (closed-loop).
    Steady,
    /// Every device at once, honouring `Retry-After`.
    Storm,
}

/// Options of `pi-sim load`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "load")]
pub struct LoadArgs {
    /// Transport URL of a tenant (repeat for more); devices are spread over them.
    #[arg(long = "tenant-url")]
    pub tenant_urls: Vec<String>,
    /// Base URL (https://host:port) for --tenant-pattern.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Tenant id pattern, `{}` standing for 1..=--tenants, e.g. `Bench{}-1`.
    #[arg(long)]
    pub tenant_pattern: Option<String>,
    /// How many tenants --tenant-pattern names.
    #[arg(long, default_value_t = 1)]
    pub tenants: u32,
    /// Steady (fixed rate or closed-loop) or storm.
    #[arg(long, value_enum, default_value_t = Mode::Steady)]
    pub mode: Mode,
    /// Simulated devices.
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
    /// Usage reports (requests) each device sends in the run.
    #[arg(long, default_value_t = 1)]
    pub reports_per_device: u32,
    /// RUM reports in one usage_report request.
    #[arg(long, default_value_t = 1)]
    pub reports_per_request: u32,
    /// Payload size of a report in bytes, `MIN-MAX` or one number (drawn uniformly).
    #[arg(long, default_value = "1400-1800")]
    pub report_bytes: String,
    /// Share of steady requests re-sending a report already accepted (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub duplicates: f64,
    /// Share of steady requests polling (`result_poll`) for a report accepted earlier (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub polls: f64,
    /// Keep-alive connections (one request at a time on each).
    #[arg(long, default_value_t = 16)]
    pub connections: u32,
    /// Steady: requests per second offered (open-loop). Absent: closed-loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// A device (storm) or connection (steady) told OK_TRY_AGAIN waits
    /// Retry-After × (1 + jitter × U(0,1)).
    #[arg(long, default_value_t = 0.5)]
    pub jitter: f64,
    /// Time bound, seconds: no request is sent after it.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Count bound: requests sent at most (retries included).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Seconds one request may take before it counts as unanswered.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// PID of every device.
    #[arg(long, default_value = "C9300-24UX")]
    pub pid: String,
    /// Serial numbers are this (letters and digits) and an 8-digit number.
    #[arg(long, default_value = "LOAD")]
    pub serial_prefix: String,
    /// Report id of a device's first report in this run. Default: the time in seconds × 10^6,
    /// so every run sends new reports.
    #[arg(long)]
    pub report_id_base: Option<i64>,
    /// Seed of sizes, shares and jitter.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write every request as a JSON line here.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Write the summary as key=value lines here (for scripts).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Transport URL of a quiet tenant sending at --quiet-rate beside the main load.
    #[arg(long)]
    pub quiet_url: Option<String>,
    /// Requests per second of the quiet tenant (open-loop).
    #[arg(long, default_value_t = 5.0)]
    pub quiet_rate: f64,
    /// Devices of the quiet tenant.
    #[arg(long, default_value_t = 100)]
    pub quiet_devices: u32,
    /// Connections of the quiet tenant (enough that its schedule holds while the busy tenant
    /// slows every answer down).
    #[arg(long, default_value_t = 16)]
    pub quiet_connections: u32,
}

/// A storm's own figures.
#[derive(Debug, Clone)]
pub struct StormFigures {
    /// Devices in the storm.
    pub devices: u64,
    /// Devices that got `OK_POLL` for all their reports.
    pub accepted: u64,
    /// Devices refused for good (`FAILED` or an answer that is not the protocol's).
    pub refused: u64,
    /// Devices still waiting when a bound stopped the run (or never sent).
    pub unfinished: u64,
    /// Most attempts one request took.
    pub max_attempts: u64,
    /// From the start of the storm to each device's last `OK_POLL`.
    pub completion: Histogram,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The mode.
    pub mode: Mode,
    /// Offered rate (steady, open-loop).
    pub rate: Option<f64>,
    /// Connections of the main load.
    pub connections: u32,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Every tenant together (the quiet one included).
    pub total: TenantStats,
    /// Per tenant: its label and figures (the quiet tenant last, labelled `quiet:<id>`).
    pub tenants: Vec<(String, TenantStats)>,
    /// The storm's figures.
    pub storm: Option<StormFigures>,
    /// CPU seconds the generator used (user + system).
    pub cpu_seconds: Option<f64>,
}

impl Summary {
    /// Reports in accepted usage reports per second of the run.
    pub fn reports_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.total.reports_accepted as f64 / seconds
        } else {
            0.0
        }
    }

    /// The summary people read.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let t = &self.total;
        let secs = self.elapsed.as_secs_f64();
        let mode = match (self.mode, self.rate) {
            (Mode::Steady, Some(rate)) => format!("steady, open-loop at {rate} req/s"),
            (Mode::Steady, None) => "steady, closed-loop".to_owned(),
            (Mode::Storm, _) => "storm".to_owned(),
        };
        let _ = writeln!(
            out,
            "pi-sim load: {mode}, {} connections, {secs:.1} s",
            self.connections
        );
        let _ = writeln!(
            out,
            "  requests: {} ({:.0}/s); OK {} OK_POLL {} OK_TRY_AGAIN {} ({:.1} %) FAILED {}; not protocol {}; no answer {} ({} timed out, {} without a connection)",
            t.requests,
            per_second(t.requests, secs),
            t.ok,
            t.ok_poll,
            t.try_again,
            t.try_again_share() * 100.0,
            t.failed,
            t.not_protocol,
            t.transport_errors,
            t.timeouts,
            t.connect_errors
        );
        if t.late_sends > 0 {
            let _ = writeln!(
                out,
                "  {} sends were more than 10 ms late (their latency counts it): more --connections, or a less busy machine",
                t.late_sends
            );
        }
        let mut codes = t.codes.clone();
        codes.sort_by_key(|c| Reverse(c.1));
        let codes: Vec<String> = codes
            .iter()
            .map(|(c, n)| format!("{} {n}", code_name(*c)))
            .collect();
        let _ = writeln!(out, "  message codes: {}", codes.join(", "));
        let _ = writeln!(
            out,
            "  reports: {} sent (mean payload {:.0} bytes), {} accepted ({:.0}/s; {} new, {} duplicates); {} polls",
            t.reports_sent,
            t.payload_bytes as f64 / t.reports_sent.max(1) as f64,
            t.reports_accepted,
            self.reports_per_second(),
            t.new_reports_accepted,
            t.duplicate_reports_accepted,
            t.polls
        );
        let _ = writeln!(out, "  latency ms: {}", latency_text(&t.latency));
        if t.try_again > 0 {
            let _ = writeln!(
                out,
                "    of OK/OK_POLL: {}\n    of OK_TRY_AGAIN: {}",
                latency_text(&t.latency_ok),
                latency_text(&t.latency_try_again)
            );
        }
        if t.nonce_not_echoed > 0 {
            let _ = writeln!(
                out,
                "  answers without the request's nonce: {}",
                t.nonce_not_echoed
            );
        }
        if let Some(storm) = &self.storm {
            let _ = writeln!(
                out,
                "  storm: {} devices: {} accepted, {} refused, {} unfinished; at most {} attempts; accepted after (ms) {}",
                storm.devices,
                storm.accepted,
                storm.refused,
                storm.unfinished,
                storm.max_attempts,
                latency_text(&storm.completion)
            );
        }
        if self.tenants.len() > 1 {
            for (label, stats) in self.tenants.iter().take(16) {
                let _ = writeln!(
                    out,
                    "  tenant {label}: {} requests, {} reports accepted, OK_TRY_AGAIN {:.1} %, {} sent late, latency ms {}",
                    stats.requests,
                    stats.reports_accepted,
                    stats.try_again_share() * 100.0,
                    stats.late_sends,
                    latency_text(&stats.latency)
                );
            }
        }
        if let Some(cpu) = self.cpu_seconds {
            let _ = writeln!(
                out,
                "  generator CPU: {cpu:.1} s ({:.0} % of one core)",
                if secs > 0.0 { cpu / secs * 100.0 } else { 0.0 }
            );
        }
        out
    }

    /// The summary as `key=value` lines (milliseconds, seconds, shares in 0..1).
    pub fn key_values(&self) -> String {
        let mut out = String::new();
        let t = &self.total;
        let ms = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
        let mode = match self.mode {
            Mode::Steady => "steady",
            Mode::Storm => "storm",
        };
        let _ = writeln!(out, "mode={mode}");
        let _ = writeln!(out, "connections={}", self.connections);
        let _ = writeln!(out, "elapsed_s={:.3}", self.elapsed.as_secs_f64());
        let _ = writeln!(out, "requests={}", t.requests);
        let _ = writeln!(out, "ok={}", t.ok);
        let _ = writeln!(out, "ok_poll={}", t.ok_poll);
        let _ = writeln!(out, "ok_try_again={}", t.try_again);
        let _ = writeln!(out, "failed={}", t.failed);
        let _ = writeln!(out, "not_protocol={}", t.not_protocol);
        let _ = writeln!(out, "no_answer={}", t.transport_errors);
        let _ = writeln!(out, "timeouts={}", t.timeouts);
        let _ = writeln!(out, "late_sends={}", t.late_sends);
        let _ = writeln!(out, "try_again_share={:.6}", t.try_again_share());
        let _ = writeln!(out, "reports_sent={}", t.reports_sent);
        let _ = writeln!(
            out,
            "mean_payload_bytes={:.0}",
            t.payload_bytes as f64 / t.reports_sent.max(1) as f64
        );
        let _ = writeln!(out, "reports_accepted={}", t.reports_accepted);
        let _ = writeln!(out, "new_reports_accepted={}", t.new_reports_accepted);
        let _ = writeln!(out, "reports_per_s={:.1}", self.reports_per_second());
        let _ = writeln!(out, "p50_ms={}", ms(t.latency.percentile_ms(0.50)));
        let _ = writeln!(out, "p95_ms={}", ms(t.latency.percentile_ms(0.95)));
        let _ = writeln!(out, "p99_ms={}", ms(t.latency.percentile_ms(0.99)));
        let _ = writeln!(out, "max_ms={}", ms(t.latency.max_ms()));
        let _ = writeln!(out, "ok_p50_ms={}", ms(t.latency_ok.percentile_ms(0.50)));
        let _ = writeln!(out, "ok_p99_ms={}", ms(t.latency_ok.percentile_ms(0.99)));
        let _ = writeln!(
            out,
            "try_again_p50_ms={}",
            ms(t.latency_try_again.percentile_ms(0.50))
        );
        let _ = writeln!(
            out,
            "try_again_p99_ms={}",
            ms(t.latency_try_again.percentile_ms(0.99))
        );
        let _ = writeln!(out, "nonce_not_echoed={}", t.nonce_not_echoed);
        if let Some(storm) = &self.storm {
            let _ = writeln!(out, "storm_devices={}", storm.devices);
            let _ = writeln!(out, "storm_accepted={}", storm.accepted);
            let _ = writeln!(out, "storm_refused={}", storm.refused);
            let _ = writeln!(out, "storm_unfinished={}", storm.unfinished);
            let _ = writeln!(out, "storm_max_attempts={}", storm.max_attempts);
            let _ = writeln!(
                out,
                "storm_accepted_p99_ms={}",
                ms(storm.completion.percentile_ms(0.99))
            );
        }
        for (i, (label, stats)) in self.tenants.iter().enumerate() {
            let _ = writeln!(out, "tenant.{i}.label={label}");
            let _ = writeln!(out, "tenant.{i}.requests={}", stats.requests);
            let _ = writeln!(
                out,
                "tenant.{i}.try_again_share={:.6}",
                stats.try_again_share()
            );
            let _ = writeln!(
                out,
                "tenant.{i}.p50_ms={}",
                ms(stats.latency.percentile_ms(0.50))
            );
            let _ = writeln!(
                out,
                "tenant.{i}.p99_ms={}",
                ms(stats.latency.percentile_ms(0.99))
            );
        }
        if let Some(cpu) = self.cpu_seconds {
            let _ = writeln!(out, "generator_cpu_s={cpu:.2}");
        }
        out
    }
}

fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

fn latency_text(h: &Histogram) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    format!(
        "p50 {} p95 {} p99 {} max {} (mean {})",
        ms(h.percentile_ms(0.50)),
        ms(h.percentile_ms(0.95)),
        ms(h.percentile_ms(0.99)),
        ms(h.max_ms()),
        ms(h.mean_ms())
    )
}

/// The answer fields the generator reads (the rest of the body is skipped unread).
#[derive(Debug, Deserialize)]
struct Answer {
    status: Status,
    nonce: Option<String>,
    message_code: MessageCode,
    poll_id: Option<String>,
    retry_after: Option<u64>,
}

/// What one request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Round `round` of a device, sent for the first time (or retried, `attempt > 1`).
    Report,
    /// A round accepted earlier, sent again on purpose.
    Duplicate,
    /// A `result_poll`.
    Poll,
}

/// One line of the results file.
#[derive(Debug)]
struct Record {
    at: Duration,
    group: u8,
    tenant: u16,
    device: u32,
    kind: Kind,
    round: u64,
    attempt: u32,
    http: u16,
    outcome: Outcome,
    latency: Duration,
}

/// A report accepted earlier, to duplicate or poll for.
#[derive(Debug, Clone)]
struct Recent {
    device: u32,
    round: u64,
    poll_id: Option<String>,
}

/// One group of devices: the main load, or the quiet tenant.
struct Group {
    index: u8,
    templates: Templates,
    urls: Vec<String>,
    /// Index of its first tenant in the stats.
    first_tenant: usize,
    devices: u32,
    rate: Option<f64>,
    /// Steady slots in all (`u64::MAX`: until stopped).
    slots: u64,
    next: AtomicU64,
    duplicates: f64,
    polls: f64,
    recent: Mutex<VecDeque<Recent>>,
}

/// State every connection task shares.
struct Shared {
    start: Instant,
    deadline: Instant,
    max_requests: u64,
    sent: AtomicU64,
    /// The main load is done: the quiet tenant stops.
    stop: AtomicBool,
    /// Microseconds from the start to the latest answer.
    last_answer_us: AtomicU64,
    stats: Vec<Mutex<TenantStats>>,
    results: Option<tokio::sync::mpsc::Sender<Record>>,
    jitter: f64,
    seed: u64,
    storm: Option<Storm>,
}

/// A device waiting out a Retry-After: (due, device, round, attempt).
type Waiting = Reverse<(Instant, u32, u64, u32)>;

/// A storm's shared state.
struct Storm {
    /// Devices waiting out a Retry-After, the earliest due first.
    waiting: Mutex<BinaryHeap<Waiting>>,
    /// Devices not yet accepted, refused or given up.
    unresolved: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    max_attempts: AtomicU64,
    completion: Mutex<Histogram>,
    rounds: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads `MIN-MAX` or `N`.
fn parse_range(text: &str) -> anyhow::Result<(usize, usize)> {
    let (min, max) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse()?, b.trim().parse()?),
        None => {
            let n = text.trim().parse()?;
            (n, n)
        }
    };
    if min > max || max > 4 * 1024 * 1024 {
        bail!("--report-bytes {text}: want MIN-MAX with MIN <= MAX <= 4 MiB");
    }
    Ok((min, max))
}

/// The last path segment of a transport URL (its tenant id, as sent).
fn tenant_label(url: &str) -> String {
    url.rsplit('/').next().unwrap_or(url).to_owned()
}

impl LoadArgs {
    /// Options as on the command line, after `load` (for tests and other programs).
    pub fn from_options(options: &[&str]) -> anyhow::Result<Self> {
        use clap::Parser as _;
        Ok(Self::try_parse_from(
            std::iter::once("load").chain(options.iter().copied()),
        )?)
    }

    /// The tenants' transport URLs: --tenant-url, else --base-url with --tenant-pattern, else
    /// `default_url` (pi-sim's --url).
    pub fn urls(&self, default_url: Option<&str>) -> anyhow::Result<Vec<String>> {
        if !self.tenant_urls.is_empty() {
            return Ok(self.tenant_urls.clone());
        }
        if let Some(pattern) = &self.tenant_pattern {
            let base = self
                .base_url
                .as_deref()
                .context("--tenant-pattern needs --base-url")?;
            if !pattern.contains("{}") {
                bail!("--tenant-pattern must contain {{}}");
            }
            return Ok((1..=self.tenants)
                .map(|i| {
                    outpost_core::tenant::transport_url(
                        base,
                        &pattern.replace("{}", &i.to_string()),
                    )
                })
                .collect());
        }
        match default_url {
            Some(url) => Ok(vec![url.to_owned()]),
            None => {
                bail!("name the tenants: --tenant-url, --base-url with --tenant-pattern, or --url")
            }
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.devices == 0 || self.connections == 0 || self.reports_per_request == 0 {
            bail!("--devices, --connections and --reports-per-request must be at least 1");
        }
        if !self
            .serial_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
            || self.serial_prefix.len() > 40
        {
            bail!("--serial-prefix must be letters and digits (at most 40)");
        }
        if !(0.0..=1.0).contains(&self.duplicates)
            || !(0.0..=1.0).contains(&self.polls)
            || self.duplicates + self.polls > 1.0
        {
            bail!("--duplicates and --polls are shares: each in 0..1, together at most 1");
        }
        if self.rate.is_some_and(|r| r <= 0.0) || self.quiet_rate <= 0.0 {
            bail!("rates must be above 0");
        }
        if self.duration <= 0.0 || self.timeout <= 0.0 || self.jitter < 0.0 {
            bail!("--duration and --timeout must be above 0, --jitter at least 0");
        }
        Ok(())
    }
}

/// Runs `pi-sim load` on a runtime of its own (`--threads`).
pub fn run_blocking(
    args: LoadArgs,
    default_url: Option<&str>,
    ca_pem: Option<String>,
) -> anyhow::Result<Summary> {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let urls = args.urls(default_url)?;
    runtime.block_on(run(args, urls, ca_pem))
}

/// Runs the load against `urls` (tenant transport URLs), trusting `ca_pem` for HTTPS.
pub async fn run(
    args: LoadArgs,
    urls: Vec<String>,
    ca_pem: Option<String>,
) -> anyhow::Result<Summary> {
    args.check()?;
    if urls.is_empty() {
        bail!("no tenant to send to");
    }
    let (min_bytes, max_bytes) = parse_range(&args.report_bytes)?;
    let report_id_base = match args.report_id_base {
        Some(base) => base,
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            i64::try_from(secs)?.saturating_mul(1_000_000)
        }
    };
    let templates = Templates {
        pid: args.pid.clone(),
        serial_prefix: args.serial_prefix.clone(),
        report_id_base,
        min_bytes,
        max_bytes,
        reports_per_request: args.reports_per_request,
        seed: args.seed,
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let roots: Vec<String> = ca_pem.into_iter().collect();
    // Loopback benchmarks trust the given CA only; without one, the system's roots.
    let tls = outpost_core::tls::client_config(&roots, roots.is_empty())?;
    let client = move || -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            // Devices speak HTTP/1.1, one request at a time per connection.
            .http1_only()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(timeout)
            .build()?)
    };

    let mut labels: Vec<String> = urls.iter().map(|u| tenant_label(u)).collect();
    let main = Arc::new(Group {
        index: 0,
        templates: templates.clone(),
        urls: urls.clone(),
        first_tenant: 0,
        devices: args.devices,
        rate: args.rate,
        slots: u64::from(args.devices).saturating_mul(u64::from(args.reports_per_device)),
        next: AtomicU64::new(0),
        duplicates: args.duplicates,
        polls: args.polls,
        recent: Mutex::new(VecDeque::with_capacity(RECENT)),
    });
    let quiet = args.quiet_url.as_ref().map(|url| {
        labels.push(format!("quiet:{}", tenant_label(url)));
        Arc::new(Group {
            index: 1,
            templates: Templates {
                serial_prefix: format!("{}Q", args.serial_prefix),
                ..templates.clone()
            },
            urls: vec![url.clone()],
            first_tenant: urls.len(),
            devices: args.quiet_devices.max(1),
            rate: Some(args.quiet_rate),
            slots: u64::MAX,
            next: AtomicU64::new(0),
            duplicates: 0.0,
            polls: 0.0,
            recent: Mutex::new(VecDeque::new()),
        })
    });

    let (results, writer) = match &args.results {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let (tx, rx) = tokio::sync::mpsc::channel(RESULTS_QUEUE);
            let groups: Vec<Templates> = std::iter::once(main.templates.clone())
                .chain(quiet.as_ref().map(|q| q.templates.clone()))
                .collect();
            let labels = labels.clone();
            let writer = std::thread::Builder::new()
                .name("pi-sim-results".into())
                .spawn(move || write_results(file, rx, &groups, &labels))?;
            (Some(tx), Some(writer))
        }
        None => (None, None),
    };

    let storm = (args.mode == Mode::Storm).then(|| Storm {
        waiting: Mutex::new(BinaryHeap::new()),
        unresolved: AtomicU64::new(u64::from(args.devices)),
        accepted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        max_attempts: AtomicU64::new(0),
        completion: Mutex::new(Histogram::default()),
        rounds: args.reports_per_device.max(1),
    });
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        deadline: start + Duration::from_secs_f64(args.duration),
        max_requests: args.requests.unwrap_or(u64::MAX),
        sent: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        last_answer_us: AtomicU64::new(0),
        stats: labels
            .iter()
            .map(|_| Mutex::new(TenantStats::default()))
            .collect(),
        results,
        jitter: args.jitter,
        seed: args.seed,
        storm,
    });

    let mut main_tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let (shared, group, http) = (shared.clone(), main.clone(), client()?);
        if args.mode == Mode::Storm {
            main_tasks.spawn(storm_worker(shared, group, http));
        } else {
            main_tasks.spawn(steady_worker(shared, group, http));
        }
    }
    let mut quiet_tasks = tokio::task::JoinSet::new();
    if let Some(quiet) = &quiet {
        for _ in 0..args.quiet_connections.max(1) {
            let (shared, group, http) = (shared.clone(), quiet.clone(), client()?);
            quiet_tasks.spawn(steady_worker(shared, group, http));
        }
    }
    while let Some(done) = main_tasks.join_next().await {
        done.context("a connection task failed")?;
    }
    shared.stop.store(true, Ordering::Relaxed);
    while let Some(done) = quiet_tasks.join_next().await {
        done.context("a quiet connection task failed")?;
    }
    let elapsed = Duration::from_micros(shared.last_answer_us.load(Ordering::Relaxed));
    let cpu = match (cpu_before, cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };

    let shared = Arc::into_inner(shared).context("connection tasks still hold the state")?;
    drop(shared.results);
    if let Some(writer) = writer {
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the results writer panicked"))?
            .context("writing the results")?;
    }
    let tenants: Vec<(String, TenantStats)> = labels
        .into_iter()
        .zip(shared.stats)
        .map(|(label, stats)| {
            (
                label,
                stats.into_inner().unwrap_or_else(PoisonError::into_inner),
            )
        })
        .collect();
    let mut total = TenantStats::default();
    for (_, stats) in &tenants {
        total.merge(stats);
    }
    let storm = shared.storm.map(|s| {
        let accepted = s.accepted.load(Ordering::Relaxed);
        let refused = s.refused.load(Ordering::Relaxed);
        StormFigures {
            devices: u64::from(args.devices),
            accepted,
            refused,
            unfinished: u64::from(args.devices) - accepted - refused,
            max_attempts: s.max_attempts.load(Ordering::Relaxed),
            completion: s
                .completion
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        }
    });
    let summary = Summary {
        mode: args.mode,
        rate: args.rate,
        connections: args.connections,
        elapsed,
        total,
        tenants,
        storm,
        cpu_seconds: cpu,
    };
    if let Some(path) = &args.summary {
        std::fs::write(path, summary.key_values())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(summary)
}

/// CPU seconds this process used so far (`/proc/self/stat`, in the kernel's USER_HZ of 100).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// What one exchange gave.
struct Exchanged {
    http: u16,
    outcome: Outcome,
    retry_after: Option<u64>,
    poll_id: Option<String>,
}

fn no_answer(error: &reqwest::Error) -> NoAnswer {
    if error.is_timeout() {
        NoAnswer::Timeout
    } else if error.is_connect() {
        NoAnswer::Connect
    } else {
        NoAnswer::Broken
    }
}

async fn send(client: &reqwest::Client, url: &str, body: String, nonce: &str) -> (Exchanged, bool) {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            return (
                Exchanged {
                    http: 0,
                    outcome: Outcome::Transport(no_answer(&e)),
                    retry_after: None,
                    poll_id: None,
                },
                false,
            );
        }
    };
    let http = response.status().as_u16();
    let header_retry = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return (
                Exchanged {
                    http,
                    outcome: Outcome::Transport(no_answer(&e)),
                    retry_after: None,
                    poll_id: None,
                },
                false,
            );
        }
    };
    match serde_json::from_slice::<Answer>(&bytes) {
        Ok(answer) => {
            let echoed = answer.status == Status::Failed || answer.nonce.as_deref() == Some(nonce);
            (
                Exchanged {
                    http,
                    outcome: Outcome::Answer(answer.status, answer.message_code),
                    retry_after: header_retry.or(answer.retry_after),
                    poll_id: answer.poll_id,
                },
                echoed,
            )
        }
        Err(_) => (
            Exchanged {
                http,
                outcome: Outcome::NotProtocol,
                retry_after: header_retry,
                poll_id: None,
            },
            true,
        ),
    }
}

impl Shared {
    /// Takes a request from the count bound; false when it is used up.
    fn take_request(&self) -> Option<u64> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        (n < self.max_requests).then_some(n)
    }

    /// Counts and records one finished request.
    #[expect(clippy::too_many_arguments, reason = "one record's fields")]
    async fn finish(
        &self,
        group: &Group,
        device: u32,
        kind: Kind,
        round: u64,
        attempt: u32,
        exchanged: &Exchanged,
        echoed: bool,
        payload_bytes: usize,
        latency: Duration,
    ) {
        let now = self.start.elapsed();
        self.last_answer_us.fetch_max(
            u64::try_from(now.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let tenant = group.tenant(device);
        let reports = u64::from(group.templates.reports_per_request);
        {
            let mut stats = lock(&self.stats[tenant]);
            stats.count(exchanged.outcome);
            stats.record_latency(exchanged.outcome, latency);
            if !echoed {
                stats.nonce_not_echoed += 1;
            }
            match kind {
                Kind::Poll => stats.polls += 1,
                Kind::Report | Kind::Duplicate => {
                    stats.reports_sent += reports;
                    stats.payload_bytes += payload_bytes as u64;
                    if matches!(exchanged.outcome, Outcome::Answer(Status::OkPoll, _)) {
                        stats.reports_accepted += reports;
                        if kind == Kind::Duplicate {
                            stats.duplicate_reports_accepted += reports;
                        } else {
                            stats.new_reports_accepted += reports;
                        }
                    }
                }
            }
        }
        if let Some(results) = &self.results {
            let record = Record {
                at: now,
                group: group.index,
                tenant: u16::try_from(tenant).unwrap_or(u16::MAX),
                device,
                kind,
                round,
                attempt,
                http: exchanged.http,
                outcome: exchanged.outcome,
                latency,
            };
            // The writer only stops when every sender is gone.
            let _ = results.send(record).await;
        }
    }
}

/// What a steady slot sends.
enum Job {
    Usage { device: u32, round: u64, kind: Kind },
    Poll { device: u32, poll_id: String },
}

impl Group {
    fn plan(&self, slot: u64, seed: u64) -> Job {
        let new = Job::Usage {
            device: (slot % u64::from(self.devices)) as u32,
            round: slot / u64::from(self.devices),
            kind: Kind::Report,
        };
        let u = unit(mix(seed ^ mix(slot ^ 0x5107)));
        if u >= self.polls + self.duplicates {
            return new;
        }
        let mut recent = lock(&self.recent);
        if u < self.polls {
            if let Some(index) = recent.iter().position(|r| r.poll_id.is_some())
                && let Some(r) = recent.remove(index)
                && let Some(poll_id) = r.poll_id
            {
                return Job::Poll {
                    device: r.device,
                    poll_id,
                };
            }
            return new;
        }
        match recent.pop_front() {
            Some(r) => Job::Usage {
                device: r.device,
                round: r.round,
                kind: Kind::Duplicate,
            },
            None => new,
        }
    }

    fn remember(&self, device: u32, round: u64, poll_id: Option<String>) {
        if self.duplicates + self.polls <= 0.0 {
            return;
        }
        let mut recent = lock(&self.recent);
        if recent.len() >= RECENT {
            recent.pop_front();
        }
        recent.push_back(Recent {
            device,
            round,
            poll_id,
        });
    }

    /// Index of the tenant of `device` in the stats.
    fn tenant(&self, device: u32) -> usize {
        self.first_tenant + device as usize % self.urls.len()
    }

    fn url(&self, device: u32) -> &str {
        &self.urls[device as usize % self.urls.len()]
    }
}

/// One connection of the steady mode (and of the quiet tenant).
async fn steady_worker(shared: Arc<Shared>, group: Arc<Group>, client: reqwest::Client) {
    let mut body = String::new();
    loop {
        if shared.stop.load(Ordering::Relaxed) && group.index != 0 {
            return;
        }
        let slot = group.next.fetch_add(1, Ordering::Relaxed);
        if slot >= group.slots {
            return;
        }
        // Open-loop: slot `s` is due at `s / rate`; a connection ahead of schedule waits and
        // counts from when it sends, one behind counts from when the slot was due.
        let due = group
            .rate
            .map(|rate| shared.start + Duration::from_secs_f64(slot as f64 / rate));
        let now = Instant::now();
        if due.is_some_and(|d| d >= shared.deadline) || now >= shared.deadline {
            return;
        }
        let (from, late) = match due {
            Some(due) if due > now => {
                tokio::select! {
                    () = tokio::time::sleep_until(due.into()) => {}
                    () = wait_for_stop(&shared, group.index) => return,
                }
                (Instant::now(), false)
            }
            Some(due) => (due, now.duration_since(due) > LATE),
            None => (now, false),
        };
        let Some(n) = shared.take_request() else {
            return;
        };
        let job = group.plan(slot, shared.seed);
        body.clear();
        // `n` counts every request of the run, of every group: nonces never repeat.
        let nonce = nonce_text(n);
        let (device, kind, round, payload_bytes) = match &job {
            Job::Usage {
                device,
                round,
                kind,
            } => {
                let bytes = group.templates.usage_body(&mut body, *device, *round, n);
                (*device, *kind, *round, bytes)
            }
            Job::Poll { device, poll_id } => {
                group.templates.poll_body(&mut body, *device, poll_id, n);
                (*device, Kind::Poll, 0, 0)
            }
        };
        let (exchanged, echoed) = send(
            &client,
            group.url(device),
            std::mem::take(&mut body),
            &nonce,
        )
        .await;
        let latency = from.elapsed();
        if kind == Kind::Report
            && matches!(
                exchanged.outcome,
                Outcome::Answer(Status::OkPoll, MessageCode::UsageAccepted)
            )
        {
            group.remember(device, round, exchanged.poll_id.clone());
        }
        shared
            .finish(
                &group,
                device,
                kind,
                round,
                1,
                &exchanged,
                echoed,
                payload_bytes,
                latency,
            )
            .await;
        if late {
            lock(&shared.stats[group.tenant(device)]).late_sends += 1;
        }
        if let (Outcome::Answer(Status::OkTryAgain, _), None) = (exchanged.outcome, group.rate) {
            let u = unit(mix(shared.seed ^ mix(n ^ 0x57)));
            let wait = Duration::from_secs(exchanged.retry_after.unwrap_or(DEFAULT_RETRY_AFTER))
                .mul_f64(1.0 + shared.jitter * u);
            let until = (Instant::now() + wait).min(shared.deadline);
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                () = wait_for_stop(&shared, group.index) => return,
            }
        }
    }
}

/// Returns once the quiet tenant should stop (never for the main load).
async fn wait_for_stop(shared: &Shared, group: u8) {
    if group == 0 {
        std::future::pending::<()>().await;
    }
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One connection of the storm.
async fn storm_worker(shared: Arc<Shared>, group: Arc<Group>, client: reqwest::Client) {
    let Some(storm) = &shared.storm else {
        return;
    };
    let mut body = String::new();
    let mut carry: Option<(u32, u64, u32)> = None;
    loop {
        let now = Instant::now();
        if now >= shared.deadline || storm.unresolved.load(Ordering::Relaxed) == 0 {
            return;
        }
        let (device, round, attempt) = match carry.take() {
            Some(next) => next,
            None => {
                let due = {
                    let mut waiting = lock(&storm.waiting);
                    match waiting.peek() {
                        Some(Reverse((due, ..))) if *due <= now => {
                            waiting.pop().map(|Reverse((_, d, r, a))| (d, r, a))
                        }
                        _ => None,
                    }
                };
                match due {
                    Some(next) => next,
                    None => {
                        let device = group.next.fetch_add(1, Ordering::Relaxed);
                        if device < u64::from(group.devices) {
                            (device as u32, 0, 1)
                        } else {
                            // Nothing to send now: wait for the next retry (or for other
                            // connections' answers to schedule one).
                            let next_due = lock(&storm.waiting).peek().map(|Reverse((d, ..))| *d);
                            let nap = next_due
                                .map_or(Duration::from_millis(20), |d| {
                                    d.saturating_duration_since(now)
                                })
                                .min(Duration::from_millis(20));
                            tokio::time::sleep(nap).await;
                            continue;
                        }
                    }
                }
            }
        };
        let Some(n) = shared.take_request() else {
            return;
        };
        storm
            .max_attempts
            .fetch_max(u64::from(attempt), Ordering::Relaxed);
        body.clear();
        let payload_bytes = group.templates.usage_body(&mut body, device, round, n);
        let sent = Instant::now();
        let (exchanged, echoed) = send(
            &client,
            group.url(device),
            std::mem::take(&mut body),
            &nonce_text(n),
        )
        .await;
        let latency = sent.elapsed();
        let retry_in = |seconds: u64| {
            let u = unit(mix(shared.seed ^ mix(n ^ 0x57)));
            Duration::from_secs(seconds).mul_f64(1.0 + shared.jitter * u)
        };
        match exchanged.outcome {
            Outcome::Answer(Status::OkPoll, _) => {
                if round + 1 < u64::from(storm.rounds) {
                    carry = Some((device, round + 1, 1));
                } else {
                    storm.accepted.fetch_add(1, Ordering::Relaxed);
                    lock(&storm.completion).record(shared.start.elapsed());
                    storm.unresolved.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Outcome::Answer(Status::OkTryAgain, _) => {
                let wait = retry_in(exchanged.retry_after.unwrap_or(DEFAULT_RETRY_AFTER));
                lock(&storm.waiting).push(Reverse((
                    Instant::now() + wait,
                    device,
                    round,
                    attempt + 1,
                )));
            }
            Outcome::Transport(_) => {
                let wait = TRANSPORT_RETRY.mul_f64(1.0 + shared.jitter * unit(mix(n)));
                lock(&storm.waiting).push(Reverse((
                    Instant::now() + wait,
                    device,
                    round,
                    attempt + 1,
                )));
            }
            Outcome::Answer(Status::Ok | Status::Failed, _) | Outcome::NotProtocol => {
                storm.refused.fetch_add(1, Ordering::Relaxed);
                storm.unresolved.fetch_sub(1, Ordering::Relaxed);
            }
        }
        shared
            .finish(
                &group,
                device,
                Kind::Report,
                round,
                attempt,
                &exchanged,
                echoed,
                payload_bytes,
                latency,
            )
            .await;
    }
}

/// The results writer: one JSON line per request.
fn write_results(
    file: std::fs::File,
    mut rx: tokio::sync::mpsc::Receiver<Record>,
    groups: &[Templates],
    labels: &[String],
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut line = String::with_capacity(512);
    while let Some(r) = rx.blocking_recv() {
        let Some(templates) = groups.get(usize::from(r.group)) else {
            continue;
        };
        line.clear();
        let kind = match (r.kind, r.attempt) {
            (Kind::Poll, _) => "poll",
            (Kind::Duplicate, _) => "duplicate",
            (Kind::Report, 1) => "report",
            (Kind::Report, _) => "retry",
        };
        let _ = write!(
            line,
            r#"{{"t_ms":{:.3},"tenant":"{}","udi":"{}","kind":"{kind}","report_ids":["#,
            r.at.as_secs_f64() * 1000.0,
            labels.get(usize::from(r.tenant)).map_or("", String::as_str),
            templates.udi(r.device),
        );
        if r.kind != Kind::Poll {
            for (i, id) in templates.report_ids(r.round).enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{id}");
            }
        }
        let (status, code) = match r.outcome {
            Outcome::Answer(status, code) => (status_name(status).to_owned(), code_name(code)),
            Outcome::NotProtocol => ("NOT_PROTOCOL".to_owned(), String::new()),
            Outcome::Transport(why) => ("NO_ANSWER".to_owned(), why.name().to_owned()),
        };
        let _ = writeln!(
            line,
            r#"],"attempt":{},"http":{},"status":"{status}","message_code":"{code}","latency_ms":{:.3}}}"#,
            r.attempt,
            r.http,
            r.latency.as_secs_f64() * 1000.0
        );
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}
