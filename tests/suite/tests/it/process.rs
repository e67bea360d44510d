//! Outpost as a real process: killed with SIGKILL right after acknowledging reports, and again
//! in the middle of a sync. Nothing acknowledged is lost and the sync completes on the next run
//! without sending anything twice.

use std::time::Duration;

use outpost_core::device::Status;
use outpost_cssm_sim::{CssmSim, Endpoint, SimConfig};
use outpost_db::DbPool;
use outpost_db::embedded::maintenance_client;
use outpost_db::testing::TestDatabase;
use outpost_pi_sim::{Device, PiClient};
use outpost_tests::{OutpostProcess, eventually};

async fn count(url: &str, sql: &str) -> i64 {
    let client = maintenance_client(url).await.unwrap();
    client
        .query_one(&format!("SELECT ({sql})::bigint"), &[])
        .await
        .unwrap()
        .get(0)
}

/// A database, a CSSM simulator and the `OUTPOST_*` settings that point a process at them.
struct World {
    db: TestDatabase,
    cssm: CssmSim,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl World {
    async fn new() -> Self {
        let db = TestDatabase::create().await.unwrap();
        let cssm = CssmSim::start(SimConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        std::fs::write(path("cssm-ca.crt"), cssm.ca_certificate_pem().unwrap()).unwrap();
        std::fs::write(path("cssm-signing.crt"), cssm.signing_certificate_pem()).unwrap();
        let env = [
            ("OUTPOST_DATA_DIR", path("data")),
            ("OUTPOST_DATABASE__URL", db.url().to_owned()),
            ("OUTPOST_DEVICE__HTTPS_LISTEN", "127.0.0.1:0".into()),
            ("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0".into()),
            ("OUTPOST_CSSM__API_URL", cssm.url().to_owned()),
            ("OUTPOST_CSSM__TOKEN_URL", cssm.url().to_owned()),
            ("OUTPOST_CSSM__CA_FILE", path("cssm-ca.crt")),
            (
                "OUTPOST_CSSM__SIGNING_CERTIFICATE_FILE",
                path("cssm-signing.crt"),
            ),
            ("OUTPOST_CSSM__POLL_INTERVAL_SECS", "1".into()),
            ("OUTPOST_CSSM__POLL_ATTEMPTS", "10".into()),
            ("OUTPOST_WORKER__LEASE_SECS", "2".into()),
            ("OUTPOST_WORKER__POLL_INTERVAL_MS", "100".into()),
            ("OUTPOST_WORKER__SCHEDULES", "false".into()),
            (
                "OUTPOST_AUTH__INITIAL_ADMIN_PASSWORD",
                "process-test-password".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self { db, cssm, dir, env }
    }

    /// Creates and registers "Acme Campus" through the library, against the same database.
    async fn onboard(&self) -> outpost_db::accounts::LocalAccount {
        // The processes' data directory (their credentials key, which seals the client secret
        // registration stores), never the working directory.
        let mut settings = outpost_core::settings::Settings {
            data_dir: self.dir.path().join("data"),
            ..Default::default()
        };
        settings.cssm.api_url = self.cssm.url().to_owned();
        settings.cssm.token_url = self.cssm.url().to_owned();
        settings.cssm.ca_file = self
            .dir
            .path()
            .join("cssm-ca.crt")
            .to_str()
            .unwrap()
            .to_owned();
        let pool = DbPool::new(
            self.db.url(),
            2,
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .unwrap();
        let worker = outpost_worker::WorkerContext::new(
            pool.clone(),
            self.db.url().to_owned(),
            std::sync::Arc::new(settings),
            std::sync::Arc::new(outpost_core::clock::SystemClock),
        )
        .unwrap();
        let request = outpost_db::accounts::AccountRequest {
            name: "Acme Campus".into(),
            smart_account: "Acme Corp".into(),
            virtual_account: "Campus".into(),
            email: String::new(),
            time_zone: "UTC".into(),
            status: outpost_db::enums::AccountStatus::Approved,
            requested_by: None,
        };
        let schedule = outpost_core::schedule::Schedule::new(1, 2, 0, "UTC").unwrap();
        let (account, _) = outpost_db::accounts::create_with_default_lva(
            &mut pool.get().await.unwrap(),
            &request,
            &schedule,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        outpost_worker::registration::register_online(&worker, account.id, "test")
            .await
            .unwrap()
    }

    fn ca(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/tls/ca.crt")).unwrap()
    }

    fn log(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    async fn count(&self, sql: &str) -> i64 {
        count(self.db.url(), sql).await
    }
}

/// An HTTPS client trusting `ca`, logged in as the first admin of `admin_base`.
async fn admin_client(ca: &str, admin_base: &str) -> (reqwest::Client, String) {
    let tls = outpost_core::tls::client_config(&[ca.to_owned()], false).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let login: serde_json::Value = http
        .post(format!("{admin_base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": "admin", "password": "process-test-password" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    (http, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_outpost_keeps_acknowledged_reports_and_resumes_its_sync() {
    let world = World::new().await;
    let outpost = OutpostProcess::serve(&world.env, world.log("outpost-1.log")).await;
    let account = world.onboard().await;
    let (db, cssm) = (&world.db, &world.cssm);

    // 1. Three reports acknowledged with OK_POLL, then the power goes.
    let ca = world.ca();
    let mut device = Device::new("C9300-24UX", "FCWKILLED01");
    let reports: Vec<_> = (0..3).map(|_| device.next_report()).collect();
    let client = PiClient::new(
        &format!("{}/cslu/v1/pi/Acme%20Campus-1", outpost.device_base),
        Some(&ca),
    )
    .unwrap();
    let answer = device.push(&client, reports.clone()).await.unwrap();
    assert_eq!(answer.status, Status::OkPoll);
    outpost.kill().await;
    assert_eq!(
        count(db.url(), "SELECT count(*) FROM rum_reports").await,
        3,
        "acknowledged reports survive the kill"
    );

    // 2. Restarted, a sync is under way (reports sent, ACKs awaited) when it is killed again.
    let outpost = OutpostProcess::serve(&world.env, world.log("outpost-2.log")).await;
    cssm.set_latency(Endpoint::Poll, Duration::from_secs(3));
    let (http, token) = admin_client(&ca, &outpost.admin_base).await;
    let queued = http
        .post(format!(
            "{}/api/v1/accounts/{}/sync",
            outpost.admin_base, account.id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    eventually(30, "the reports to be sent to CSSM", || async {
        count(
            db.url(),
            "SELECT count(*) FROM cssm_uploads WHERE state = 'polling'",
        )
        .await
            == 1
    })
    .await;
    outpost.kill().await;
    assert_eq!(
        count(
            db.url(),
            "SELECT count(*) FROM jobs WHERE state = 'running'"
        )
        .await,
        1,
        "the sync died mid-way"
    );

    // 3. The next run takes the job over after its lease and completes it.
    cssm.set_latency(Endpoint::Poll, Duration::ZERO);
    let outpost = OutpostProcess::serve(&world.env, world.log("outpost-3.log")).await;
    eventually(30, "the interrupted sync to complete", || async {
        count(
            db.url(),
            "SELECT count(*) FROM jobs WHERE state = 'succeeded'",
        )
        .await
            == 1
    })
    .await;
    let received = cssm.received_reports();
    assert_eq!(
        received.len(),
        3,
        "CSSM received each report once: {received:?}"
    );
    assert!(received.iter().all(|r| !r.duplicate));
    assert_eq!(
        cssm.request_log()
            .iter()
            .filter(|r| r.endpoint == Endpoint::ReportUsage)
            .count(),
        1
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        3
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM sync_runs WHERE state = 'interrupted'")
            .await,
        1
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM sync_runs WHERE state = 'succeeded'")
            .await,
        1
    );

    // The device gets its ACK from the restarted Outpost.
    let client = PiClient::new(
        &format!("{}/cslu/v1/pi/Acme%20Campus-1", outpost.device_base),
        Some(&ca),
    )
    .unwrap();
    assert_eq!(device.poll(&client).await.unwrap(), 1);
    assert_eq!(device.acknowledged_report_ids().len(), 3);

    let log = outpost.log();
    let status = outpost.terminate().await;
    assert!(
        status.success(),
        "a SIGTERM stops Outpost cleanly ({status}):\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_worker_run_as_separate_processes() {
    let world = World::new().await;
    let api = OutpostProcess::start("api", &world.env, world.log("api.log")).await;
    assert!(!api.banner.contains("Worker:"), "{}", api.banner);
    let worker = OutpostProcess::start("worker", &world.env, world.log("worker.log")).await;
    assert!(
        worker.banner.contains("Worker:") && worker.device_base.is_empty(),
        "{}",
        worker.banner
    );
    let account = world.onboard().await;

    let ca = world.ca();
    let mut device = Device::new("C9300-48UXM", "FOCTIERS001");
    let client = PiClient::new(
        &format!("{}/cslu/v1/pi/Acme%20Campus-1", api.device_base),
        Some(&ca),
    )
    .unwrap();
    let batch = vec![device.next_report(), device.next_report()];
    assert_eq!(
        device.push(&client, batch).await.unwrap().status,
        Status::OkPoll
    );

    // The API only enqueues; the worker process picks the job up from the table.
    let (http, token) = admin_client(&ca, &api.admin_base).await;
    let queued = http
        .post(format!(
            "{}/api/v1/accounts/{}/sync",
            api.admin_base, account.id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    eventually(30, "the worker process to run the sync", || async {
        world
            .count("SELECT count(*) FROM jobs WHERE state = 'succeeded'")
            .await
            == 1
    })
    .await;
    assert_eq!(device.poll(&client).await.unwrap(), 1);
    assert_eq!(device.acknowledged_report_ids().len(), 2);
    assert!(api.terminate().await.success());
    assert!(worker.terminate().await.success());
}
