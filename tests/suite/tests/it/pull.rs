//! Pulling from devices over the IOS-XE native REST API, RESTCONF and NETCONF over SSH: on
//! demand and on a schedule, ACKs installed back on the devices, certificates and host keys
//! pinned on first contact, and a large pull in which unreachable, hung and misconfigured
//! devices each get their alert without holding up the rest.

use chrono::{DateTime, Duration, Utc};
use outpost_core::clock::{Clock, ManualClock};
use outpost_core::signed_file::PolicyData;
use outpost_cssm_sim::SimConfig;
use outpost_db::enums::JobState;
use outpost_db::jobs;
use outpost_pi_sim::Device;
use outpost_pi_sim::server::{DeviceFarm, FarmDevice};
use outpost_tests::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

fn farm_device(serial: &str) -> FarmDevice {
    FarmDevice {
        device: Device::new("C9300-48P", serial),
        username: "netops".into(),
        password: "S3cret!pw".into(),
    }
}

/// Runs the account's pull now; returns the job's state and result.
async fn pull_now(app: &TestApp, token: &str, body: Value) -> (JobState, Value) {
    let account = app.account("Acme").await.id;
    let (status, answer) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{account}/pull"),
            token,
            Some(body),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    app.run_jobs().await;
    let id = answer["job_id"].as_str().unwrap().parse().unwrap();
    let job = jobs::find(&mut *app.conn().await, id).await.unwrap();
    (job.state, job.result.unwrap_or(Value::Null))
}

/// Turns on the account's daily pull schedule at 03:00 UTC, moves the clock past its next run
/// and lets the scheduler enqueue it and the worker run it; returns the pull's result.
async fn pull_on_schedule(app: &TestApp, clock: &ManualClock, token: &str) -> Value {
    let account = app.account("Acme").await.id;
    let (status, schedule) = app
        .api(Method::PUT, &format!("/api/v1/accounts/{account}/schedules/device-pull"), token,
            Some(json!({ "enabled": true, "every_days": 1, "hour": 3, "minute": 0, "time_zone": "UTC" })))
        .await;
    assert_eq!(status, 200, "{schedule}");
    let next: DateTime<Utc> = schedule["next_run_at"].as_str().unwrap().parse().unwrap();
    clock.set(next + Duration::seconds(1));
    let scheduler = outpost_worker::scheduler::Scheduler::new(app.worker.clone());
    assert!(scheduler.tick().await.unwrap() >= 1);
    let ran = app.run_jobs().await;
    let mut conn = app.conn().await;
    for (id, _) in ran {
        let job = jobs::find(&mut conn, id).await.unwrap();
        if job.kind == "device_pull" {
            assert_eq!(job.state, JobState::Succeeded, "{:?}", job.last_error);
            return job.result.unwrap_or(Value::Null);
        }
    }
    panic!("the schedule ran no device_pull");
}

/// Posts a PI to account "Acme"; returns the status and answer.
async fn post_pi(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let account = app.account("Acme").await.id;
    let (status, answer) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{account}/product-instances"),
            token,
            Some(body),
        )
        .await;
    (status, answer)
}

/// Adds a PI to account "Acme"; it must be taken.
async fn add_pi(app: &TestApp, token: &str, body: Value) {
    let (status, answer) = post_pi(app, token, body).await;
    assert_eq!(status, 201, "{answer}");
}

/// Adds a PI Outpost pulls from over `method`.
async fn add_pulled(app: &TestApp, token: &str, method: &str, port: u16, password: &str) {
    let body = json!({ "host": "127.0.0.1", "port": port, "connect_method": method,
                       "username": "netops", "password": password });
    add_pi(app, token, body).await;
}

/// Account "Acme" on a manual clock, and simulated devices with these serials that reach
/// Outpost's one-time URLs.
async fn acme_with_farm(serials: &[&str]) -> (ManualClock, TestApp, DeviceFarm) {
    let clock = ManualClock::new(start());
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account("Acme")
        .start()
        .await;
    let devices = serials.iter().map(|s| farm_device(s)).collect();
    let farm = DeviceFarm::start_trusting(devices, 0, 0, Some(&app.ca_pem))
        .await
        .unwrap();
    (clock, app, farm)
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() + 86_400, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_devices_are_pulled_on_demand_and_on_schedule_and_get_their_acks() {
    let farm = DeviceFarm::start(
        vec![farm_device("FOCPULL001"), farm_device("FOCPULL002")],
        0,
        0,
    )
    .await
    .unwrap();
    let clock = ManualClock::new(start());
    // CSSM sends a custom policy inside its ACKs.
    let policy = PolicyData {
        name: "Acme pulled".into(),
        ..PolicyData::cisco_default()
    };
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_cssm(SimConfig {
            policy: Some(policy),
            ..SimConfig::default()
        })
        .with_account("Acme")
        .start()
        .await;
    let admin = app.admin_token().await;
    let account = app.account("Acme").await.id;
    // One device known by UDI, one added by host only.
    for body in [
        json!({ "udi_pid": "C9300-48P", "udi_serial_number": "FOCPULL001", "host": "127.0.0.1", "port": farm.port(0),
                "connect_method": "rest", "username": "netops", "password": "S3cret!pw" }),
        json!({ "host": "127.0.0.1", "port": farm.port(1), "connect_method": "rest", "username": "netops", "password": "S3cret!pw" }),
    ] {
        add_pi(&app, &admin, body).await;
    }

    // "Synchronise now with the device" waits 60 s unless told otherwise.
    let (status, answer) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{account}/pull"),
            &admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["devices"], 2);
    assert!(
        app.run_jobs().await.is_empty(),
        "nothing runs before the delay"
    );
    clock.advance(Duration::seconds(61));
    let ran = app.run_jobs().await;
    assert_eq!(ran.len(), 1);
    let job = jobs::find(&mut *app.conn().await, ran[0].0).await.unwrap();
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{} {:?} {:?}",
        job.kind,
        job.last_error,
        job.result
    );
    let result = job.result.unwrap();
    assert_eq!(
        (result["collected"].as_i64(), result["reports_new"].as_i64()),
        (Some(2), Some(2)),
        "{result}"
    );
    assert_eq!(
        app.count_rows("SELECT udi_serial_number || ' ' || (peer_fingerprint IS NOT NULL) FROM product_instances ORDER BY 1").await,
        ["FOCPULL001 true", "FOCPULL002 true"],
        "the host-only PI learnt its UDI; both certificates are pinned"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE source = 'pull'")
            .await,
        2
    );

    // CSSM acknowledges; the next pull installs each ACK on its device.
    let synced = app.sync("Acme").await;
    let errors = app
        .count_rows("SELECT coalesce(last_error, '-') FROM jobs WHERE kind = 'cssm_sync'")
        .await;
    assert_eq!(synced, JobState::Succeeded, "{errors:?}");
    let (state, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(state, JobState::Succeeded);
    assert_eq!(result["acks_installed"], 2, "{result}");
    for i in 0..2 {
        let imported = farm.imported(farm.port(i));
        assert_eq!(imported.len(), 1, "device {i}");
        assert!(imported[0].starts_with("<smartLicense><smartLicenseRumAck>"));
        assert!(
            imported[0].contains("<smartLicensePolicy>"),
            "the policy rides in the ACK file"
        );
        assert_eq!(
            farm.calls(farm.port(i)),
            [
                "close-reports",
                "all-reports",
                "import",
                "close-reports",
                "all-reports"
            ]
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM acks WHERE delivered_at IS NULL")
            .await,
        0
    );
    // So the policy kept for each device's next answer counts as handed over with its ACK.
    assert_eq!(
        app.count_rows("SELECT kind || ' ' || (delivered_at IS NOT NULL) FROM pi_files")
            .await,
        ["policy true", "policy true"]
    );

    // The pull schedule: every day at 03:00 UTC.
    let result = pull_on_schedule(&app, &clock, &admin).await;
    assert_eq!(result["collected"], 2, "{result}");
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind = 'device_pull' AND state = 'succeeded'")
            .await,
        3
    );
    // Each pull closes one new report per device.
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE source = 'pull'")
            .await,
        6
    );

    // A device presenting another certificate than on first contact is not trusted.
    app.execute("UPDATE product_instances SET peer_fingerprint = repeat('0', 64) WHERE udi_serial_number = 'FOCPULL001'").await;
    let (_, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(result["failed"]["certificate_changed"], 1, "{result}");
    let alert = app
        .count_rows("SELECT message FROM alerts WHERE kind = 'pull_failed' AND cleared_at IS NULL")
        .await;
    assert_eq!(alert.len(), 1);
    assert!(
        alert[0].starts_with("Pull failed: certificate changed: the device presented certificate"),
        "{alert:?}"
    );
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_of_200_devices_collects_175_and_names_what_went_wrong_with_25() {
    let app = TestApp::builder()
        .with_account("Acme")
        .with_settings(|s| {
            s.pull.device_timeout_secs = 3;
            s.pull.concurrency = 16;
            s.database.pool_size = 20;
        })
        .start()
        .await;
    // 180 answering devices, a third each over REST, RESTCONF and NETCONF (5 of them refuse
    // the credentials Outpost has), 15 where nothing listens and 5 that accept connections
    // and never answer.
    let devices: Vec<FarmDevice> = (0..180)
        .map(|i| farm_device(&format!("FOCBULK{i:04}")))
        .collect();
    let farm = DeviceFarm::start_trusting(devices, 5, 15, Some(&app.ca_pem))
        .await
        .unwrap();
    let admin = app.admin_token().await;
    let account = app.account("Acme").await.id;
    let mut csv = String::from(
        "udi_pid,udi_serial_number,hostname,host,port,connect_method,username,password,lva\n",
    );
    for i in 0..180 {
        let password = if i < 5 { "wrong-password" } else { "S3cret!pw" };
        let (method, port) = match i % 3 {
            0 => ("rest", farm.port(i)),
            1 => ("restconf", farm.port(i)),
            _ => ("netconf", farm.netconf_port(i)),
        };
        csv.push_str(&format!(
            "C9300-48P,FOCBULK{i:04},bulk-{i},127.0.0.1,{port},{method},netops,{password},1\n"
        ));
    }
    // Half of those over REST, half over NETCONF: neither may hold up the rest.
    for (i, port) in farm.unreachable.iter().chain(&farm.hung).enumerate() {
        let method = if i % 2 == 0 { "rest" } else { "netconf" };
        csv.push_str(&format!(
            "C9300-48P,FOCDOWN{i:04},down-{i},127.0.0.1,{port},{method},netops,S3cret!pw,1\n"
        ));
    }
    // And one behind NAT, which is never pulled.
    csv.push_str("C9300-48P,FOCNAT0001,nat-1,10.9.9.9,443,rest,netops,S3cret!pw,1\n");
    let (status, body) = app
        .post_csv(
            &format!("/api/v1/accounts/{account}/product-instances/import"),
            &admin,
            csv,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.execute(
        "UPDATE product_instances SET behind_nat = true WHERE udi_serial_number = 'FOCNAT0001'",
    )
    .await;

    let started = std::time::Instant::now();
    let (state, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    let took = started.elapsed();
    assert_eq!(state, JobState::Succeeded, "{result}");
    assert_eq!(result["devices"], 200, "{result}");
    assert_eq!(result["collected"], 175, "{result}");
    let alerts = app
        .count_rows(
            "SELECT p.udi_serial_number || ': ' || a.message FROM alerts a JOIN product_instances p ON p.id = a.pi_id
              WHERE a.kind = 'pull_failed' AND a.cleared_at IS NULL ORDER BY 1",
        )
        .await;
    assert_eq!(
        result["failed"],
        json!({ "auth_failed": 5, "unreachable": 20 }),
        "{result} {alerts:#?}"
    );
    assert_eq!(result["behind_nat_skipped"], 1, "{result}");
    assert_eq!(app.count("SELECT count(*) FROM rum_reports").await, 175);
    // Every failed device carries its reason; none of the others has an alert.
    assert_eq!(alerts.len(), 25, "{alerts:?}");
    for alert in &alerts[..20] {
        assert!(
            alert.starts_with("FOCBULK000")
                && (alert.contains("Pull failed: authentication failed (HTTP 401")
                    || alert.contains(
                        "Pull failed: authentication failed (the device refused the SSH password login"
                    ))
                || alert.starts_with("FOCDOWN") && alert.contains("Pull failed: unreachable"),
            "{alert}"
        );
    }
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.contains("authentication failed"))
            .count(),
        5
    );
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.contains("no complete answer within 3 s"))
            .count(),
        5,
        "{alerts:?}"
    );
    // The hung devices cost one timeout each, in parallel with the rest (a figure, not a test:
    // about 5 s on the 2-core build machine).
    println!("pull of 200 devices took {took:?}");
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restconf_devices_upload_to_one_time_urls_and_read_their_acks_from_them() {
    let (clock, app, farm) = acme_with_farm(&["FOCRCONF01", "FOCRCONF02"]).await;
    let admin = app.admin_token().await;
    let account = app.account("Acme").await.id;
    for i in 0..2 {
        add_pulled(&app, &admin, "restconf", farm.port(i), "S3cret!pw").await;
    }
    let (state, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(state, JobState::Succeeded, "{result}");
    assert_eq!(
        (result["collected"].as_i64(), result["reports_new"].as_i64()),
        (Some(2), Some(2)),
        "{result}"
    );
    assert_eq!(
        farm.calls(farm.port(0)),
        ["cisco-smart-license:rum-save-usage-unreported"]
    );
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances WHERE udi_serial_number LIKE 'FOCRCONF%' AND sudi ? 'udi_pid'").await,
        2,
        "each PI learnt its UDI from the file it uploaded"
    );
    // Each one-time URL took exactly one upload.
    assert_eq!(app.count("SELECT count(*) FROM pull_drops WHERE purpose = 'upload' AND used_at IS NOT NULL AND reports = 1").await, 2);

    // CSSM acknowledges; the next pull hands each device its ACK through import-file.
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let (state, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(state, JobState::Succeeded, "{result}");
    assert_eq!(result["acks_installed"], 2, "{result}");
    for i in 0..2 {
        let imported = farm.imported(farm.port(i));
        assert_eq!(imported.len(), 1);
        assert!(imported[0].starts_with("<smartLicense><smartLicenseRumAck>"));
    }
    assert_eq!(
        app.count("SELECT count(*) FROM acks WHERE delivered_at IS NULL")
            .await,
        0
    );
    let result = pull_on_schedule(&app, &clock, &admin).await;
    assert_eq!(
        (result["collected"].as_i64(), result["reports_new"].as_i64()),
        (Some(2), Some(2)),
        "{result}"
    );

    // A used, unknown or expired URL takes nothing and serves nothing.
    let device = app.http();
    let used_upload = format!(
        "{}/pull-drop/notatoken0000000000000/rum.xml",
        app.device_base
    );
    let response = device
        .put(&used_upload)
        .body(Device::new("C9300-48P", "X").offline_file(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let pi = app
        .count_rows("SELECT id::text FROM product_instances LIMIT 1")
        .await
        .remove(0);
    let token = {
        let mut conn = app.conn().await;
        let past = clock.now() - Duration::minutes(5);
        outpost_db::pull::create_drop(
            &mut conn,
            account,
            pi.parse().unwrap(),
            None,
            past,
            past - Duration::minutes(1),
        )
        .await
        .unwrap()
    };
    let mut sender = Device::new("C9300-48P", "FOCRCONF01");
    let report = sender.next_report();
    let file = sender.offline_file(&[report]);
    let response = device
        .put(format!("{}/pull-drop/{token}/rum.xml", app.device_base))
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404, "expired");
    let response = device
        .get(format!("{}/pull-drop/{token}/ack.xml", app.device_base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        404,
        "an upload URL serves nothing"
    );
    // A live URL takes one file, once; an empty one (nothing unreported) is fine.
    let token = {
        let mut conn = app.conn().await;
        let now = clock.now();
        outpost_db::pull::create_drop(
            &mut conn,
            account,
            pi.parse().unwrap(),
            None,
            now + Duration::minutes(5),
            now,
        )
        .await
        .unwrap()
    };
    let url = format!("{}/pull-drop/{token}/rum.xml", app.device_base);
    let first = device
        .put(&url)
        .body("<smartLicense></smartLicense>")
        .send()
        .await
        .unwrap();
    assert_eq!(
        first.status().as_u16(),
        201,
        "{}",
        first.text().await.unwrap()
    );
    let again = device
        .put(&url)
        .body("<smartLicense></smartLicense>")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404, "single use");
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netconf_devices_are_pulled_over_ssh_with_their_host_keys_pinned() {
    let (clock, app, farm) = acme_with_farm(&["FOCNCONF01", "FOCNCONF02", "FOCNCONF03"]).await;
    let admin = app.admin_token().await;
    for i in 0..2 {
        add_pulled(&app, &admin, "netconf", farm.netconf_port(i), "S3cret!pw").await;
    }
    add_pulled(
        &app,
        &admin,
        "netconf",
        farm.netconf_port(2),
        "not-the-password",
    )
    .await;

    let (state, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(state, JobState::Succeeded, "{result}");
    assert_eq!(
        (result["collected"].as_i64(), result["reports_new"].as_i64()),
        (Some(2), Some(2)),
        "{result}"
    );
    assert_eq!(result["failed"], json!({ "auth_failed": 1 }), "{result}");
    assert_eq!(
        farm.calls(farm.port(0)),
        ["netconf:rum-save-usage-unreported"]
    );
    assert_eq!(farm.calls(farm.port(2)), Vec::<String>::new());
    // The host key is recorded as `ssh-keygen -l` shows it, only for devices that let us in.
    assert_eq!(
        app.count_rows("SELECT coalesce(udi_serial_number, '?') || ' ' || coalesce(peer_fingerprint, 'none') FROM product_instances ORDER BY 1").await,
        [
            "? none".to_owned(),
            format!("FOCNCONF01 {}", farm.host_key_fingerprint),
            format!("FOCNCONF02 {}", farm.host_key_fingerprint),
        ]
    );
    let alerts = app
        .count_rows("SELECT message FROM alerts WHERE kind = 'pull_failed' AND cleared_at IS NULL")
        .await;
    assert_eq!(
        alerts,
        ["Pull failed: authentication failed (the device refused the SSH password login)"]
    );

    // CSSM acknowledges; the next pull hands each device its ACK through import-file.
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let (_, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(result["acks_installed"], 2, "{result}");
    for i in 0..2 {
        let imported = farm.imported(farm.port(i));
        assert_eq!(imported.len(), 1, "device {i}");
        assert!(imported[0].starts_with("<smartLicense><smartLicenseRumAck>"));
        assert_eq!(
            farm.calls(farm.port(i)),
            [
                "netconf:rum-save-usage-unreported",
                "netconf:import-file",
                "netconf:rum-save-usage-unreported"
            ]
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM acks WHERE delivered_at IS NULL")
            .await,
        0
    );

    // On the schedule too.
    let result = pull_on_schedule(&app, &clock, &admin).await;
    assert_eq!(result["collected"], 2, "{result}");
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE source = 'pull'")
            .await,
        6
    );

    // A device presenting another host key than on first contact is not trusted: no password
    // is sent to it.
    app.execute("UPDATE product_instances SET peer_fingerprint = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE udi_serial_number = 'FOCNCONF01'").await;
    let calls_before = farm.calls(farm.port(0)).len();
    let logins_before = farm.ssh_logins(farm.port(0));
    assert!(logins_before > 0);
    let (_, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(
        result["failed"],
        json!({ "auth_failed": 1, "host_key_changed": 1 }),
        "{result}"
    );
    assert_eq!(farm.calls(farm.port(0)).len(), calls_before);
    assert_eq!(
        farm.ssh_logins(farm.port(0)),
        logins_before,
        "the password never went to the changed key"
    );
    let alert = app
        .count_rows("SELECT a.message FROM alerts a JOIN product_instances p ON p.id = a.pi_id WHERE a.kind = 'pull_failed' AND a.cleared_at IS NULL AND p.udi_serial_number = 'FOCNCONF01'")
        .await;
    assert_eq!(
        alert,
        [format!(
            "Pull failed: host key changed: the device presented host key {}, not SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA seen on first contact",
            farm.host_key_fingerprint
        )]
    );
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_per_device_and_changing_the_address_forgets_the_pinned_certificate() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let farm = DeviceFarm::start_trusting(
        (1..=4)
            .map(|i| farm_device(&format!("FOCHTTP00{i}")))
            .collect(),
        0,
        0,
        Some(&app.ca_pem),
    )
    .await
    .unwrap();
    let admin = app.admin_token().await;
    let account = app.account("Acme").await.id;
    let add = async |body: Value| post_pi(&app, &admin, body).await;
    let login = json!({ "host": "127.0.0.1", "username": "netops", "password": "S3cret!pw" });
    let with = |extra: Value| {
        let mut body = login.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    // REST and RESTCONF over plain HTTP where the admin says so; HTTPS is never given up for
    // HTTP otherwise: device 3 only answers HTTP on the port Outpost has, so its pull fails.
    for body in [
        with(json!({ "connect_method": "rest", "plain_http": true, "port": farm.plain_port(0) })),
        with(
            json!({ "connect_method": "restconf", "plain_http": true, "port": farm.plain_port(1) }),
        ),
        with(json!({ "connect_method": "rest", "port": farm.plain_port(2) })),
        with(
            json!({ "connect_method": "rest", "port": farm.port(3), "udi_pid": "C9300-48P", "udi_serial_number": "FOCHTTP004" }),
        ),
    ] {
        let (status, answer) = add(body).await;
        assert_eq!(status, 201, "{answer}");
    }
    let (status, answer) = add(with(
        json!({ "connect_method": "netconf", "plain_http": true, "port": 830 }),
    ))
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "plain_http is for rest and restconf devices; netconf does not use HTTP"
    );

    let (state, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(state, JobState::Succeeded, "{result}");
    assert_eq!(result["collected"], 3, "{result}");
    assert_eq!(result["failed"], json!({ "bad_response": 1 }), "{result}");
    let alert = app
        .count_rows("SELECT message FROM alerts WHERE kind = 'pull_failed'")
        .await;
    assert!(
        alert.len() == 1
            && alert[0].starts_with("Pull failed: bad response (TLS handshake failed: "),
        "{alert:?}"
    );
    assert_eq!(
        farm.calls(farm.port(0)),
        ["close-reports", "all-reports"],
        "over HTTP"
    );
    assert_eq!(
        farm.calls(farm.port(1)),
        ["cisco-smart-license:rum-save-usage-unreported"]
    );
    assert!(farm.calls(farm.port(2)).is_empty());
    assert_eq!(
        app.count_rows("SELECT udi_serial_number || ' ' || plain_http || ' ' || (peer_fingerprint IS NOT NULL) FROM product_instances WHERE udi_serial_number IS NOT NULL ORDER BY 1").await,
        ["FOCHTTP001 true false", "FOCHTTP002 true false", "FOCHTTP004 false true"],
        "nothing to pin over HTTP"
    );

    // The pinned certificate shows on the device page; saving the device unchanged keeps it,
    // moving it to another address or scheme forgets it (how an admin re-pins a replaced one).
    let pi = app
        .count_rows("SELECT id::text FROM product_instances WHERE udi_serial_number = 'FOCHTTP004'")
        .await
        .remove(0);
    let url = format!("/api/v1/accounts/{account}/product-instances/{pi}");
    let detail = async || app.api(Method::GET, &url, &admin, None).await.1;
    let before = detail().await;
    assert_eq!(
        before["pinned_peer"]["fingerprint"].as_str().map(str::len),
        Some(64),
        "{before}"
    );
    assert!(before["last_pull_at"].is_string(), "{before}");
    let again = with(
        json!({ "connect_method": "rest", "port": farm.port(3), "udi_pid": "C9300-48P", "udi_serial_number": "FOCHTTP004" }),
    );
    assert_eq!(add(again).await.0, 201);
    assert_eq!(detail().await["pinned_peer"], before["pinned_peer"]);
    let moved = with(
        json!({ "connect_method": "rest", "plain_http": true, "port": farm.plain_port(3), "udi_pid": "C9300-48P", "udi_serial_number": "FOCHTTP004" }),
    );
    assert_eq!(add(moved).await.0, 201);
    let after = detail().await;
    assert_eq!(after["pinned_peer"], Value::Null, "{after}");
    assert_eq!(after["plain_http"], true);

    // A file from the template before `plain_http` leaves the scheme as it is, and so the pin.
    app.execute("UPDATE product_instances SET peer_fingerprint = repeat('a', 64) WHERE udi_serial_number = 'FOCHTTP004'").await;
    let legacy = format!(
        "udi_pid,udi_serial_number,host,port,connect_method,lva\nC9300-48P,FOCHTTP004,127.0.0.1,{},rest,1\n",
        farm.plain_port(3)
    );
    let (status, body) = app
        .post_csv(
            &format!("/api/v1/accounts/{account}/product-instances/import"),
            &admin,
            legacy,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let kept = detail().await;
    assert_eq!(kept["plain_http"], true, "{kept}");
    assert_eq!(kept["pinned_peer"]["fingerprint"], "a".repeat(64));
    // A device on its method's default port (no port stored) keeps its pin when saved again.
    let no_port = json!({ "host": "10.9.9.9", "connect_method": "rest", "udi_pid": "C9300-48P", "udi_serial_number": "FOCHTTP009",
                          "username": "netops", "password": "S3cret!pw" });
    assert_eq!(add(no_port.clone()).await.0, 201);
    app.execute("UPDATE product_instances SET peer_fingerprint = repeat('b', 64) WHERE udi_serial_number = 'FOCHTTP009'").await;
    assert_eq!(add(no_port).await.0, 201);
    assert_eq!(
        app.count_rows("SELECT coalesce(peer_fingerprint, 'none') FROM product_instances WHERE udi_serial_number = 'FOCHTTP009'").await,
        ["b".repeat(64)]
    );
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_credentials_are_sealed_in_the_database_and_opened_only_to_pull() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let farm = DeviceFarm::start(vec![farm_device("FOCSEAL001")], 0, 0)
        .await
        .unwrap();
    let admin = app.admin_token().await;
    add_pulled(&app, &admin, "rest", farm.port(0), "S3cret!pw").await;
    // The raw column holds neither the password nor the login, in any common encoding.
    let raw = app
        .count_rows("SELECT encode(credentials, 'hex') FROM product_instances")
        .await
        .remove(0);
    assert!(raw.len() > 2 * "netopsS3cret!pw".len(), "{raw}");
    for secret in ["S3cret!pw", "netops"] {
        for encoded in [
            hex::encode(secret),
            hex::encode(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                secret,
            )),
        ] {
            assert!(!raw.contains(&encoded), "{secret} readable in {raw}");
        }
    }
    // Only Outpost's key opens them: the device accepts the login...
    let (_, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(result["collected"], 1, "{result}");
    // ...and sealed bytes changed in the database are refused, never sent.
    // Flip every bit of one byte: writing a fixed value leaves the bytes unchanged whenever
    // that byte already held it (one run in 256).
    app.execute("UPDATE product_instances SET credentials = set_byte(credentials, 19, get_byte(credentials, 19) # 255)").await;
    let calls = farm.calls(farm.port(0)).len();
    let (_, result) = pull_now(&app, &admin, json!({ "delay_secs": 0 })).await;
    assert_eq!(result["failed"], json!({ "not_configured": 1 }), "{result}");
    assert_eq!(farm.calls(farm.port(0)).len(), calls);
    let alert = app
        .count_rows("SELECT message FROM alerts WHERE kind = 'pull_failed' AND cleared_at IS NULL")
        .await;
    assert_eq!(
        alert,
        [
            "Pull failed: not configured (the stored credentials cannot be opened with this Outpost's key)"
        ]
    );
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_pins_only_the_address_it_pulled() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    let account = app.account("Acme").await.id;
    for host in ["10.9.9.1", "10.9.9.2"] {
        let body = json!({ "host": host, "connect_method": "rest", "username": "netops", "password": "S3cret!pw" });
        add_pi(&app, &admin, body).await;
    }
    let mut conn = app.conn().await;
    let targets = outpost_db::pull::targets(&mut conn, account, None)
        .await
        .unwrap();
    let target = |host: &str| {
        targets
            .iter()
            .find(|t| t.host.as_deref() == Some(host))
            .unwrap()
    };
    let now = Utc::now();
    // Pulled where it still is, on its default port (no port stored): pinned.
    outpost_db::pull::succeeded(
        &mut conn,
        account,
        target("10.9.9.1"),
        Some(&"a".repeat(64)),
        now,
    )
    .await
    .unwrap();
    // Moved by an admin while the pull ran: the new address was never contacted.
    app.execute("UPDATE product_instances SET host = '10.9.9.3' WHERE host = '10.9.9.2'")
        .await;
    outpost_db::pull::succeeded(
        &mut conn,
        account,
        target("10.9.9.2"),
        Some(&"b".repeat(64)),
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        app.count_rows("SELECT host || ' ' || coalesce(peer_fingerprint, 'none') FROM product_instances ORDER BY host").await,
        [format!("10.9.9.1 {}", "a".repeat(64)), "10.9.9.3 none".to_owned()]
    );
}
