//! Benchmark of the inventory list ("SL Using Policy") at 1,000,000 product instances in one
//! account (plus 100,000 in another): the latency of list pages through the real admin API over
//! HTTPS, for the default order, deep cursor and offset pages, search and each filter. Prints
//! p50 and p95 per case. Run it with `scripts/bench-inventory` (release build).

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]
#![expect(clippy::expect_used, reason = "a benchmark aborts on a failed step")]

use std::time::{Duration, Instant};

use outpost_tests::TestApp;
use reqwest::Method;
use serde_json::Value;

const PIS: i64 = 1_000_000;
const OTHER_PIS: i64 = 100_000;
const RUNS: usize = 20;

/// Inserts `count` PIs into an account: 90 % in LVA 1, 10 % in LVA 2; half contacted in the
/// last 60 days; hostnames for most; 1 % with an open alert.
async fn populate(app: &TestApp, account: &str, prefix: &str, count: i64) {
    app.execute(&format!(
        "INSERT INTO product_instances (id, account_id, lva_id, udi_pid, udi_serial_number, hostname,
                                        connect_method, host, last_contact_at, created_at, updated_at)
         SELECT gen_random_uuid(), a.id, CASE WHEN i % 10 = 0 THEN l2.id ELSE l1.id END,
                (ARRAY['C9300-24UX', 'C9300-48P', 'C9200-24T', 'ISR4451-X'])[1 + i % 4],
                '{prefix}' || lpad(i::text, 7, '0'),
                CASE WHEN i % 7 = 0 THEN NULL ELSE 'sw-' || i || '.site' || (i % 500) END,
                CASE WHEN i % 20 = 0 THEN 'netconf' ELSE 'push' END,
                CASE WHEN i % 20 = 0 THEN '10.' || (i / 65536 % 256) || '.' || (i / 256 % 256) || '.' || (i % 256) END,
                CASE WHEN i % 2 = 0 THEN now() - (i % 60) * interval '1 day' END,
                now(), now()
         FROM local_accounts a
         JOIN local_virtual_accounts l1 ON l1.account_id = a.id AND l1.number = 1
         JOIN local_virtual_accounts l2 ON l2.account_id = a.id AND l2.number = 2,
              generate_series(1, {count}) i
         WHERE a.name = '{account}'"
    ))
    .await;
    app.execute(&format!(
        "INSERT INTO alerts (account_id, pi_id, kind, severity, message, raised_at, updated_at)
         SELECT account_id, id, 'usage_report_received', 'info', 'Usage report from product instance', now(), now()
         FROM product_instances p
         WHERE p.account_id = (SELECT id FROM local_accounts WHERE name = '{account}')
           AND right(p.udi_serial_number, 2) = '00'"
    ))
    .await;
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let app = TestApp::builder()
        .with_account("Bench")
        .with_account("Other")
        .start()
        .await;
    let admin = app.admin_token().await;
    let started = Instant::now();
    for name in ["Bench", "Other"] {
        let id = app.account(name).await.id;
        let (status, _) = app
            .api(
                Method::POST,
                &format!("/api/v1/accounts/{id}/virtual-accounts"),
                &admin,
                Some(serde_json::json!({ "name": "Lab" })),
            )
            .await;
        assert_eq!(status, 201);
    }
    populate(&app, "Bench", "FCW", PIS).await;
    populate(&app, "Other", "OTH", OTHER_PIS).await;
    app.execute("VACUUM ANALYZE product_instances").await;
    app.execute("VACUUM ANALYZE alerts").await;
    println!(
        "set-up: {} product instances ({PIS} in the benchmarked account) in {:.1} s",
        app.count("SELECT count(*) FROM product_instances").await,
        started.elapsed().as_secs_f64()
    );

    // For studying query plans by hand: keep the populated database for ten minutes.
    if std::env::var_os("BENCH_INVENTORY_HOLD").is_some() {
        println!("database: {}", app.db.url());
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    let account = app.account("Bench").await.id;
    let base = format!("/api/v1/accounts/{account}/product-instances?per_page=50");
    // A cursor 600,000 rows deep, reached once through an (unmeasured) offset page.
    let (_, deep) = app
        .api(
            Method::GET,
            &format!("{base}&page=12000&count=none"),
            &admin,
            None,
        )
        .await;
    let deep_cursor = deep["next_cursor"]
        .as_str()
        .expect("a deep cursor")
        .to_owned();

    let cases: Vec<(&str, String)> = vec![
        ("first page, by UDI", format!("{base}&count=none")),
        ("first page, by UDI, total capped at 10,000", base.clone()),
        (
            "first page, by UDI, exact total",
            format!("{base}&count=exact"),
        ),
        (
            "cursor page 600,000 rows deep",
            format!("{base}&count=none&cursor={deep_cursor}"),
        ),
        (
            "offset page 100 (rows 4,950-5,000)",
            format!("{base}&count=none&page=100"),
        ),
        (
            "offset page 12,000 (rows 600,000)",
            format!("{base}&count=none&page=12000"),
        ),
        (
            "by hostname, descending",
            format!("{base}&count=none&sort=hostname&order=desc"),
        ),
        (
            "by last contact, descending",
            format!("{base}&count=none&sort=last_contact&order=desc"),
        ),
        (
            "search one serial (q=FCW0500001), total",
            format!("{base}&q=FCW0500001"),
        ),
        (
            "search a site (q=.site123)",
            format!("{base}&count=none&q=.site123"),
        ),
        (
            "search a site (q=.site123), total",
            format!("{base}&q=.site123"),
        ),
        (
            "search an address (q=10.7.), total",
            format!("{base}&q=10.7."),
        ),
        (
            "filter alert=any (1 %)",
            format!("{base}&count=none&alert=any"),
        ),
        ("filter alert=any (1 %), total", format!("{base}&alert=any")),
        (
            "filter connect_method=netconf (5 %)",
            format!("{base}&count=none&connect_method=netconf"),
        ),
        (
            "filter connect_method=netconf, total",
            format!("{base}&connect_method=netconf"),
        ),
        (
            "filter connect_method=netconf, exact total",
            format!("{base}&count=exact&connect_method=netconf"),
        ),
        (
            "filter not contacted for 30 days, total",
            format!("{base}&last_contact_older_than_days=30"),
        ),
        (
            "filter lva=2, by hostname, total",
            format!("{base}&lva=2&sort=hostname"),
        ),
    ];
    println!(
        "{:<46} {:>8} {:>8} {:>10}",
        "case (50 rows a page)", "p50 ms", "p95 ms", "total"
    );
    for (name, path) in cases {
        let mut times = Vec::with_capacity(RUNS);
        let mut total = Value::Null;
        for _ in 0..RUNS {
            let began = Instant::now();
            let (status, body) = app.api(Method::GET, &path, &admin, None).await;
            times.push(began.elapsed());
            assert_eq!(status, 200, "{name}: {body}");
            total = match (&body["total"], body["total_exceeds"].as_bool()) {
                (Value::Null, _) => Value::Null,
                (t, Some(true)) => Value::String(format!(">{t}")),
                (t, _) => t.clone(),
            };
        }
        times.sort();
        println!(
            "{name:<46} {:>8.1} {:>8.1} {:>10}",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            total
        );
    }
}
