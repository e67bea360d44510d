//! The first end-to-end slice: a device pushes usage to its tenant URL, Outpost stores it, the
//! worker synchronises with the CSSM simulator, and the ACK goes back to the device.

use base64::Engine;
use outpost_core::crypto::SignatureVerifier;
use outpost_core::device::{DeviceRequest, DeviceResponse, MessageCode, Status};
use outpost_core::offline_file;
use outpost_core::signed_file::{PolicyData, verify_ack};
use outpost_db::enums::JobState;
use outpost_pi_sim::Device;
use outpost_tests::{TestApp, c9800_sample};

const TENANT: &str = "Acme Campus-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_reports_are_stored_once_synced_and_acknowledged() {
    let app = TestApp::builder().with_account("Acme Campus").start().await;
    let client = app.pi_client(TENANT);
    let mut device = Device::new("C9300-24UX", "FCW2134L00C").with_standby("FCW2134L00D");
    let reports: Vec<_> = (0..3).map(|_| device.next_report()).collect();

    // Three reports, the second one sent twice.
    let first = device.push(&client, reports[..2].to_vec()).await.unwrap();
    assert_eq!(
        (first.status, first.message_code),
        (Status::OkPoll, MessageCode::UsageAccepted)
    );
    assert_eq!(first.message, "usage accepted: 2 reports (0 already known)");
    assert!(first.poll_id.is_some());
    let second = device.push(&client, reports[1..].to_vec()).await.unwrap();
    assert_eq!(
        second.message,
        "usage accepted: 2 reports (1 already known)"
    );
    assert_eq!(app.count("SELECT count(*) FROM rum_reports").await, 3);
    assert_eq!(app.count("SELECT count(*) FROM product_instances").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM pi_ha_members").await, 2);
    assert_eq!(
        app.count("SELECT count(*) FROM product_instances WHERE source_address = '127.0.0.1' AND last_contact_at > now() - interval '1 minute' AND hostname = 'sw-fcw2134l00c'").await,
        1,
        "the exchange updated the device's last contact, address and hostname"
    );

    // Nothing acknowledged yet: the poll says so.
    assert_eq!(device.poll(&client).await.unwrap(), 0);
    assert_eq!(device.pending_polls.len(), 2);

    assert_eq!(app.sync("Acme Campus").await, JobState::Succeeded);

    // CSSM saw each report once, payload byte for byte as the device wrote it.
    let received = app.cssm.received_reports();
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(received.iter().all(|r| !r.duplicate));
    for (sent, got) in reports.iter().zip(&received) {
        assert_eq!(sent.payload, got.payload);
    }

    // The next polls return OK with the ACK, which verifies against CSSM's certificate.
    assert_eq!(device.poll(&client).await.unwrap(), 2);
    assert!(device.pending_polls.is_empty());
    assert_eq!(device.acks.len(), 1);
    let verifier =
        SignatureVerifier::from_certificate_pem(app.cssm.signing_certificate_pem()).unwrap();
    let ack = verify_ack(&device.acks[0], &verifier, chrono::Utc::now()).unwrap();
    let mut acked = ack.ack.acked_report_ids.clone();
    acked.sort_unstable();
    let mut sent_ids: Vec<i64> = reports
        .iter()
        .map(|r| r.facts().unwrap().report_id)
        .collect();
    sent_ids.sort_unstable();
    assert_eq!(acked, sent_ids);
    assert_eq!(ack.policy, Some(PolicyData::cisco_default()));

    // Stored state: everything acknowledged, usage from the latest measurement, alerts, ledger.
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        3
    );
    assert_eq!(app.count("SELECT count(*) FROM acks").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM acks WHERE delivered_at IS NOT NULL")
            .await,
        1
    );
    let latest_count = reports
        .last()
        .unwrap()
        .facts()
        .unwrap()
        .latest_measurement()
        .unwrap()
        .count;
    assert_eq!(
        app.count("SELECT count FROM entitlement_usage").await,
        latest_count
    );
    assert_eq!(
        app.count("SELECT count(*) FROM alerts WHERE kind = 'ack_received' AND cleared_at IS NULL")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM alerts WHERE kind = 'usage_report_received' AND cleared_at IS NULL").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM alerts WHERE kind = 'usage_report_received'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE action = 'device.usage_report'")
            .await,
        2
    );
    assert_eq!(app.count("SELECT count(*) FROM sync_runs WHERE state = 'succeeded' AND reports_sent = 3 AND acks_received = 1").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM licenses").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_c9800_sample_is_accepted_in_both_body_forms_and_reaches_cssm_byte_identical() {
    let app = TestApp::builder().with_account("Acme Campus").start().await;
    let client = app.pi_client(TENANT);
    let sample = c9800_sample();

    let (status, body) = client
        .post_raw("application/xml", sample.clone().into_bytes())
        .await
        .unwrap();
    let answer: DeviceResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, answer.status), (200, Status::OkPoll), "{answer:?}");
    assert_eq!(
        answer.message,
        "usage accepted: 1 reports (0 already known)"
    );

    let request = DeviceRequest::from_offline_file(offline_file::parse(&sample).unwrap()).unwrap();
    let (status, answer) = client.exchange(&request).await.unwrap();
    assert_eq!((status, answer.status), (200, Status::OkPoll));
    assert_eq!(
        answer.message,
        "usage accepted: 1 reports (1 already known)"
    );
    assert_eq!(app.count("SELECT count(*) FROM rum_reports").await, 1);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM rum_reports WHERE source = 'push_xml' AND report_id = 1671840750"
        )
        .await,
        1
    );

    assert_eq!(app.sync("Acme Campus").await, JobState::Succeeded);
    // The payload exactly as written in the file: the JSON string value inside the CDATA.
    let start = sample.find("<![CDATA[").unwrap() + 9;
    let end = sample.rfind("]]>").unwrap();
    let envelope: serde_json::Value = serde_json::from_str(&sample[start..end]).unwrap();
    let received = app.cssm.received_reports();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].payload, envelope["payload"].as_str().unwrap());
    assert_eq!(received[0].sudi.udi_serial_number, "9NTUEA8FIIH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_acks_ride_on_any_answer_and_stay_retrievable_by_poll() {
    let app = TestApp::builder().with_account("Acme Campus").start().await;
    let client = app.pi_client(TENANT);
    let mut device = Device::new("C9300-48P", "FOC1111A1AA");
    let report = device.next_report();
    let pushed = device.push(&client, vec![report]).await.unwrap();
    let poll_id = pushed.poll_id.unwrap();
    assert_eq!(app.sync("Acme Campus").await, JobState::Succeeded);

    // A hello picks the waiting ACK up and marks it delivered.
    let (_, hello) = client.exchange(&device.hello_request()).await.unwrap();
    assert_eq!(
        (hello.status, hello.message_code),
        (Status::Ok, MessageCode::HelloOk)
    );
    assert_eq!(hello.data.acknowledgements.len(), 1);
    assert_eq!(
        hello.data.account_info.as_ref().unwrap().local_account,
        "Acme Campus"
    );
    // The next answer carries nothing new...
    let (_, again) = client.exchange(&device.hello_request()).await.unwrap();
    assert!(again.data.acknowledgements.is_empty());
    // ...but the ACK stays retrievable with its poll id, so a lost answer loses nothing.
    let (_, polled) = client
        .exchange(&device.poll_request(&poll_id))
        .await
        .unwrap();
    assert_eq!(
        (polled.status, polled.message_code),
        (Status::Ok, MessageCode::PollComplete)
    );
    assert_eq!(polled.data.acknowledgements, hello.data.acknowledgements);
    let file = base64::engine::general_purpose::STANDARD
        .decode(&polled.data.acknowledgements[0].smart_license)
        .unwrap();
    assert!(
        String::from_utf8(file)
            .unwrap()
            .starts_with("<smartLicense><smartLicenseRumAck>")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_listener_and_default_tenant_route() {
    let app = TestApp::builder()
        .with_settings(|s| s.device.default_tenant = "Acme Campus-1".into())
        .with_account("Acme Campus")
        .start()
        .await;
    let mut device = Device::new("C9300-24T", "FOC2222B2BB");
    let report = device.next_report();

    // http://<host>/cslu/v1/pi/<tenant> as many devices are configured.
    let http = outpost_pi_sim::PiClient::new(
        &format!("{}/cslu/v1/pi/Acme%20Campus-1", app.device_http_base),
        None,
    )
    .unwrap();
    let (status, answer) = http
        .exchange(&device.usage_request(vec![report]))
        .await
        .unwrap();
    assert_eq!((status, answer.status), (200, Status::OkPoll));

    // POST /cslu/v1/pi without a tenant goes to the default tenant.
    let default = outpost_pi_sim::PiClient::new(
        &format!("{}/cslu/v1/pi", app.device_base),
        Some(&app.ca_pem),
    )
    .unwrap();
    let (status, answer) = default.exchange(&device.hello_request()).await.unwrap();
    assert_eq!((status, answer.status), (200, Status::Ok));
    assert_eq!(app.count("SELECT count(*) FROM product_instances").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resending_acknowledged_reports_raises_no_new_alert() {
    let app = TestApp::builder().with_account("Acme Campus").start().await;
    let client = app.pi_client(TENANT);
    let mut device = Device::new("C9300-24UX", "FCWRESEND01");
    let report = device.next_report();
    device.push(&client, vec![report.clone()]).await.unwrap();
    assert_eq!(app.sync("Acme Campus").await, JobState::Succeeded);
    let open =
        "SELECT count(*) FROM alerts WHERE kind = 'usage_report_received' AND cleared_at IS NULL";
    assert_eq!(app.count(open).await, 0);

    let again = device.push(&client, vec![report]).await.unwrap();
    assert_eq!(again.message, "usage accepted: 1 reports (1 already known)");
    assert_eq!(app.count(open).await, 0, "nothing waits for CSSM");
    assert_eq!(
        device.poll(&client).await.unwrap(),
        2,
        "both polls answer with the ACK at once"
    );
}
