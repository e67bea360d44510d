//! The push benchmark (issue 15) cannot rot: the load generator of `pi-sim` runs against a real
//! app in both modes and its figures agree with what was stored, and a scaled-down
//! `scripts/bench-push` runs end to end and prints every figure (their size is not checked).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use outpost_pi_sim::load::{self, LoadArgs};
use outpost_tests::{TestApp, outpost_binary};

fn load_args(args: &[&str]) -> LoadArgs {
    LoadArgs::from_options(args).expect("load options")
}

/// The results file: one JSON object per request.
fn results(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("results file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_is_answered_try_again_and_every_report_is_stored_once() {
    // Two requests at a time: most of the storm is told to come back after a second.
    let app = TestApp::builder()
        .with_account("Storm")
        .with_settings(|s| {
            s.device.max_in_flight = 2;
            s.device.retry_after_secs = 1;
        })
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let results_path = dir.path().join("results.jsonl");
    let args = load_args(&[
        "--mode",
        "storm",
        "--devices",
        "40",
        "--reports-per-request",
        "2",
        "--report-bytes",
        "1000-4000",
        "--connections",
        "12",
        "--duration",
        "45",
        "--results",
        results_path.to_str().unwrap(),
    ]);
    let started = Instant::now();
    let summary = load::run(
        args,
        vec![app.tenant_url("Storm-1")],
        Some(app.ca_pem.clone()),
    )
    .await
    .expect("the storm runs");
    assert!(started.elapsed() < Duration::from_secs(45));

    let storm = summary.storm.as_ref().expect("storm figures");
    assert_eq!(
        (storm.accepted, storm.refused, storm.unfinished),
        (40, 0, 0),
        "{}",
        summary.text()
    );
    assert!(storm.max_attempts > 1, "{}", summary.text());
    assert!(summary.total.try_again > 0, "{}", summary.text());
    assert_eq!(summary.total.reports_accepted, 80);
    assert_eq!(summary.total.new_reports_accepted, 80);
    assert_eq!(summary.total.failed + summary.total.transport_errors, 0);

    // None lost, none stored twice.
    assert_eq!(app.count("SELECT count(*) FROM rum_reports").await, 80);
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances").await,
        40
    );

    // The results file has every request, and every report id with the answer it got.
    let lines = results(&results_path);
    assert_eq!(lines.len() as u64, summary.total.requests);
    let mut accepted = BTreeSet::new();
    let mut retries = 0;
    for line in &lines {
        if line["status"] == "OK_POLL" {
            for id in line["report_ids"].as_array().unwrap() {
                accepted.insert((line["udi"].to_string(), id.as_i64().unwrap()));
            }
        } else {
            assert_eq!(line["status"], "OK_TRY_AGAIN", "{line}");
            assert_eq!(line["message_code"], "TRY_AGAIN");
        }
        retries += u64::from(line["kind"] == "retry");
    }
    assert_eq!(accepted.len(), 80);
    assert!(retries > 0);
    let stored: BTreeSet<(String, i64)> = app
        .count_rows(
            "SELECT p.udi_serial_number || ' ' || r.report_id FROM rum_reports r JOIN product_instances p ON p.id = r.pi_id",
        )
        .await
        .into_iter()
        .map(|row| {
            let (serial, id) = row.split_once(' ').unwrap();
            (
                format!("\"PID:C9300-24UX,SN:{serial}\""),
                id.parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(stored, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_sends_duplicates_and_polls_and_a_quiet_tenant_has_its_own_figures() {
    let app = TestApp::builder()
        .with_account("Busy")
        .with_account("Calm")
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let results_path = dir.path().join("results.jsonl");
    let summary_path = dir.path().join("summary.txt");
    let args = load_args(&[
        "--devices",
        "20",
        "--reports-per-device",
        "8",
        "--duplicates",
        "0.2",
        "--polls",
        "0.2",
        "--connections",
        "4",
        "--rate",
        "100",
        "--duration",
        "20",
        "--quiet-url",
        &app.tenant_url("Calm-1"),
        "--quiet-rate",
        "10",
        "--quiet-devices",
        "3",
        "--results",
        results_path.to_str().unwrap(),
        "--summary",
        summary_path.to_str().unwrap(),
    ]);
    let summary = load::run(
        args,
        vec![app.tenant_url("Busy-1")],
        Some(app.ca_pem.clone()),
    )
    .await
    .expect("the load runs");
    let text = summary.text();
    let total = &summary.total;

    // 160 slots: new reports, duplicates of accepted ones, polls for accepted ones.
    let busy = &summary.tenants[0].1;
    assert_eq!(summary.tenants[0].0, "Busy-1");
    assert_eq!(busy.requests, 160, "{text}");
    assert!(
        busy.polls > 0 && busy.duplicate_reports_accepted > 0,
        "{text}"
    );
    assert_eq!(
        busy.ok_poll, busy.requests,
        "every report and every poll is answered OK_POLL (nothing is acknowledged yet): {text}"
    );
    assert_eq!(
        total.failed + total.try_again + total.transport_errors,
        0,
        "{text}"
    );
    assert_eq!(total.nonce_not_echoed, 0, "{text}");
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports r JOIN local_accounts a ON a.id = r.account_id WHERE a.name = 'Busy'")
            .await as u64,
        busy.new_reports_accepted,
        "duplicates are stored once: {text}"
    );

    // The quiet tenant sent beside the busy one, with its own latency.
    let (label, quiet) = &summary.tenants[1];
    assert_eq!(label, "quiet:Calm-1");
    assert!(
        quiet.requests > 0 && quiet.ok_poll == quiet.requests,
        "{text}"
    );
    assert!(quiet.latency.percentile_ms(0.99).is_some());
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports r JOIN local_accounts a ON a.id = r.account_id WHERE a.name = 'Calm'")
            .await as u64,
        quiet.new_reports_accepted
    );

    // The results file and the summary file say the same.
    let lines = results(&results_path);
    assert_eq!(lines.len() as u64, total.requests);
    let kinds: BTreeMap<String, usize> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l["kind"].as_str().unwrap().to_owned()).or_default() += 1;
        m
    });
    assert_eq!(kinds.get("poll").copied().unwrap_or(0) as u64, total.polls);
    assert!(kinds.contains_key("duplicate"), "{kinds:?}");
    let figures = std::fs::read_to_string(&summary_path).unwrap();
    for key in [
        "reports_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "try_again_share",
        "tenant.1.p99_ms",
    ] {
        let value = figures
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing: {figures}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("{key}={value} is not a number"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_push_quick_prints_every_figure() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin_dir = outpost_binary().parent().unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let figures_path = dir.path().join("figures.txt");
    let started = Instant::now();
    let run = tokio::process::Command::new(repo.join("scripts/bench-push"))
        .args(["--quick", "--bin-dir"])
        .arg(&bin_dir)
        .arg("--output")
        .arg(&figures_path)
        .env_remove("OUTPOST_DATABASE__URL")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("bench-push --quick ends within 2 minutes")
        .expect("run bench-push");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    eprintln!(
        "bench-push --quick took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for row in [
        "| reports/s accepted |",
        "| latency p50 / p95 / p99 (ms) |",
        "| OK_TRY_AGAIN share |",
        "| pgbench reference, rows/s",
        "| ratio to the reference |",
        "| Outpost peak RSS (MiB) |",
        "| DB statements (round trips) per report",
        "| DB commits per report",
        "| rum_reports rows added / new reports accepted |",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no row {row} in:\n{stdout}"));
        let cell = line.rsplit('|').nth(1).unwrap().trim();
        assert!(
            cell.chars().any(|c| c.is_ascii_digit()) && !cell.contains("n/a"),
            "{row} has no figure: {line}"
        );
    }
    let figures = std::fs::read_to_string(&figures_path).unwrap();
    for key in [
        "col.0.reports_per_s",
        "col.0.p50_ms",
        "col.0.p95_ms",
        "col.0.p99_ms",
        "col.0.try_again_share",
        "col.0.peak_rss_mib",
        "col.0.db_statements",
        "col.0.db_commits",
        "reference_rows_per_s",
    ] {
        let value = figures
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing:\n{figures}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("{key}={value} is not a number"));
    }
}
