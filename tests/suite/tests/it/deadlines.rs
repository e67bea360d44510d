//! Reporting deadlines end to end: the device path keeps each PI's usage history, ACKs bring
//! the policy in force, and the deadline sweep raises and clears "Reporting due in N days",
//! "Reporting overdue" and "ACK overdue" as the (injected) clock moves.

use chrono::{DateTime, Duration, Utc};
use outpost_core::clock::ManualClock;
use outpost_core::device::Status;
use outpost_db::enums::JobState;
use outpost_db::jobs::{self, JobPayload, catalog::DeadlineSweep};
use outpost_pi_sim::Device;
use outpost_tests::TestApp;
use reqwest::Method;
use serde_json::json;

/// Tomorrow, to the second: inside the validity of the simulator's fresh signing certificate
/// whatever day the suite runs.
fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() + 86_400, 0).unwrap()
}

async fn sweep(app: &TestApp) {
    let now = app.clock.now();
    jobs::enqueue(&mut *app.conn().await, &DeadlineSweep {}.job(now, 3), now)
        .await
        .unwrap();
    let states: Vec<JobState> = app.run_jobs().await.into_iter().map(|(_, s)| s).collect();
    assert!(states.contains(&JobState::Succeeded), "{states:?}");
}

async fn open_alerts(app: &TestApp) -> Vec<String> {
    app.count_rows(
        "SELECT kind || ': ' || message FROM alerts WHERE cleared_at IS NULL
           AND kind IN ('reporting_due', 'reporting_overdue', 'ack_overdue', 'account_reporting_overdue')
         ORDER BY kind",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_raises_and_clears_deadline_alerts_as_the_clock_moves() {
    let clock = ManualClock::new(start());
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account("Acme")
        .start()
        .await;
    // The tenant narrows reporting to every 30 days (the Cisco default asks none for perpetual use).
    let admin = app.admin_token().await;
    let settings = format!("/api/v1/accounts/{}/settings", app.account("Acme").await.id);
    let (status, _) = app
        .api(
            Method::PUT,
            &settings,
            &admin,
            Some(json!({ "reporting_interval_days": 0 })),
        )
        .await;
    assert_eq!(status, 422);
    let (status, body) = app
        .api(
            Method::PUT,
            &settings,
            &admin,
            Some(json!({ "reporting_interval_days": 30 })),
        )
        .await;
    assert_eq!(
        (status, body["reporting_interval_days"].as_i64()),
        (200, Some(30)),
        "{body}"
    );
    let client = app.pi_client("Acme-1");
    let mut device = Device::new("C9300-24UX", "FCWDEAD0001");
    let report = device.next_report();
    assert_eq!(
        device.push(&client, vec![report]).await.unwrap().status,
        Status::OkPoll
    );
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM product_instances WHERE first_consumed_at IS NOT NULL AND last_report_at = '{}'", app.clock.now().to_rfc3339())).await,
        1,
        "the device path keeps the history the rules need"
    );

    // The PI detail shows the deadline the sweep will watch.
    let pi = app
        .count_rows("SELECT id::text FROM product_instances")
        .await
        .remove(0);
    let (_, detail) = app
        .api(
            Method::GET,
            &format!(
                "/api/v1/accounts/{}/product-instances/{pi}",
                app.account("Acme").await.id
            ),
            &admin,
            None,
        )
        .await;
    let due =
        (app.clock.now() + Duration::days(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        detail["deadlines"]["report_due"],
        json!({ "at": due, "reason": "ongoing" }),
        "{detail}"
    );
    assert_eq!(detail["deadlines"]["ack_due"], json!(due));

    sweep(&app).await;
    assert_eq!(
        open_alerts(&app).await,
        Vec::<String>::new(),
        "just reported"
    );

    clock.advance(Duration::days(20));
    sweep(&app).await;
    assert_eq!(
        open_alerts(&app).await,
        ["reporting_due: Reporting due in 10 days"]
    );

    clock.advance(Duration::days(11));
    sweep(&app).await;
    assert_eq!(
        open_alerts(&app).await,
        [
            "account_reporting_overdue: 1 product instance(s) overdue for reporting or ACK",
            "ack_overdue: ACK overdue (1 days)",
            "reporting_overdue: Reporting overdue (1 days)",
        ]
    );

    // The device reports again and CSSM acknowledges: every deadline alert clears.
    let report = device.next_report();
    assert_eq!(
        device.push(&client, vec![report]).await.unwrap().status,
        Status::OkPoll
    );
    let state = app.sync("Acme").await;
    let errors = app
        .count_rows("SELECT coalesce(last_error, '-') FROM jobs WHERE kind = 'cssm_sync'")
        .await;
    assert_eq!(state, JobState::Succeeded, "{errors:?}");
    sweep(&app).await;
    assert_eq!(open_alerts(&app).await, Vec::<String>::new());
    // The ACK carried the policy now in force for the device.
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances WHERE policy->>'type' = 'cisco-default'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_consumed_a_license_owes_nothing() {
    let clock = ManualClock::new(start());
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account("Acme")
        .start()
        .await;
    app.execute("UPDATE local_accounts SET reporting_interval_days = 30")
        .await;
    let mut device = Device::new("C9300-24UX", "FCWIDLE0001");
    device.license_count = 0;
    assert_eq!(
        app.push_next_report(&mut device, "Acme-1").await.status,
        Status::OkPoll
    );
    clock.advance(Duration::days(400));
    sweep(&app).await;
    assert_eq!(open_alerts(&app).await, Vec::<String>::new());
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances WHERE first_consumed_at IS NULL")
            .await,
        1
    );
}
