//! Files CSSM sends inside ACKs, relayed to the device: a custom policy (delivered as
//! `data.policy`, and governing the device's deadlines) and trust codes (asked for in a usage
//! report, forwarded to CSSM, delivered as `data.trust_codes`, "installed" once the device
//! synchronises trust).

use chrono::Utc;
use outpost_core::crypto::SignatureVerifier;
use outpost_core::device::{MessageCode, Status};
use outpost_core::signed_file::{PolicyData, PolicyTerms, verify_policy, verify_trust_code};
use outpost_cssm_sim::SimConfig;
use outpost_db::enums::JobState;
use outpost_pi_sim::Device;
use outpost_tests::TestApp;
use reqwest::Method;
use serde_json::Value;

fn custom_policy() -> PolicyData {
    let terms = PolicyTerms {
        first_report: 30,
        ongoing: 60,
        on_change: 15,
    };
    PolicyData {
        name: "Acme quarterly".into(),
        kind: "custom".into(),
        ack_required: true,
        perpetual: terms,
        subscription: terms,
        enforced: terms,
        export: terms,
    }
}

async fn detail(app: &TestApp, token: &str, serial: &str) -> Value {
    let account = app.account("Acme").await.id;
    let pi = app
        .count_rows(&format!(
            "SELECT id::text FROM product_instances WHERE udi_serial_number = '{serial}'"
        ))
        .await
        .remove(0);
    let (status, body) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{account}/product-instances/{pi}"),
            token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_policy_from_cssm_reaches_the_device_once_and_sets_its_deadlines() {
    let app = TestApp::builder()
        .with_cssm(SimConfig {
            policy: Some(custom_policy()),
            ..SimConfig::default()
        })
        .with_account("Acme")
        .start()
        .await;
    let admin = app.admin_token().await;
    let verifier =
        SignatureVerifier::from_certificate_pem(app.cssm.signing_certificate_pem()).unwrap();
    let client = app.pi_client("Acme-1");
    let mut device = Device::new("C9300-24UX", "FCWPOLICY01");
    app.push_next_report(&mut device, "Acme-1").await;
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);

    // The next answer carries the policy, signed by CSSM, and the ACK.
    device.poll(&client).await.unwrap();
    let file = device.policy.clone().expect("data.policy delivered");
    assert_eq!(
        verify_policy(&file, &verifier, Utc::now()).unwrap(),
        custom_policy()
    );
    assert_eq!(device.acks.len(), 1);
    let body = detail(&app, &admin, "FCWPOLICY01").await;
    assert_eq!(body["deadlines"]["policy"], "Acme quarterly", "{body}");
    let due = body["deadlines"]["report_due"]["at"]
        .as_str()
        .unwrap()
        .to_owned();
    let last = body["reports"][0]["received_at"].as_str().unwrap();
    let days = (chrono::DateTime::parse_from_rfc3339(&due).unwrap()
        - chrono::DateTime::parse_from_rfc3339(last).unwrap())
    .num_days();
    assert_eq!(
        days, 60,
        "ongoing reporting every 60 days under the custom policy: {body}"
    );

    // The same policy with the next ACK is not sent again...
    device.policy = None;
    app.push_next_report(&mut device, "Acme-1").await;
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let (_, hello) = client.exchange(&device.hello_request()).await.unwrap();
    assert_eq!(hello.data.acknowledgements.len(), 1);
    assert_eq!(
        hello.data.policy, None,
        "the device has this policy already"
    );

    // ...but a changed one is.
    app.cssm.set_policy(Some(PolicyData::cisco_default()));
    app.push_next_report(&mut device, "Acme-1").await;
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let (_, hello) = client.exchange(&device.hello_request()).await.unwrap();
    device.absorb(&hello).unwrap();
    let file = device.policy.clone().expect("the new policy");
    assert_eq!(
        verify_policy(&file, &verifier, Utc::now()).unwrap(),
        PolicyData::cisco_default()
    );
    assert_eq!(
        app.count("SELECT count(*) FROM pi_files WHERE kind = 'policy'")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_codes_are_asked_of_cssm_delivered_and_shown_installed() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    let verifier =
        SignatureVerifier::from_certificate_pem(app.cssm.signing_certificate_pem()).unwrap();
    let client = app.pi_client("Acme-1");
    let mut device = Device::new("C9300-24UX", "FCWTRUST01").with_standby("FCWTRUST02");
    device.request_trust = true;
    let answer = app.push_next_report(&mut device, "Acme-1").await;
    assert_eq!(answer.status, Status::OkPoll);
    assert!(
        answer
            .message
            .ends_with("2 trust code request(s) go to CSSM with them"),
        "{}",
        answer.message
    );
    device.request_trust = false;
    assert!(
        app.cssm.trust_requests().is_empty(),
        "nothing goes before the sync"
    );

    // CSSM takes its time: the first sync sends the requests and waits for the ACK; the next
    // one (with the device's next report) does not send them again, and gets the ACK.
    app.cssm.set_ok_polls(4);
    app.sync("Acme").await;
    assert_eq!(app.cssm.trust_requests().len(), 2);
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances WHERE trust_forwarded_at IS NOT NULL AND trust_requests IS NOT NULL").await,
        1,
        "sent, and waiting for CSSM's answer"
    );
    app.cssm.set_ok_polls(0);
    app.push_next_report(&mut device, "Acme-1").await;
    // The follow-up sync the first one queued runs now instead of in 15 minutes.
    app.execute("UPDATE jobs SET run_at = now() WHERE state = 'queued'")
        .await;
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    assert_eq!(app.cssm.trust_requests().len(), 2, "forwarded once");
    let asked: Vec<String> = app
        .cssm
        .trust_requests()
        .iter()
        .map(|s| s.udi_serial_number.clone())
        .collect();
    assert_eq!(asked, ["FCWTRUST01", "FCWTRUST02"]);

    // The device's poll brings the ACK and a verified trust code for each UDI of its set.
    device.poll(&client).await.unwrap();
    assert_eq!(device.trust_codes.len(), 2);
    let mut for_whom: Vec<String> = device
        .trust_codes
        .iter()
        .map(|file| {
            verify_trust_code(file, &verifier, Utc::now())
                .expect("signed by CSSM")
                .sudi
                .udi_serial_number
        })
        .collect();
    for_whom.sort();
    assert_eq!(for_whom, ["FCWTRUST01", "FCWTRUST02"]);
    let body = detail(&app, &admin, "FCWTRUST01").await;
    assert_eq!(body["trust_codes"].as_array().unwrap().len(), 2);
    assert!(body["trust_codes"][0]["delivered_at"].is_string(), "{body}");
    assert!(body["trust_code_installed_at"].is_null());

    // The device synchronises trust: the PI shows "trust code installed" with the time.
    let (status, answer) = client.exchange(&device.trust_sync_request()).await.unwrap();
    assert_eq!(
        (status, answer.status, answer.message_code),
        (200, Status::Ok, MessageCode::TrustSynced)
    );
    assert_eq!(answer.message, "trust code installed (2 recorded)");
    let body = detail(&app, &admin, "FCWTRUST01").await;
    assert!(body["trust_code_installed_at"].is_string(), "{body}");

    let (_, answer) = client.exchange(&device.trust_sync_request()).await.unwrap();
    assert_eq!(
        answer.message,
        "trust synchronised; no new trust code to record"
    );
}
