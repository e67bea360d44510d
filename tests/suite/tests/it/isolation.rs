//! Tenant isolation: every documented route that takes an id, called by an account admin of A
//! with the ids of tenant B (and with A's account but B's device), answers 404 and changes
//! nothing. The routes come from `/api/openapi.json`, which a unit test holds equal to the
//! server's route table, so a new route cannot escape this walk.

use outpost_core::device::Status;
use outpost_pi_sim::Device;
use outpost_tests::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

/// A body that passes validation for routes that read JSON, so only the tenant check can
/// refuse the call.
fn body_for(method: &str, path: &str, foreign_pi: &str) -> Option<Value> {
    let body = match (method, path) {
        ("patch", "/api/v1/accounts/{id}") => json!({ "name": "Hijacked" }),
        ("post", "/api/v1/accounts/{id}/deactivate") => json!({ "reason": "hijack" }),
        ("put", "/api/v1/accounts/{id}/settings") => json!({ "validate_device": true }),
        ("post", "/api/v1/accounts/{id}/virtual-accounts") => json!({ "name": "Hijack" }),
        ("patch", "/api/v1/accounts/{id}/virtual-accounts/{number}") => json!({ "name": "Hijack" }),
        ("post", "/api/v1/accounts/{id}/product-instances") => {
            json!({ "udi_pid": "C9300-24UX", "udi_serial_number": "HIJACK" })
        }
        ("post", "/api/v1/accounts/{id}/product-instances/transfer") => {
            json!({ "product_instance_ids": [foreign_pi], "to_lva": 1 })
        }
        ("post", "/api/v1/accounts/{id}/product-instances/remove") => {
            json!({ "product_instance_ids": [foreign_pi], "force": true })
        }
        ("post", "/api/v1/accounts/{id}/licenses/transfer") => json!({
            "entitlement_tag": outpost_pi_sim::ENTITLEMENT_TAG, "from_lva": 1, "to_lva": 2, "quantity": 1
        }),
        (
            "put",
            "/api/v1/accounts/{id}/schedules/cssm-sync"
            | "/api/v1/accounts/{id}/schedules/device-pull",
        ) => {
            json!({ "enabled": false, "every_days": 3, "hour": 1, "minute": 0, "time_zone": "UTC" })
        }
        ("post", "/api/v1/accounts/{id}/pull") => json!({ "delay_secs": 0 }),
        ("put", "/api/v1/users/{id}/roles") => json!({ "system_role": "system_admin" }),
        ("post", "/api/v1/accounts/{id}/webhooks") => json!({ "url": "https://hijack.example/" }),
        _ => return None,
    };
    Some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_an_id_answers_404_for_another_tenants_ids_and_changes_nothing() {
    let app = TestApp::builder()
        .with_account("Acme")
        .with_account("Beta")
        .start()
        .await;
    let admin = app.admin_token().await;
    let a = app.account("Acme").await.id.to_string();
    let b = app.account("Beta").await.id.to_string();
    let (_, alice) = app
        .user(
            "alice",
            None,
            json!([{ "account_id": a, "role": "account_admin" }]),
        )
        .await;
    let (bob_id, _) = app
        .user(
            "bob",
            None,
            json!([{ "account_id": b, "role": "account_admin" }]),
        )
        .await;
    // Each tenant: LVA 2, a device with a report, a finished sync job, licenses, an ACK.
    let mut jobs = Vec::new();
    for (id, name) in [(&a, "Acme"), (&b, "Beta")] {
        let (status, _) = app
            .api(
                Method::POST,
                &format!("/api/v1/accounts/{id}/virtual-accounts"),
                &admin,
                Some(json!({ "name": "Lab" })),
            )
            .await;
        assert_eq!(status, 201);
        let mut device = Device::new("C9300-24UX", &format!("{name}0001"));
        let report = device.next_report();
        assert_eq!(
            device
                .push(&app.pi_client(&format!("{name}-1")), vec![report])
                .await
                .unwrap()
                .status,
            Status::OkPoll
        );
        let (status, body) = app
            .api(
                Method::POST,
                &format!("/api/v1/accounts/{id}/sync"),
                &admin,
                None,
            )
            .await;
        assert_eq!(status, 202);
        jobs.push(body["job_id"].as_str().unwrap().to_owned());
        app.run_jobs().await;
    }
    let b_pi = app
        .count_rows(&format!(
            "SELECT id::text FROM product_instances WHERE account_id = '{b}'"
        ))
        .await
        .remove(0);
    let b_job = &jobs[1];
    let (status, hook) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{b}/webhooks"),
            &admin,
            Some(json!({ "url": "https://hooks.beta.example/outpost" })),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let b_webhook = hook["id"].as_str().unwrap().to_owned();

    let (status, doc) = app.api(Method::GET, "/api/openapi.json", "", None).await;
    assert_eq!(status, 200);
    let before = app.fingerprint(&[]).await;
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let http = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = body_for(method, path, &b_pi);
            if path.starts_with("/api/v1/users/") {
                // Users are not a tenant's: an account admin is refused for want of the role.
                let concrete = path.replace("{id}", &bob_id);
                let (status, response) = app.api(http, &concrete, &alice, body).await;
                assert_eq!(status, 403, "{method} {concrete}: {response}");
                continue;
            }
            // B's ids throughout.
            let id = if path.starts_with("/api/v1/jobs/") {
                b_job.as_str()
            } else {
                b.as_str()
            };
            let concrete = path
                .replace("{id}", id)
                .replace("{pi}", &b_pi)
                .replace("{webhook_id}", &b_webhook)
                .replace("{number}", "2");
            let (status, response) = app.api(http.clone(), &concrete, &alice, body.clone()).await;
            assert_eq!(status, 404, "{method} {concrete}: {response}");
            assert_eq!(
                response["error"]["code"], "not_found",
                "{method} {concrete}: {response}"
            );
            walked += 1;
            // A's account with B's device or webhook (or B's devices in a bulk body).
            let in_body = body.as_ref().is_some_and(|b| b.to_string().contains(&b_pi));
            if path.contains("{pi}") || path.contains("{webhook_id}") || in_body {
                let concrete = path
                    .replace("{id}", &a)
                    .replace("{pi}", &b_pi)
                    .replace("{webhook_id}", &b_webhook);
                let (status, response) = app.api(http, &concrete, &alice, body).await;
                assert_eq!(
                    status, 404,
                    "{method} {concrete} (A's account, B's device): {response}"
                );
                walked += 1;
            }
        }
    }
    assert!(
        walked >= 40,
        "only {walked} calls: is the document complete?"
    );
    assert_eq!(
        app.fingerprint(&[]).await,
        before,
        "a refused call changed something"
    );

    // The same calls with A's own ids work: the 404s above came from the tenant check.
    let a_pi = app
        .count_rows(&format!(
            "SELECT id::text FROM product_instances WHERE account_id = '{a}'"
        ))
        .await
        .remove(0);
    let (status, _) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/product-instances/{a_pi}"),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .api(
            Method::GET,
            &format!("/api/v1/jobs/{}", jobs[0]),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, 200);
}
