//! Authorization codes (SLAC) end to end: a 3-member stack asks for HSECK9 for its whole set,
//! CSSM (the simulator) issues three codes, the stack installs and confirms them, returns one,
//! and the pool count goes back up while CSSM sees the return. Plus the refusals, and the SLAC
//! CSV an air-gapped site imports.

use chrono::Utc;
use outpost_core::crypto::SignatureVerifier;
use outpost_core::device::{
    AuthorizationMode, AuthorizationScope, DeviceRequest, DeviceResponse, MessageCode, Status,
};
use outpost_core::signed_file::verify_authorization;
use outpost_db::enums::JobState;
use outpost_pi_sim::{Device, ENTITLEMENT_TAG, PiClient};
use outpost_tests::{SMART_ACCOUNT, TestApp, VIRTUAL_ACCOUNT, error_code};
use reqwest::Method;

/// The export-controlled license the simulator's Campus VA holds 10 of.
const HSEC: &str = "regid.2019-03.com.cisco.HSECK9,1.0_a9f6ad7c-7d0b-4e4c-9c1b-4b4c0c6c3d6e";

async fn hsec_pool(app: &TestApp, token: &str) -> (i64, i64) {
    let account = app.account("Acme").await.id;
    let (_, body) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{account}/licenses"),
            token,
            None,
        )
        .await;
    let item = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["entitlement_tag"] == HSEC && i["lva_number"] == 1)
        .unwrap_or_else(|| panic!("no HSECK9 pool: {body}"))
        .clone();
    (
        item["authorized"].as_i64().unwrap(),
        item["authorizable"].as_i64().unwrap(),
    )
}

/// Sends what `make` builds from the device, and lets the device keep what the answer brings.
async fn send(
    client: &PiClient,
    device: &mut Device,
    make: impl FnOnce(&mut Device) -> DeviceRequest,
) -> (u16, DeviceResponse) {
    let request = make(device);
    let (status, answer) = client.exchange(&request).await.unwrap();
    device.absorb(&answer).unwrap();
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_stack_gets_confirms_and_returns_its_codes() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    assert_eq!(
        app.sync("Acme").await,
        JobState::Succeeded,
        "licenses come down"
    );
    assert_eq!(hsec_pool(&app, &admin).await, (0, 10));
    let verifier =
        SignatureVerifier::from_certificate_pem(app.cssm.signing_certificate_pem()).unwrap();

    // The stack reports HSECK9 use: without an installed code that is an alert.
    let client = app.pi_client("Acme-1");
    let mut stack = Device::new("C9300X-24HX", "FOCSTACK01")
        .with_standby("FOCSTACK02")
        .with_member("FOCSTACK03");
    stack.entitlement_tag = HSEC.into();
    assert_eq!(
        app.push_next_report(&mut stack, "Acme-1").await.status,
        Status::OkPoll
    );
    let missing =
        "SELECT message FROM alerts WHERE kind = 'authorization_missing' AND cleared_at IS NULL";
    assert_eq!(
        app.count_rows(missing).await,
        ["Router US Export Lic. for DNA in use without an installed authorization code (SLAC)"]
    );

    // 1. The active asks for every UDI of its set.
    let ask = stack.authorization_request(
        &[(HSEC, 1)],
        AuthorizationMode::Add,
        AuthorizationScope::All,
    );
    let (status, answer) = send(&client, &mut stack, |_| ask.clone()).await;
    assert_eq!(
        (status, answer.status, answer.message_code),
        (200, Status::OkPoll, MessageCode::AuthorizationPending),
        "{}",
        answer.message
    );
    let poll_id = answer.poll_id.clone().unwrap();
    assert_eq!(
        hsec_pool(&app, &admin).await,
        (3, 7),
        "the pool holds 3 while CSSM is asked"
    );
    // Asking again before CSSM answered is refused, and changes nothing.
    let (status, again) = client.exchange(&ask).await.unwrap();
    assert_eq!(
        (status, again.message_code),
        (409, MessageCode::RequestPending)
    );
    let (_, pending) = send(&client, &mut stack, |d| d.poll_request(&poll_id)).await;
    assert_eq!(pending.status, Status::OkPoll);

    // 2. The worker asks CSSM; the next poll brings three codes, one per member.
    let states: Vec<JobState> = app.run_jobs().await.into_iter().map(|(_, s)| s).collect();
    assert_eq!(states, [JobState::Succeeded]);
    let (status, answer) = send(&client, &mut stack, |d| d.poll_request(&poll_id)).await;
    assert_eq!(
        (status, answer.status, answer.message_code),
        (200, Status::Ok, MessageCode::AuthorizationIssued)
    );
    assert_eq!(answer.data.authorizations.len(), 3);
    let mut serials: Vec<String> = stack
        .authorizations
        .iter()
        .map(|(sudi, file)| {
            let code = verify_authorization(file, &verifier, Utc::now()).expect("signed by CSSM");
            assert_eq!(&code.sudi, sudi);
            assert_eq!(code.data.entitlements[0].tag, HSEC);
            sudi.udi_serial_number.clone()
        })
        .collect();
    serials.sort();
    assert_eq!(serials, ["FOCSTACK01", "FOCSTACK02", "FOCSTACK03"]);
    let asked: Vec<String> = app
        .cssm
        .authorization_requests()
        .iter()
        .map(|l| l.sudi.udi_serial_number.clone())
        .collect();
    assert_eq!(asked.len(), 3, "{asked:?}");
    // Handed over once: a hello brings nothing more.
    let (_, hello) = send(&client, &mut stack, |d| d.hello_request()).await;
    assert!(hello.data.authorizations.is_empty());

    // 3. Confirmations are recorded; the alert clears.
    let (status, answer) = send(&client, &mut stack, |d| d.confirmation_request()).await;
    assert_eq!(
        (status, answer.message_code),
        (200, MessageCode::AuthorizationConfirmed),
        "{}",
        answer.message
    );
    assert_eq!(answer.message, "3 confirmation(s) recorded");
    assert_eq!(
        app.count("SELECT count(*) FROM authorizations WHERE state = 'confirmed' AND confirmed_at IS NOT NULL").await,
        3
    );
    assert!(app.count_rows(missing).await.is_empty());

    // 4. The third member returns its code: the pool is back up, and CSSM hears of it.
    let member = stack.ha_members[1].clone();
    let (status, answer) = send(&client, &mut stack, |d| d.return_request(&member)).await;
    assert_eq!(
        (status, answer.message_code),
        (200, MessageCode::AuthorizationReturned)
    );
    assert_eq!(
        answer.message,
        "authorization returned: 1 license(s) back in the pool"
    );
    assert_eq!(hsec_pool(&app, &admin).await, (2, 8));
    assert!(
        app.cssm.authorization_returns().is_empty(),
        "forwarded by the worker"
    );
    let states: Vec<JobState> = app.run_jobs().await.into_iter().map(|(_, s)| s).collect();
    assert_eq!(states, [JobState::Succeeded]);
    let returns = app.cssm.authorization_returns();
    assert_eq!(returns.len(), 1);
    assert!(returns[0].sudi.same_device(&member));
    assert!(returns[0].keys.is_empty());
    assert_eq!(returns[0].remove_code.as_ref().map(String::len), Some(16));
    assert_eq!(
        app.count("SELECT count(*) FROM authorizations WHERE state = 'returned' AND return_forwarded_at IS NOT NULL").await,
        1
    );

    // The PI detail and the account's list show the codes.
    let account = app.account("Acme").await.id;
    let (_, list) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{account}/authorizations"),
            &admin,
            None,
        )
        .await;
    let mut states: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    states.sort_unstable();
    assert_eq!(states, ["confirmed", "confirmed", "returned"]);
    assert!(
        list["items"][0].get("smart_license").is_none(),
        "the list carries no code files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_authorization_messages_are_refused_and_change_nothing() {
    let app = TestApp::builder().with_account("Acme").start().await;
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let client = app.pi_client("Acme-1");
    let mut device = Device::new("C9300X-24HX", "FOCLONE001");
    app.push_next_report(&mut device, "Acme-1").await;
    let before = app.count("SELECT count(*) FROM authorizations").await;
    let admin = app.admin_token().await;
    let pool = hsec_pool(&app, &admin).await;
    let local = AuthorizationScope::Local;
    let add = AuthorizationMode::Add;
    let cases = [
        (
            device.authorization_request(&[(HSEC, 11)], add, local),
            409,
            MessageCode::InsufficientLicenses,
            "Router US Export Lic. for DNA: local virtual account 1 has 10 of 10 free for authorization, 11 asked",
        ),
        (
            device.authorization_request(&[(ENTITLEMENT_TAG, 1)], add, local),
            422,
            MessageCode::NotAuthorizable,
            "Catalyst 9300 Network Advantage is unenforced and needs no authorization code",
        ),
        (
            device.authorization_request(&[("regid.2099-01.com.cisco.NOPE,1.0_x", 1)], add, local),
            422,
            MessageCode::NotAuthorizable,
            "local virtual account 1 holds no regid.2099-01.com.cisco.NOPE,1.0_x",
        ),
        (
            device.confirmation_request(),
            400,
            MessageCode::MalformedRequest,
            "data.confirmations is required for authorization_confirmation",
        ),
        (
            device.clone().return_request(&device.sudi.clone()),
            404,
            MessageCode::UnknownAuthorization,
            "PID:C9300X-24HX,SN:FOCLONE001 holds no authorization code to return",
        ),
    ];
    for (request, status, code, message) in cases {
        let (got, answer) = client.exchange(&request).await.unwrap();
        assert_eq!(
            (got, answer.status, answer.message_code),
            (status, Status::Failed, code),
            "{}",
            answer.message
        );
        assert_eq!(answer.message, message);
    }
    // Another device's UDI in a local request is not this device's to ask for.
    let mut foreign = device.authorization_request(&[(HSEC, 1)], add, local);
    foreign.data.licenses[0].sudi = outpost_core::Sudi::new("C9300X-24HX", "SOMEONEELSE");
    let (status, answer) = client.exchange(&foreign).await.unwrap();
    assert_eq!(
        (status, answer.message_code),
        (400, MessageCode::MalformedRequest)
    );
    // A confirmation code no code has.
    let mut confirm = device.confirmation_request();
    confirm.data.confirmations = vec![outpost_core::device::Confirmation {
        sudi: device.sudi.clone(),
        confirm_code: "NotARealCode".into(),
    }];
    let (status, answer) = client.exchange(&confirm).await.unwrap();
    assert_eq!(
        (status, answer.message_code),
        (404, MessageCode::UnknownAuthorization)
    );
    assert_eq!(
        app.count("SELECT count(*) FROM authorizations").await,
        before
    );
    assert_eq!(
        hsec_pool(&app, &admin).await,
        pool,
        "no refusal took from the pool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_slac_csv_reaches_its_device_without_cssm() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let account = app.account("Acme").await.id;
    let path = format!("/api/v1/accounts/{account}/slac-import");
    let router = Device::new("C8300-1N1S", "FDOROUTER1");
    let other = outpost_core::Sudi::new("C8300-1N1S", "FDOROUTER2");
    let csv = app
        .cssm
        .slac_csv(
            (SMART_ACCOUNT, VIRTUAL_ACCOUNT),
            &[(router.sudi.clone(), HSEC, 1), (other.clone(), HSEC, 2)],
        )
        .unwrap();

    // A row for more than its code says: nothing is imported.
    let lines: Vec<&str> = csv.lines().collect();
    let tampered = format!(
        "{}\n{}\n{}\n",
        lines[0],
        lines[1],
        lines[2].replacen(",2,", ",3,", 1)
    );
    let (status, body) = app.post_csv(&path, &admin, tampered).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_rows"), "{body}");
    let rows = body["error"]["details"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!(rows[0]["line"], 3);
    assert_eq!(
        rows[0]["reason"],
        "the code authorizes 2 of regid.2019-03.com.cisco.HSECK9,1.0_a9f6ad7c-7d0b-4e4c-9c1b-4b4c0c6c3d6e, the row says 3"
    );
    // A code moved to another device (its label and the row edited alike) is refused.
    let forged = csv
        .replacen("FDOROUTER1</udi>", "FDOROUTER9</udi>", 1)
        .replacen("\"FDOROUTER1\"", "\"FDOROUTER9\"", 1);
    let (status, body) = app.post_csv(&path, &admin, forged).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["rows"][0]["reason"],
        "authorization_code: <smartLicenseAuthorization> is labelled for PID:C8300-1N1S,SN:FDOROUTER9 but its signed data names PID:C8300-1N1S,SN:FDOROUTER1: it was moved to another device"
    );
    let (status, body) = app.post_csv(&path, &admin, "udi,code\nx,y\n".into()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(app.count("SELECT count(*) FROM authorizations").await, 0);

    let (status, body) = app.post_csv(&path, &admin, csv.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["imported"].as_i64(), body["already_imported"].as_i64()),
        (Some(2), Some(0))
    );
    let (_, body) = app.post_csv(&path, &admin, csv).await;
    assert_eq!(
        (body["imported"].as_i64(), body["already_imported"].as_i64()),
        (Some(0), Some(2)),
        "idempotent"
    );
    assert_eq!(hsec_pool(&app, &admin).await, (3, 7));

    // The router's request is answered at once from the imported code, with no CSSM call.
    let client = app.pi_client("Acme-1");
    let mut router = router;
    let ask = router.authorization_request(
        &[(HSEC, 1)],
        AuthorizationMode::Add,
        AuthorizationScope::Local,
    );
    let (status, answer) = send(&client, &mut router, |_| ask).await;
    assert_eq!(
        (status, answer.status, answer.message_code),
        (200, Status::Ok, MessageCode::AuthorizationIssued),
        "{}",
        answer.message
    );
    assert_eq!(router.authorizations.len(), 1);
    assert!(app.cssm.authorization_requests().is_empty());
    // Had that answer been lost, the poll id it carried hands the code over again.
    let poll_id = answer
        .poll_id
        .clone()
        .expect("a poll id for the codes handed over");
    router.authorizations.clear();
    let (_, again) = send(&client, &mut router, |d| d.poll_request(&poll_id)).await;
    assert_eq!(again.message_code, MessageCode::AuthorizationIssued);
    assert_eq!(router.authorizations.len(), 1);
    let (_, answer) = send(&client, &mut router, |d| d.confirmation_request()).await;
    assert_eq!(answer.message_code, MessageCode::AuthorizationConfirmed);

    // An import beyond the pool names the row and imports nothing.
    let big = app
        .cssm
        .slac_csv(
            (SMART_ACCOUNT, VIRTUAL_ACCOUNT),
            &[(outpost_core::Sudi::new("C8300-1N1S", "FDOROUTER3"), HSEC, 8)],
        )
        .unwrap();
    let (status, body) = app.post_csv(&path, &admin, big).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["rows"][0]["reason"],
        "Router US Export Lic. for DNA: local virtual account 1 has 7 of 10 free for authorization, 8 asked"
    );
    assert_eq!(app.count("SELECT count(*) FROM authorizations").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_cssm_refuses_leaves_the_old_code_holding_its_licenses() {
    let mut app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let client = app.pi_client("Acme-1");
    let mut router = Device::new("C8300-1N1S", "FDOREPLACE1");
    app.push_next_report(&mut router, "Acme-1").await;
    let (add, replace, local) = (
        AuthorizationMode::Add,
        AuthorizationMode::Replace,
        AuthorizationScope::Local,
    );

    // It holds 2, installed.
    let (_, answer) = send(&client, &mut router, |d| {
        d.authorization_request(&[(HSEC, 2)], add, local)
    })
    .await;
    let poll = answer.poll_id.unwrap();
    app.run_jobs().await;
    send(&client, &mut router, |d| d.poll_request(&poll)).await;
    let (_, answer) = send(&client, &mut router, |d| d.confirmation_request()).await;
    assert_eq!(answer.message_code, MessageCode::AuthorizationConfirmed);
    assert_eq!(hsec_pool(&app, &admin).await, (2, 8));

    // CSSM hands 8 more to devices Outpost does not manage: 2 of its 10 are left.
    app.cssm
        .slac_csv(
            (SMART_ACCOUNT, VIRTUAL_ACCOUNT),
            &[(outpost_core::Sudi::new("C8300-1N1S", "ELSEWHERE1"), HSEC, 8)],
        )
        .unwrap();

    // Replacing 2 with 5: while CSSM is asked the pair holds 5, not 7.
    let (_, answer) = send(&client, &mut router, |d| {
        d.authorization_request(&[(HSEC, 5)], replace, local)
    })
    .await;
    assert_eq!(answer.message_code, MessageCode::AuthorizationPending);
    let poll = answer.poll_id.unwrap();
    assert_eq!(hsec_pool(&app, &admin).await, (5, 5));
    // CSSM refuses: the old code holds its 2 alone again, and the device learns why.
    app.expect_failed_jobs(1);
    app.run_jobs().await;
    assert_eq!(hsec_pool(&app, &admin).await, (2, 8));
    let (status, answer) = send(&client, &mut router, |d| d.poll_request(&poll)).await;
    assert_eq!(
        (status, answer.message_code),
        (422, MessageCode::AuthorizationFailed)
    );
    assert!(
        answer.message.contains("insufficient licenses"),
        "{}",
        answer.message
    );
    let states = "SELECT state || ' ' || count FROM authorizations ORDER BY requested_at";
    assert_eq!(app.count_rows(states).await, ["confirmed 2", "failed 5"]);

    // Replacing 2 with 1 fits at CSSM: the new code is issued and the old one replaced.
    let (_, answer) = send(&client, &mut router, |d| {
        d.authorization_request(&[(HSEC, 1)], replace, local)
    })
    .await;
    let poll = answer.poll_id.unwrap();
    assert_eq!(
        hsec_pool(&app, &admin).await,
        (2, 8),
        "the larger of old and new"
    );
    app.run_jobs().await;
    let (_, answer) = send(&client, &mut router, |d| d.poll_request(&poll)).await;
    assert_eq!(answer.message_code, MessageCode::AuthorizationIssued);
    assert_eq!(hsec_pool(&app, &admin).await, (1, 9));
    assert_eq!(
        app.count_rows(states).await,
        ["replaced 2", "failed 5", "issued 1"]
    );
}
