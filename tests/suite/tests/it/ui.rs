//! The web UI in a real browser: Debian's chromium driven by playwright-core (`tests/ui/ui.mjs`)
//! against a running Outpost. `scripts/test` installs chromium and the npm package.

use std::path::PathBuf;
use tokio::process::Command;

use outpost_db::enums::JobState;
use outpost_tests::{ADMIN_PASSWORD, TestApp};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_admin_manages_the_inventory_in_the_browser() {
    let ui = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../ui"));
    assert!(
        ui.join("node_modules/playwright-core").is_dir()
            && PathBuf::from("/usr/bin/chromium").is_file(),
        "the UI test needs chromium and tests/ui/node_modules: run scripts/test, which installs both"
    );
    let app = TestApp::builder().with_account("Acme Campus").start().await;
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
        120
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM local_accounts WHERE name = 'UI Labs' AND status = 'inactive' AND status_reason = 'retired' AND registered_at IS NOT NULL"
        )
        .await,
        1
    );
}
