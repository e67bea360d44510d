//! The simulators themselves: the CSSM simulator refuses what CSSM would, and the `pi-sim`
//! binary replays a real device's RUM file.

use std::process::Command;

use outpost_core::cssm::RegistrationRequest;
use outpost_core::settings::CssmSettings;
use outpost_cssm_sim::{CssmSim, Endpoint, Fault, SimConfig};
use outpost_db::enums::JobState;
use outpost_tests::{TestApp, fixture, outpost_binary};
use outpost_worker::cssm_client::{CssmClient, CssmError};
use reqwest::Method;
use serde_json::json;

fn client_for(sim: &CssmSim, dir: &std::path::Path) -> CssmClient {
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, sim.ca_certificate_pem().unwrap()).unwrap();
    let settings = CssmSettings {
        api_url: sim.url().into(),
        token_url: sim.url().into(),
        ca_file: ca.to_str().unwrap().into(),
        request_timeout_secs: 5,
        ..CssmSettings::default()
    };
    CssmClient::new(&settings).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cssm_simulator_refuses_what_cssm_would() {
    let sim = CssmSim::start(SimConfig {
        registration_token: Some("let-me-in".into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&sim, dir.path());
    let (_, public_key) = outpost_core::crypto::generate_key_pair().unwrap();
    let request = RegistrationRequest {
        name: "Acme".into(),
        smart_account: "Acme Corp".into(),
        virtual_account: "Campus".into(),
        public_key_pem: public_key,
    };

    let err = client.register(&request, None).await.unwrap_err();
    assert!(
        matches!(err, CssmError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
    let unknown = RegistrationRequest {
        virtual_account: "Mars".into(),
        ..request.clone()
    };
    let err = client
        .register(&unknown, Some("let-me-in"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Virtual Account 'Mars' not found in 'Acme Corp'"),
        "{err}"
    );

    let registration = client.register(&request, Some("let-me-in")).await.unwrap();
    let err = client
        .token(&registration.client_id, "wrong secret")
        .await
        .unwrap_err();
    assert!(matches!(err, CssmError::Status { status: 401, .. }));
    let token = client
        .token(&registration.client_id, &registration.client_secret)
        .await
        .unwrap();
    let accounts = client.accounts(&token).await.unwrap();
    assert_eq!(accounts.accounts[0].virtual_accounts.len(), 2);
    assert_eq!(
        client
            .licenses(&token, &registration.registration_id)
            .await
            .unwrap()
            .len(),
        3
    );

    // Injected faults are retryable errors for the client.
    sim.inject(Endpoint::AccountsSearch, &[Fault::Http500]);
    let err = client.accounts(&token).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        client.accounts(&token).await.is_ok(),
        "one fault, one failure"
    );

    // An unreachable CSSM is a transport error naming the URL.
    sim.stop().await;
    let err = client.accounts(&token).await.unwrap_err();
    assert!(
        matches!(err, CssmError::Transport { .. }) && err.is_retryable(),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_sim_replays_a_real_rum_file_and_keeps_its_state() {
    let app = TestApp::builder().with_account("Acme Campus").start().await;
    let pi_sim = outpost_binary().with_file_name("pi-sim");
    assert!(
        pi_sim.is_file(),
        "{} is missing: `cargo build --workspace --bins` first",
        pi_sim.display()
    );
    let ca = app.dir.path().join("outpost-ca.crt");
    std::fs::write(&ca, &app.ca_pem).unwrap();
    let state = app.dir.path().join("pi-sim.json");
    let url = app.tenant_url("Acme Campus-1");
    let run = |args: &[&str]| {
        let output = Command::new(&pi_sim)
            .args(args)
            .args([
                "--url",
                &url,
                "--ca-file",
                ca.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pi-sim {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let sample = fixture("c9800-cl-rum-report-1671840750.xml");
    let out = run(&["replay", sample.to_str().unwrap()]);
    assert!(out.contains("HTTP 200") && out.contains("OK_POLL"), "{out}");
    let out = run(&["replay", "--json", sample.to_str().unwrap()]);
    assert!(out.contains("1 already known"), "{out}");

    let out = run(&["push", "--reports", "2"]);
    assert!(out.contains("OK_POLL"), "{out}");
    app.sync("Acme Campus").await;
    let out = run(&["poll"]);
    assert!(
        out.contains("1 of 1 pending polls completed; ACKs held: 1"),
        "{out}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_sim_serve_plays_devices_outpost_pulls_from() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let app = TestApp::builder().with_account("Acme Campus").start().await;
    let ca = app.dir.path().join("outpost-ca.crt");
    std::fs::write(&ca, &app.ca_pem).unwrap();
    let mut serve = tokio::process::Command::new(outpost_binary().with_file_name("pi-sim"))
        .args(["serve", "--devices", "2", "--ca-file", ca.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("pi-sim serve said nothing for 20 s")
            .unwrap()
            .expect("pi-sim serve ended")
    };
    // "FCWPULL001: rest/restconf https port N, plain http port N, netconf port N"
    let mut ports = Vec::new();
    loop {
        let line = next_line().await;
        if line.starts_with("Serving") {
            break;
        }
        if line.starts_with("FCWPULL") {
            let numbers: Vec<u16> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            ports.push((numbers[numbers.len() - 3], numbers[numbers.len() - 1]));
        }
    }
    assert_eq!(ports.len(), 2);
    let admin = app.admin_token().await;
    let account = app.account("Acme Campus").await.id;
    for body in [
        json!({ "host": "127.0.0.1", "port": ports[0].1, "connect_method": "netconf", "username": "netops", "password": "S3cret!" }),
        json!({ "host": "127.0.0.1", "port": ports[1].0, "connect_method": "restconf", "username": "netops", "password": "S3cret!" }),
    ] {
        let (status, answer) = app
            .api(
                Method::POST,
                &format!("/api/v1/accounts/{account}/product-instances"),
                &admin,
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    let pull = async || {
        let (status, answer) = app
            .api(
                Method::POST,
                &format!("/api/v1/accounts/{account}/pull"),
                &admin,
                Some(json!({ "delay_secs": 0 })),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        app.run_jobs().await;
    };
    pull().await;
    assert_eq!(app.sync("Acme Campus").await, JobState::Succeeded);
    pull().await;
    let mut said = Vec::new();
    while said
        .iter()
        .filter(|l: &&String| l.contains("ACK installed"))
        .count()
        < 2
    {
        said.push(next_line().await);
    }
    assert!(
        said.contains(&"FCWPULL001: netconf:import-file".to_owned()),
        "{said:?}"
    );
    assert!(
        said.contains(&"FCWPULL002: cisco-smart-license:import-file".to_owned()),
        "{said:?}"
    );
}
