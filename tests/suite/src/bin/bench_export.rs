//! Benchmark of "Export Usage to Cisco": 100,000 reports of 1,000 devices exported by the real
//! `outpost admin export-usage` command; prints the time and the command's peak RSS, against the
//! target of 200 MiB. Run it with `scripts/bench-export` (release build).

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark aborts on a failed step"
)]

use std::time::Instant;

use nix::sys::resource::{UsageWho, getrusage};
use outpost_pi_sim::Device;
use outpost_tests::{TestApp, outpost_binary};

const DEVICES: i64 = 1_000;
const REPORTS_PER_DEVICE: i64 = 100;
const TARGET_MIB: f64 = 200.0;

/// Runs `outpost` with `args` in a fresh child of a fresh process and returns its output and its
/// peak RSS in MiB. The bench re-executes itself as that process because `RUSAGE_CHILDREN` keeps
/// the maximum over every child ever waited for, and this one also ran `initdb` and `pg_ctl`.
fn run_measured(args: &[&str], env: &[(&str, &str)]) -> (std::process::Output, f64) {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.arg(MEASURE).arg(outpost_binary()).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run the measuring process");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let peak_kib: f64 = stderr
        .lines()
        .find_map(|line| line.strip_prefix(MEASURE))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("the measuring process printed no peak RSS: {stderr}"));
    (output, peak_kib / 1024.0)
}

/// The measuring process: runs the command given after [`MEASURE`], passes its output through and
/// prints its peak RSS in KiB on stderr.
fn measure(program: &str, args: &[String]) -> ! {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .expect("run the measured command");
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    eprintln!("{MEASURE} {peak_kib}");
    std::process::exit(status.code().unwrap_or(1));
}

const MEASURE: &str = "--measure-peak-rss";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(MEASURE) {
        measure(&args[1], &args[2..]);
    }
    bench();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn bench() {
    let app = TestApp::builder().with_account("Bench").start().await;

    // A real payload (about 1.3 KB) as the template of every report.
    let mut device = Device::new("C9300-24UX", "FCWTEMPLATE");
    let template = device.next_report();
    let payload = template
        .payload
        .replace("\"report_id\":1732000000", "\"report_id\":__ID__")
        .replace("FCWTEMPLATE", "__SN__");
    let signature = template.signature.to_string().replace("'", "''");
    let started = Instant::now();
    app.execute(&format!(
        "INSERT INTO product_instances (id, account_id, lva_id, udi_pid, udi_serial_number, sudi, hostname, software_tag)
         SELECT gen_random_uuid(), a.id, l.id, 'C9300-24UX', 'BENCH' || lpad(i::text, 6, '0'),
                jsonb_build_object('udi_pid', 'C9300-24UX', 'udi_serial_number', 'BENCH' || lpad(i::text, 6, '0')),
                'sw-bench-' || i, '{tag}'
         FROM local_accounts a JOIN local_virtual_accounts l ON l.account_id = a.id, generate_series(1, {DEVICES}) i",
        tag = outpost_pi_sim::SOFTWARE_TAG
    ))
    .await;
    app.execute(&format!(
        "INSERT INTO rum_reports (account_id, pi_id, report_id, payload, signature, telemetry, source, received_at)
         SELECT account_id, pi_id, j, payload,
                -- Every report has its own signature, as on a device: 88 characters that do
                -- not compress, so the bundle's size and the gzip time are realistic.
                jsonb_set('{signature}'::jsonb, '{{value}}',
                          to_jsonb(replace(encode(sha512(convert_to(payload, 'UTF8')), 'base64'), E'\\n', ''))),
                false, 'push', now()
         FROM (SELECT p.account_id, p.id AS pi_id, j,
                      replace(replace($${payload}$$, '__ID__', j::text), '__SN__', p.udi_serial_number) AS payload
               FROM product_instances p, generate_series(1, {REPORTS_PER_DEVICE}) j) r"
    ))
    .await;
    app.execute("VACUUM ANALYZE rum_reports").await;
    let reports = app.count("SELECT count(*) FROM rum_reports").await;
    let stored_mib = app
        .count("SELECT sum(octet_length(payload)) FROM rum_reports")
        .await as f64
        / 1_048_576.0;
    println!(
        "set-up: {reports} reports ({stored_mib:.1} MiB of payloads) of {DEVICES} devices in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (output, peak_mib) = run_measured(
        &[
            "admin",
            "export-usage",
            "Bench",
            "--output",
            out.path().to_str().unwrap(),
        ],
        &[
            ("OUTPOST_DATABASE__URL", app.db.url()),
            ("OUTPOST_DATA_DIR", app.dir.path().to_str().unwrap()),
            ("OUTPOST_LOG__FILTER", "warn"),
        ],
    );
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bundle = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::metadata(&bundle).unwrap().len();

    // The bundle is small because 100,000 near-identical reports compress well; read it back to
    // prove every report is in it, byte-exact in size.
    // 100,000 reports decompress to more than the readers' default limits allow.
    let read = outpost_core::bundle::read_usage_bundle_within(
        std::fs::File::open(&bundle).unwrap(),
        "bench bundle",
        outpost_core::bundle::Limits {
            max_decompressed_bytes: 1 << 30,
            ..Default::default()
        },
    )
    .expect("read the bundle back");
    let mut bundled_reports = 0;
    let mut bundled_payload_bytes = 0;
    for file in &read.device_files {
        let parsed = outpost_core::offline_file::parse(&file.text).expect("parse a device file");
        bundled_reports += parsed.reports.len() as i64;
        bundled_payload_bytes += parsed
            .reports
            .iter()
            .map(|r| r.payload.len() as i64)
            .sum::<i64>();
    }
    assert_eq!(bundled_reports, reports, "every report is in the bundle");
    assert_eq!(
        bundled_payload_bytes,
        app.count("SELECT sum(octet_length(payload)) FROM rum_reports")
            .await
    );
    println!(
        "{}",
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or("")
    );
    println!(
        "export: {reports} reports in {seconds:.2} s ({:.0} reports/s), bundle {:.1} MiB, peak RSS of `outpost admin export-usage` {peak_mib:.1} MiB (target < {TARGET_MIB} MiB): {}",
        reports as f64 / seconds,
        bytes as f64 / 1_048_576.0,
        if peak_mib < TARGET_MIB {
            "OK"
        } else {
            "OVER TARGET"
        }
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE exported_at IS NOT NULL")
            .await,
        reports
    );
}
