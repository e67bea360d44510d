//! Webhooks: an account's HTTPS endpoint receives its alerts as JSON signed with HMAC, retried
//! with backoff, with every attempt in the delivery log.

use chrono::{DateTime, Duration, Utc};
use outpost_core::clock::ManualClock;
use outpost_core::crypto::hmac_sha256_hex;
use outpost_db::jobs::{self, JobPayload, catalog::DeadlineSweep};
use outpost_pi_sim::Device;
use outpost_tests::{TestApp, WebhookReceiver, error_code};
use reqwest::Method;
use serde_json::{Value, json};

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() + 86_400, 0).unwrap()
}

/// Checks `t=<ts>,v1=<hex>` against the secret; returns the timestamp.
fn verify_signature(header: &str, secret: &str, body: &str) -> i64 {
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature header {header:?}"));
    let expected = hmac_sha256_hex(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    assert_eq!(
        v1, expected,
        "the HMAC covers the timestamp and the exact body"
    );
    t.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_a_signed_reporting_overdue_event_on_the_third_try() {
    let receiver = WebhookReceiver::start(2).await;
    let clock = ManualClock::new(start());
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account("Acme")
        .with_webhook_receiver(&receiver)
        .start()
        .await;
    let admin = app.admin_token().await;
    let account = app.account("Acme").await.id;
    let hooks = format!("/api/v1/accounts/{account}/webhooks");

    // Bad endpoints are refused and change nothing.
    for (body, why) in [
        (
            json!({ "url": receiver.url.replace("https", "http") }),
            "plain http",
        ),
        (json!({ "url": "https://" }), "no host"),
        (
            json!({ "url": receiver.url, "secret": "short" }),
            "short secret",
        ),
        (
            json!({ "url": "https://user:pw@example.com/x" }),
            "credentials in the URL",
        ),
    ] {
        let (status, answer) = app.api(Method::POST, &hooks, &admin, Some(body)).await;
        assert_eq!(
            (status, error_code(&answer)),
            (422, "invalid_value"),
            "{why}: {answer}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM webhooks").await, 0);

    let (status, created) = app
        .api(
            Method::POST,
            &hooks,
            &admin,
            Some(json!({ "url": receiver.url, "kinds": ["reporting_overdue"] })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32);
    let (_, listed) = app.api(Method::GET, &hooks, &admin, None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(
        listed["items"][0].get("secret").is_none(),
        "the secret is shown once: {listed}"
    );

    // A device on a 30-day interval reports once, then goes quiet.
    app.execute("UPDATE local_accounts SET reporting_interval_days = 30")
        .await;
    let mut device = Device::new("C9300-24UX", "FCWHOOK0001");
    app.push_next_report(&mut device, "Acme-1").await;
    // "Usage report from product instance" is raised, but this webhook only wants overdue.
    app.run_jobs().await;
    assert!(receiver.received().is_empty());

    clock.advance(Duration::days(31));
    let now = app.clock.now();
    jobs::enqueue(&mut *app.conn().await, &DeadlineSweep {}.job(now, 3), now)
        .await
        .unwrap();
    app.run_jobs().await;
    // Attempt 1 failed; the retries wait for the backoff (1 s, then 2 s in tests).
    assert_eq!(receiver.received().len(), 1);
    app.run_jobs().await;
    assert_eq!(receiver.received().len(), 1, "no retry before the backoff");
    for expected in [2, 3] {
        clock.advance(Duration::seconds(5));
        app.run_jobs().await;
        assert_eq!(receiver.received().len(), expected);
    }
    clock.advance(Duration::minutes(10));
    app.run_jobs().await;

    let received = receiver.received();
    let answered: Vec<u16> = received.iter().map(|r| r.answered).collect();
    assert_eq!(
        answered,
        [500, 500, 204],
        "delivered on the third try, then never again"
    );
    let last = &received[2];
    assert_eq!(
        last.body, received[0].body,
        "each attempt sends the same event"
    );
    let stamp = verify_signature(&last.headers["x-outpost-signature"], &secret, &last.body);
    assert!(
        (stamp - app.clock.now().timestamp()).abs() < 900,
        "signed at send time"
    );
    assert_eq!(last.headers["x-outpost-event"], "alert.raised");
    assert_eq!(last.headers["content-type"], "application/json");
    let event: Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(event["alert"]["kind"], "reporting_overdue");
    assert_eq!(event["alert"]["message"], "Reporting overdue (1 days)");
    assert_eq!(event["account"]["name"], "Acme");
    assert_eq!(
        event["product_instance"]["udi_serial_number"],
        "FCWHOOK0001"
    );

    // The delivery log shows the three attempts.
    let webhook = created["id"].as_str().unwrap();
    let (status, log) = app
        .api(
            Method::GET,
            &format!("{hooks}/{webhook}/deliveries"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let delivery = &log["items"][0];
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(
        delivery["id"].as_str(),
        Some(last.headers["x-outpost-delivery"].as_str())
    );
    let codes: Vec<Value> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(500), json!(204)]);
    assert_eq!(
        delivery["attempts"][0]["error"],
        "the endpoint answered HTTP 500 Internal Server Error"
    );
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_ends_in_a_failed_delivery_with_its_reasons() {
    let receiver = WebhookReceiver::start(0).await;
    let clock = ManualClock::new(start());
    let mut app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account("Acme")
        .with_webhook_receiver(&receiver)
        .start()
        .await;
    let admin = app.admin_token().await;
    let account = app.account("Acme").await.id;
    let hooks = format!("/api/v1/accounts/{account}/webhooks");
    // Nothing listens there once the receiver stops.
    let url = receiver.url.clone();
    receiver.stop().await;
    let (status, created) = app
        .api(
            Method::POST,
            &hooks,
            &admin,
            Some(json!({ "url": url, "secret": "0123456789abcdef" })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let mut device = Device::new("C9300-24UX", "FCWHOOK0002");
    app.push_next_report(&mut device, "Acme-1").await;
    app.expect_failed_jobs(1);
    for _ in 0..10 {
        app.run_jobs().await;
        clock.advance(Duration::hours(2));
    }
    let (_, log) = app
        .api(
            Method::GET,
            &format!("{hooks}/{}/deliveries", created["id"].as_str().unwrap()),
            &admin,
            None,
        )
        .await;
    let delivery = &log["items"][0];
    assert_eq!(delivery["state"], "failed", "{log}");
    assert_eq!(delivery["body"]["alert"]["kind"], "usage_report_received");
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 8);
    assert!(
        attempts
            .iter()
            .all(|a| a["status_code"].is_null() && a["error"].as_str().unwrap().contains("onnect")),
        "{attempts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_cannot_reach_private_addresses_by_default() {
    let receiver = WebhookReceiver::start(0).await;
    let ca_file = receiver.ca_file();
    let mut app = TestApp::builder()
        .with_account("Acme")
        .with_settings(move |s| s.webhooks.ca_file = ca_file)
        .start()
        .await;
    let admin = app.admin_token().await;
    let account = app.account("Acme").await.id;
    let hooks = format!("/api/v1/accounts/{account}/webhooks");
    for url in [
        receiver.url.clone(),
        "https://10.0.0.5/hook".into(),
        "https://169.254.169.254/latest/meta-data".into(),
        "https://[::1]/hook".into(),
        "https://localhost./hook".into(),
    ] {
        let (status, body) = app
            .api(Method::POST, &hooks, &admin, Some(json!({ "url": url })))
            .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("loopback or private address"),
            "{body}"
        );
    }
    // A name that resolves to loopback (as a name re-pointed after registration would) is
    // refused when connecting, and nothing reaches the receiver.
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let key =
        outpost_core::secrets::CredentialKey::load_or_create(&app.settings.credentials_key_path())
            .unwrap();
    let account_id = app.account("Acme").await.id;
    let secret =
        outpost_app::secrets::seal_webhook_secret(&key, account_id, "sixteen-chars-secret")
            .unwrap();
    app.execute(&format!(
        "INSERT INTO webhooks (id, account_id, url, secret, created_at)
         VALUES (gen_random_uuid(), '{account}', 'https://localhost:{port}/hook', '{secret}', now())"
    ))
    .await;
    let mut device = Device::new("C9300-24UX", "FCWHOOK0003");
    app.push_next_report(&mut device, "Acme-1").await;
    app.expect_failed_jobs(1);
    for _ in 0..10 {
        app.run_jobs().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let due = app
            .count("SELECT count(*) FROM jobs WHERE kind = 'webhook_delivery' AND state = 'queued'")
            .await;
        if due == 0 {
            break;
        }
        app.execute("UPDATE jobs SET run_at = now() WHERE state = 'queued'")
            .await;
    }
    assert!(
        receiver.received().is_empty(),
        "nothing reached the private address"
    );
    let errors = app
        .count_rows("SELECT DISTINCT error FROM webhook_attempts")
        .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("localhost resolves to no public address"),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_alerts_never_reach_another_accounts_webhook() {
    let receiver = WebhookReceiver::start(0).await;
    let app = TestApp::builder()
        .with_account("Acme")
        .with_account("Beta")
        .with_webhook_receiver(&receiver)
        .start()
        .await;
    let admin = app.admin_token().await;
    let beta = app.account("Beta").await.id;
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{beta}/webhooks"),
            &admin,
            Some(json!({ "url": receiver.url })),
        )
        .await;
    assert_eq!(status, 201);
    let mut acme_device = Device::new("C9300-24UX", "FCWACME001");
    app.push_next_report(&mut acme_device, "Acme-1").await;
    app.run_jobs().await;
    assert!(
        receiver.received().is_empty(),
        "Acme's alert went to Beta's webhook"
    );
    let mut beta_device = Device::new("C9300-24UX", "FCWBETA001");
    app.push_next_report(&mut beta_device, "Beta-1").await;
    app.run_jobs().await;
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let event: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(event["account"]["name"], "Beta");
    assert_eq!(event["product_instance"]["udi_serial_number"], "FCWBETA001");
}
