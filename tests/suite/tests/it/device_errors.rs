//! Every error case of the device protocol (`docs/protocol.md` section 3): a JSON answer with the
//! right HTTP status and `message_code`, nothing stored, never a 5xx.

use std::time::Duration;

use outpost_core::device::{DeviceResponse, MessageCode, Status};
use outpost_pi_sim::{Device, PiClient};
use outpost_tests::TestApp;
use serde_json::json;

const TENANT: &str = "Acme Campus-1";
const MAX_BODY: usize = 64 * 1024;

struct Case {
    name: &'static str,
    tenant: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    code: MessageCode,
    /// A word the message must contain, so the device's operator learns what is wrong.
    says: &'static str,
}

fn json_body(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn cases(device: &mut Device, stranger: &mut Device) -> Vec<Case> {
    let sudi = json!({ "udi_pid": device.sudi.udi_pid, "udi_serial_number": device.sudi.udi_serial_number });
    let foreign_report = stranger.next_report();
    // Reports of the device whose payload carries what storage cannot hold.
    let mut spoiled = |from: &str, to: &str| {
        let mut report = device.next_report();
        assert!(report.payload.contains(from));
        report.payload = report.payload.replacen(from, to, 1);
        json_body(
            json!({"message_type": "usage_report", "data": {"sudi": sudi, "usage": [report]}}),
        )
    };
    let out_of_range = spoiled("\"end_time\":", "\"end_time\":-99999999999999,\"x\":");
    let long_tag = spoiled("regid.2017-03.com.cisco.advantagek9", &"x".repeat(9000));
    let nul_in_payload = spoiled(
        "\"software_version\":\"17.12.1\"",
        "\"software_version\":\"17\\u0000\"",
    );
    let many = vec![
        json!({"role": "Member", "sudi": {"udi_pid": "C9300-24UX", "udi_serial_number": "FCW0000MEMB"}});
        100
    ];
    let doctype = "<?xml version=\"1.0\"?><!DOCTYPE smartLicense [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><smartLicense><RUMReport>&x;</RUMReport></smartLicense>";
    vec![
        Case {
            name: "malformed JSON",
            tenant: TENANT,
            content_type: "application/json",
            body: b"{\"message_type\": \"usage_report\", ".to_vec(),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "not a valid request",
        },
        Case {
            name: "JSON without sudi",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(json!({"message_type": "usage_report", "data": {"nonce": "n1"}})),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "data.sudi",
        },
        Case {
            name: "unknown message type",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(json!({"message_type": "launch_missiles", "data": {}})),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "message_type",
        },
        Case {
            name: "bad payload",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(
                json!({"message_type": "usage_report", "data": {"sudi": sudi, "usage": [{"payload": "{\"asset_identification\":{}}", "signature": {}}]}}),
            ),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "usage[0]",
        },
        Case {
            name: "report of another device",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(
                json!({"message_type": "usage_report", "data": {"sudi": sudi, "usage": [foreign_report]}}),
            ),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "not by the sender",
        },
        Case {
            name: "NUL in a sudi key",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(
                json!({"message_type": "hello", "data": {"sudi": {"udi_pid": "C9300-24UX", "udi_serial_number": "FCW1", "uuid": "a\u{0}b"}}}),
            ),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "NUL",
        },
        Case {
            name: "NUL inside a payload",
            tenant: TENANT,
            content_type: "application/json",
            body: nul_in_payload,
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "NUL",
        },
        Case {
            name: "measurement out of range",
            tenant: TENANT,
            content_type: "application/json",
            body: out_of_range,
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "end_time is out of range",
        },
        Case {
            name: "entitlement tag too long",
            tenant: TENANT,
            content_type: "application/json",
            body: long_tag,
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "meta.entitlement_tag is longer",
        },
        Case {
            name: "HA set too large",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(
                json!({"message_type": "hello", "data": {"sudi": sudi, "ha_udi": many}}),
            ),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "ha_udi has 100 members",
        },
        Case {
            name: "malformed XML",
            tenant: TENANT,
            content_type: "application/xml",
            body: b"<smartLicense><RUMReport>{}</smartLicense>".to_vec(),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "XML",
        },
        Case {
            name: "DOCTYPE",
            tenant: TENANT,
            content_type: "application/xml",
            body: doctype.as_bytes().to_vec(),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "DOCTYPE",
        },
        Case {
            name: "XML that is not a RUM file",
            tenant: TENANT,
            content_type: "text/xml",
            body: b"<html><body>hi</body></html>".to_vec(),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "<smartLicense>",
        },
        Case {
            name: "oversize body",
            tenant: TENANT,
            content_type: "application/json",
            body: vec![b' '; MAX_BODY + 1],
            status: 413,
            code: MessageCode::BodyTooLarge,
            says: "larger than",
        },
        Case {
            name: "unknown tenant",
            tenant: "Nobody-1",
            content_type: "application/json",
            body: json_body(
                json!({"message_type": "hello", "data": {"sudi": sudi, "nonce": "n2"}}),
            ),
            status: 404,
            code: MessageCode::UnknownTenant,
            says: "Nobody-1",
        },
        Case {
            name: "unknown poll id",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(
                json!({"message_type": "result_poll", "data": {"sudi": sudi, "poll_id": "0190f0c0-0000-7000-8000-000000000000"}}),
            ),
            status: 404,
            code: MessageCode::UnknownPollId,
            says: "poll_id",
        },
        Case {
            name: "poll without poll id",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(json!({"message_type": "result_poll", "data": {"sudi": sudi}})),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "poll_id",
        },
        Case {
            name: "authorization request without licenses",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(
                json!({"message_type": "authorization_request", "data": {"sudi": sudi}}),
            ),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "data.licenses is required for authorization_request",
        },
        Case {
            name: "authorization request for zero licenses",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(json!({"message_type": "authorization_request", "data": {
                "sudi": sudi, "licenses": [{"sudi": sudi, "keys": [{"entitlement": "x", "count": 0}]}]}})),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "data.licenses[0].keys[0].count must be between 1 and 10000",
        },
        Case {
            name: "return code that is not a code",
            tenant: TENANT,
            content_type: "application/json",
            body: json_body(json!({"message_type": "authorization_return", "data": {
                "sudi": sudi, "returns": [{"sudi": sudi, "return_code": "a b"}]}})),
            status: 400,
            code: MessageCode::MalformedRequest,
            says: "data.returns[0].return_code must be 1 to",
        },
    ]
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, DeviceResponse) {
    let response = client
        .post(url)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let parsed: DeviceResponse = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer is not protocol JSON ({e}): {text}"));
    (status, parsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_case_answers_its_status_and_code_and_stores_nothing() {
    let app = TestApp::builder()
        .with_settings(|s| s.device.max_body_bytes = MAX_BODY)
        .with_account("Acme Campus")
        .start()
        .await;
    let http = app.http();
    let mut device = Device::new("C9300-24UX", "FCW0000E0RR");
    let mut stranger = Device::new("C9300-24UX", "FCW0000S0TR");
    for case in cases(&mut device, &mut stranger) {
        let url = app.tenant_url(case.tenant);
        let (status, answer) = post(&http, &url, case.content_type, case.body).await;
        assert_eq!(status, case.status, "{}: {answer:?}", case.name);
        assert_eq!(answer.status, Status::Failed, "{}", case.name);
        assert_eq!(answer.message_code, case.code, "{}", case.name);
        assert!(
            answer.message.contains(case.says),
            "{}: message {:?} should mention {:?}",
            case.name,
            answer.message,
            case.says
        );
    }
    for table in [
        "rum_reports",
        "product_instances",
        "device_polls",
        "entitlement_usage",
        "acks",
    ] {
        assert_eq!(
            app.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} must stay empty"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_validation_refuses_unknown_devices_and_logs_it() {
    let app = TestApp::builder().with_account("Acme Campus").start().await;
    let client = app.pi_client(TENANT);
    let mut known = Device::new("C9300-24UX", "FCWKNOWN001");
    let report = known.next_report();
    known.push(&client, vec![report]).await.unwrap();

    outpost_db::system::set_validate_device(&mut *app.conn().await, true)
        .await
        .unwrap();
    let stranger = Device::new("C9300-24UX", "FCWSTRANGER");
    let request = stranger.usage_request(vec![stranger.clone().next_report()]);
    let (status, answer) = client.exchange(&request).await.unwrap();
    assert_eq!(
        (status, answer.status, answer.message_code),
        (403, Status::Failed, MessageCode::DeviceNotAllowed)
    );
    assert_eq!(answer.nonce, request.data.nonce);
    assert!(
        answer.message.contains("device validation is on"),
        "{}",
        answer.message
    );
    assert_eq!(app.count("SELECT count(*) FROM product_instances").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM rum_reports").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM events WHERE result = 'rejected' AND detail->>'reason' = 'DEVICE_NOT_ALLOWED'").await, 1);

    // A device already in the inventory still reports.
    let report = known.next_report();
    let answer = known.push(&client, vec![report]).await.unwrap();
    assert_eq!(answer.status, Status::OkPoll);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_and_unregistered_tenants_are_refused() {
    let app = TestApp::builder().with_account("Acme Campus").start().await;
    let device = Device::new("C9300-24UX", "FCWINACTIVE");
    let client = app.pi_client(TENANT);

    assert_eq!(
        app.execute(
            "UPDATE local_accounts SET status = 'inactive', status_reason = 'contract ended'"
        )
        .await,
        1
    );
    let (status, answer) = client.exchange(&device.hello_request()).await.unwrap();
    assert_eq!(
        (status, answer.message_code),
        (403, MessageCode::TenantInactive)
    );
    assert!(answer.message.contains("contract ended"));

    app.execute("UPDATE local_accounts SET status = 'approved'")
        .await;
    let (status, answer) = client
        .exchange(&device.usage_request(vec![device.clone().next_report()]))
        .await
        .unwrap();
    assert_eq!(
        (status, answer.message_code),
        (403, MessageCode::TenantInactive)
    );
    assert!(answer.message.contains("not registered"));
    assert_eq!(app.count("SELECT count(*) FROM product_instances").await, 0);
}

/// A request body the test feeds piece by piece through the sender (a slow device).
fn slow_body() -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    reqwest::Body,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let stream = futures_util::stream::unfold(receiver, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (sender, reqwest::Body::wrap_stream(stream))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_is_told_to_come_back_instead_of_queueing() {
    let app = TestApp::builder()
        .with_settings(|s| {
            s.device.max_in_flight = 1;
            s.device.retry_after_secs = 7;
        })
        .with_account("Acme Campus")
        .start()
        .await;
    // A device that sends its body slowly holds the only slot...
    let (sender, stream) = slow_body();
    let slow = app
        .http()
        .post(app.tenant_url(TENANT))
        .header("Content-Type", "application/json")
        .body(stream)
        .send();
    let slow = tokio::spawn(slow);
    sender
        .send(Ok(b"{\"message_type\": ".to_vec()))
        .await
        .unwrap();
    // Wait until it holds the slot: a request for no tenant then gets 429 instead of 404 (a
    // slot is taken before anything else, and such a probe stores nothing).
    let probe = format!("{}/cslu/v1/pi/nobody-1", app.device_base);
    // Generous: on a loaded 2-core machine the slow request's TLS handshake can take a while.
    outpost_tests::eventually(30, "the slow request to hold the slot", || async {
        app.http()
            .post(&probe)
            .body("{}")
            .send()
            .await
            .is_ok_and(|r| r.status() == 429)
    })
    .await;

    // ...so the next one is told to retry after the configured delay.
    let mut device = Device::new("C9300-24UX", "FCWSTORM001");
    let request = device.usage_request(vec![device.clone().next_report()]);
    let response = app
        .http()
        .post(app.tenant_url(TENANT))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers().get("Retry-After").unwrap(), "7");
    let answer: DeviceResponse = response.json().await.unwrap();
    assert_eq!(
        (answer.status, answer.retry_after),
        (Status::OkTryAgain, Some(7))
    );
    assert_eq!(app.count("SELECT count(*) FROM rum_reports").await, 0);

    // Once the slow request ends, the device is served again.
    drop(sender);
    let _ = slow.await;
    let client: PiClient = app.pi_client(TENANT);
    let answer = device
        .push(&client, vec![device.clone().next_report()])
        .await
        .unwrap();
    assert_eq!(answer.status, Status::OkPoll);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_database_connection_means_try_again_not_an_error() {
    let app = TestApp::builder()
        .with_settings(|s| {
            s.database.pool_size = 1;
            s.database.acquire_timeout_ms = 300;
        })
        .with_account("Acme Campus")
        .start()
        .await;
    let device = Device::new("C9300-24UX", "FCWBUSYDB01");
    let request = device.usage_request(vec![device.clone().next_report()]);
    // The test holds the only connection of the pool.
    let held = app.conn().await;
    let response = app
        .http()
        .post(app.tenant_url(TENANT))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers().get("Retry-After").unwrap(), "60");
    let answer: DeviceResponse = response.json().await.unwrap();
    assert_eq!(
        (answer.status, answer.message_code),
        (Status::OkTryAgain, MessageCode::TryAgain)
    );
    assert_eq!(answer.nonce, request.data.nonce);
    drop(held);
    let (status, answer) = app.pi_client(TENANT).exchange(&request).await.unwrap();
    assert_eq!((status, answer.status), (200, Status::OkPoll));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_finishes_its_body_is_cut_off() {
    let app = TestApp::builder()
        .with_settings(|s| {
            s.device.max_in_flight = 1;
            s.device.body_timeout_secs = 1;
        })
        .with_account("Acme Campus")
        .start()
        .await;
    let (sender, stream) = slow_body();
    sender
        .send(Ok(b"{\"message_type\": ".to_vec()))
        .await
        .unwrap();
    let request = app
        .http()
        .post(app.tenant_url(TENANT))
        .header("Content-Type", "application/json")
        .body(stream)
        .send();
    let response = tokio::time::timeout(Duration::from_secs(20), request)
        .await
        .expect("Outpost cuts a slow body off long before 20 s")
        .unwrap();
    assert_eq!(response.status(), 408);
    let answer: DeviceResponse = response.json().await.unwrap();
    assert_eq!(answer.message_code, MessageCode::RequestTimeout);
    drop(sender);
    // Its slot is free again.
    let device = Device::new("C9300-24UX", "FCWAFTERSLO");
    let (status, _) = app
        .pi_client(TENANT)
        .exchange(&device.hello_request())
        .await
        .unwrap();
    assert_eq!(status, 200);
}
