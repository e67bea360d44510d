//! The web UI in a real browser: Debian's chromium driven by playwright-core (`tests/ui/ui.mjs`)
//! against a running Outpost. `scripts/test` installs chromium and the npm package.

use std::path::PathBuf;
use tokio::process::Command;

use outpost_core::device::{AuthorizationMode, AuthorizationScope};
use outpost_db::enums::JobState;
use outpost_pi_sim::Device;
use outpost_pi_sim::server::{DeviceFarm, FarmDevice};
use outpost_tests::{ADMIN_PASSWORD, TestApp};
use reqwest::Method;
use serde_json::json;

/// The export-controlled license the simulator's Campus VA holds.
const HSEC: &str = "regid.2019-03.com.cisco.HSECK9,1.0_a9f6ad7c-7d0b-4e4c-9c1b-4b4c0c6c3d6e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_admin_manages_the_inventory_in_the_browser() {
    let ui = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../ui"));
    assert!(
        ui.join("node_modules/playwright-core").is_dir()
            && PathBuf::from("/usr/bin/chromium").is_file(),
        "the UI test needs chromium and tests/ui/node_modules: run scripts/test, which installs both"
    );
    let app = TestApp::builder()
        .with_account("Acme Campus")
        .with_account("Acme Branch")
        .start()
        .await;
    let admin = app.admin_token().await;
    let id = app.account("Acme Campus").await.id;
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{id}/virtual-accounts"),
            &admin,
            Some(json!({ "name": "Routers" })),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(app.sync("Acme Campus").await, JobState::Succeeded);
    // A branch stack uses HSECK9 and has asked for its codes; CSSM issued them, and the stack
    // has not installed them yet.
    assert_eq!(app.sync("Acme Branch").await, JobState::Succeeded);
    let mut stack = Device::new("C9300X-24HX", "FOCUISTK1")
        .with_standby("FOCUISTK2")
        .with_member("FOCUISTK3");
    stack.entitlement_tag = HSEC.into();
    app.push_next_report(&mut stack, "Acme Branch-1").await;
    let ask = stack.authorization_request(
        &[(HSEC, 1)],
        AuthorizationMode::Add,
        AuthorizationScope::All,
    );
    let (status, _) = app.pi_client("Acme Branch-1").exchange(&ask).await.unwrap();
    assert_eq!(status, 200);
    app.run_jobs().await;
    assert_eq!(
        app.count("SELECT count(*) FROM authorizations WHERE state = 'issued'")
            .await,
        3
    );

    // And a router the branch pulls from over NETCONF, known by its address only.
    let farm = DeviceFarm::start_trusting(
        vec![FarmDevice {
            device: Device::new("ISR4451-X", "FGLUINC01"),
            username: "netops".into(),
            password: "S3cret!pw".into(),
        }],
        0,
        0,
        Some(&app.ca_pem),
    )
    .await
    .unwrap();
    let branch = app.account("Acme Branch").await.id;
    let (status, answer) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{branch}/product-instances"),
            &admin,
            Some(json!({ "host": "127.0.0.1", "port": farm.netconf_port(0), "connect_method": "netconf",
                         "username": "netops", "password": "S3cret!pw" })),
        )
        .await;
    assert_eq!(status, 201, "{answer}");

    let screenshots = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/ui-screenshots"
    ));
    let base = app.admin_base.clone();
    let node = Command::new("node")
        .arg(ui.join("ui.mjs"))
        .env("OUTPOST_UI_URL", base)
        .env("OUTPOST_UI_PASSWORD", ADMIN_PASSWORD)
        .env("OUTPOST_UI_ACCOUNT", "Acme Campus")
        .env("OUTPOST_UI_BRANCH", "Acme Branch")
        .env("OUTPOST_UI_DEVICE", "FOCUISTK1")
        .env("OUTPOST_UI_PULLED", "FGLUINC01")
        .env("OUTPOST_UI_HOST_KEY", &farm.host_key_fingerprint)
        .env("OUTPOST_UI_SCREENSHOTS", &screenshots)
        .output();
    tokio::pin!(node);
    // The worker runs beside the browser, as in production: the UI's registration is a job.
    let output = loop {
        tokio::select! {
            output = &mut node => break output.expect("run node (package nodejs)"),
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                app.run_jobs().await;
            }
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser walk failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ui: done"), "{stdout}");
    // What the browser did is in the database, not only on the screen.
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances").await,
        122
    );
    assert_eq!(
        farm.calls(farm.port(0)),
        ["netconf:rum-save-usage-unreported"],
        "the browser's pull reached the router"
    );
    farm.stop().await;
    assert_eq!(
        app.count_rows("SELECT url || ' ' || array_to_string(kinds, ',') FROM webhooks")
            .await,
        ["https://hooks.example.com/outpost reporting_overdue"]
    );
    assert_eq!(
        app.count("SELECT count(*) FROM local_accounts WHERE reporting_interval_days = 30")
            .await,
        1
    );
    assert_eq!(
        app.count_rows(
            "SELECT kind || ' ' || enabled || ' ' || hour || ' ' || time_zone FROM schedules WHERE kind = 'device_pull'"
        )
        .await,
        ["device_pull true 3 Europe/Paris"]
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM local_accounts WHERE name = 'UI Labs' AND status = 'inactive' AND status_reason = 'retired' AND registered_at IS NOT NULL"
        )
        .await,
        1
    );
}
