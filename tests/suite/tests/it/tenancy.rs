//! Tenancy and access through the HTTP API, as each role: the account lifecycle, LVAs, users
//! and roles, renames that keep old transport URLs working, per-tenant device switches, and
//! SA/VA mappings the sync honours.

use outpost_core::device::{MessageCode, Status};
use outpost_db::enums::JobState;
use outpost_pi_sim::Device;
use outpost_tests::{SMART_ACCOUNT, TestApp, VIRTUAL_ACCOUNT, error_code};
use reqwest::Method;
use serde_json::{Value, json};

/// Requests an account as `token`; returns its id.
async fn request_account(app: &TestApp, token: &str, name: &str) -> String {
    let (status, body) = app
        .api(
            Method::POST,
            "/api/v1/accounts",
            token,
            Some(json!({ "name": name, "smart_account": SMART_ACCOUNT, "virtual_account": VIRTUAL_ACCOUNT, "email": "noc@example.com" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "requested");
    body["id"].as_str().unwrap().to_owned()
}

/// Event actions of an account, oldest first.
async fn actions(app: &TestApp, account: &str) -> Vec<String> {
    app.count_rows(&format!(
        "SELECT action || ' by ' || actor || ' ' || result FROM events WHERE account_id = '{account}' ORDER BY id"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_lifecycle_through_the_api_as_each_role() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let (_, operator) = app.user("olga", Some("system_operator"), json!([])).await;
    let (_, viewer) = app.user("victor", Some("system_user"), json!([])).await;
    let (_, alice) = app.user("alice", None, json!([])).await;
    let (_, bob) = app.user("bob", None, json!([])).await;

    // Anyone signed in may request; the requester follows its request read-only.
    let a = request_account(&app, &alice, "Acme Campus").await;
    let b = request_account(&app, &bob, "Beta Labs").await;
    let (status, body) = app
        .api(
            Method::POST,
            "/api/v1/accounts",
            &alice,
            Some(json!({ "name": "Acme Campus", "smart_account": "x", "virtual_account": "y" })),
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "name_taken"));
    let (status, body) = app
        .api(
            Method::POST,
            "/api/v1/accounts",
            &alice,
            Some(json!({ "name": "bad/name", "smart_account": "x", "virtual_account": "y" })),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "invalid_value"),
        "{body}"
    );

    // Only a system admin approves: a system user, an operator and the requester are refused,
    // and another tenant's user does not even see it.
    for (who, token, expected) in [
        ("system user", &viewer, 403),
        ("operator", &operator, 403),
        ("requester", &alice, 403),
        ("bob", &bob, 404),
    ] {
        let (status, body) = app
            .api(
                Method::POST,
                &format!("/api/v1/accounts/{a}/approve"),
                token,
                None,
            )
            .await;
        assert_eq!(status, expected, "{who}: {body}");
    }
    // Until registered, licensing functions answer a clear error, and devices are refused.
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/sync"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "account_not_registered"),
        "{body}"
    );
    let mut device = Device::new("C9300-24UX", "FCW2134L00C");
    let report = device.next_report();
    let answer = device
        .push(&app.pi_client("Acme Campus-1"), vec![report.clone()])
        .await
        .unwrap();
    assert_eq!(answer.message_code, MessageCode::TenantInactive);
    assert!(
        answer.message.contains("not registered"),
        "{}",
        answer.message
    );
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/register"),
            &alice,
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "forbidden"),
        "a requester is read-only until approval: {body}"
    );

    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/approve"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("approved")),
        "{body}"
    );
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/approve"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 409, "approving twice");
    let (_, body) = app
        .api(Method::GET, &format!("/api/v1/accounts/{a}"), &alice, None)
        .await;
    assert_eq!(
        body["your_role"], "account_admin",
        "approval makes the requester account admin"
    );

    // The account admin registers online; the worker does it.
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/register"),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let job = body["job_id"].as_str().unwrap().to_owned();
    app.run_jobs().await;
    let (_, body) = app
        .api(Method::GET, &format!("/api/v1/jobs/{job}"), &alice, None)
        .await;
    assert_eq!(body["state"], "succeeded", "{body}");
    let (_, body) = app
        .api(Method::GET, &format!("/api/v1/accounts/{a}"), &alice, None)
        .await;
    assert_eq!(body["status"], "active");
    assert!(body["registered_at"].is_string());
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/register"),
            &alice,
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "already_registered"));
    let answer = device
        .push(&app.pi_client("Acme Campus-1"), vec![report.clone()])
        .await
        .unwrap();
    assert_eq!(answer.status, Status::OkPoll, "{}", answer.message);

    // Alice sees her account and nothing of Bob's, whose job ids are hidden too.
    let (_, body) = app.api(Method::GET, "/api/v1/accounts", &alice, None).await;
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Acme Campus"]);
    let (_, body) = app
        .api(Method::GET, "/api/v1/accounts", &viewer, None)
        .await;
    assert_eq!(
        body["items"].as_array().unwrap().len(),
        2,
        "a system user sees every account"
    );
    for path in [
        format!("/api/v1/accounts/{b}"),
        format!("/api/v1/accounts/{b}/virtual-accounts"),
        format!("/api/v1/accounts/{b}/events"),
    ] {
        let (status, body) = app.api(Method::GET, &path, &alice, None).await;
        assert_eq!((status, error_code(&body)), (404, "not_found"), "{path}");
    }
    let (status, _) = app
        .api(Method::GET, &format!("/api/v1/jobs/{job}"), &bob, None)
        .await;
    assert_eq!(status, 404, "another tenant's job");

    // Deactivation: system operators only; devices then get TENANT_INACTIVE with the reason.
    let deactivate = json!({ "reason": "contract ended" });
    for token in [&viewer, &alice] {
        let (status, _) = app
            .api(
                Method::POST,
                &format!("/api/v1/accounts/{a}/deactivate"),
                token,
                Some(deactivate.clone()),
            )
            .await;
        assert_eq!(status, 403);
    }
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/deactivate"),
            &operator,
            Some(json!({ "reason": "" })),
        )
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_value"));
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/deactivate"),
            &operator,
            Some(deactivate),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("inactive")),
        "{body}"
    );
    let report2 = device.next_report();
    let (http, answer) = app
        .pi_client("Acme Campus-1")
        .exchange(&device.usage_request(vec![report2.clone()]))
        .await
        .unwrap();
    assert_eq!(
        (http, answer.message_code),
        (403, MessageCode::TenantInactive)
    );
    assert!(
        answer.message.contains("contract ended"),
        "{}",
        answer.message
    );
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/reactivate"),
            &operator,
            None,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("active")),
        "{body}"
    );
    let answer = device
        .push(&app.pi_client("Acme Campus-1"), vec![report2])
        .await
        .unwrap();
    assert_eq!(answer.status, Status::OkPoll);

    // Delete: system admins only, refused while it holds PIs unless forced; the log keeps it.
    let (status, _) = app
        .api(
            Method::DELETE,
            &format!("/api/v1/accounts/{a}"),
            &operator,
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = app
        .api(
            Method::DELETE,
            &format!("/api/v1/accounts/{a}"),
            &admin,
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "not_empty"), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM local_accounts").await, 2);
    let (status, body) = app
        .api(
            Method::DELETE,
            &format!("/api/v1/accounts/{a}?force=true"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["product_instances_removed"], 1);
    assert_eq!(app.count("SELECT count(*) FROM local_accounts").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM rum_reports").await, 0);

    let log = actions(&app, &a).await;
    for expected in [
        "account.request by user:alice ok",
        "account.approve by user:admin ok",
        "account.register_requested by user:alice ok",
        "account.register by user:alice ok",
        "account.deactivate by user:olga ok",
        "account.reactivate by user:olga ok",
        "account.delete by user:admin ok",
    ] {
        assert!(
            log.iter().any(|l| l == expected),
            "missing '{expected}' in {log:#?}"
        );
    }
    assert_eq!(
        log.last().map(String::as_str),
        Some("account.delete by user:admin ok")
    );
    // Bob's account is untouched by all this. It registers offline (an air-gapped site): not
    // before approval, then by files, and its account admin does it.
    let (status, body) = app
        .api(Method::GET, &format!("/api/v1/accounts/{b}"), &bob, None)
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("requested")));
    let (status, body) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{b}/registration-request"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not approved"),
        "{body}"
    );
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{b}/approve"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let response = app
        .http()
        .get(format!(
            "{}/api/v1/accounts/{b}/registration-request",
            app.admin_base
        ))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = app
        .cssm
        .portal()
        .answer_registration_request(&response.text().await.unwrap())
        .unwrap();
    let response = app
        .http()
        .post(format!(
            "{}/api/v1/accounts/{b}/registration-response",
            app.admin_base
        ))
        .bearer_auth(&bob)
        .body(answer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, body) = app
        .api(Method::GET, &format!("/api/v1/accounts/{b}"), &bob, None)
        .await;
    assert_eq!(body["status"], "active");
    let mut beta_device = Device::new("C9300-24UX", "BETA0001");
    assert_eq!(
        app.push_next_report(&mut beta_device, "Beta Labs-1")
            .await
            .status,
        Status::OkPoll
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_roles_are_managed_by_system_admins_only() {
    let app = TestApp::builder()
        .with_account("Acme")
        .with_account("Beta")
        .start()
        .await;
    let a = app.account("Acme").await.id.to_string();
    let (carol_id, carol) = app
        .user(
            "carol",
            None,
            json!([{ "account_id": a, "role": "account_user" }]),
        )
        .await;
    let (_, operator) = app.user("olga", Some("system_operator"), json!([])).await;

    // An account user reads its account and changes nothing.
    let (status, _) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/virtual-accounts"),
            &carol,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/virtual-accounts"),
            &carol,
            Some(json!({ "name": "Lab" })),
        )
        .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));

    // Users and settings are for system admins: an operator is refused.
    let (status, _) = app.api(Method::GET, "/api/v1/users", &operator, None).await;
    assert_eq!(status, 403);
    let (status, _) = app
        .api(
            Method::PUT,
            "/api/v1/settings",
            &operator,
            Some(json!({ "validate_device": true })),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .api(
            Method::POST,
            "/api/v1/users",
            &operator,
            Some(json!({ "username": "eve", "password": "long-enough-password" })),
        )
        .await;
    assert_eq!(status, 403);

    // Weak passwords and duplicate names are refused.
    let admin = app.admin_token().await;
    let (status, body) = app
        .api(
            Method::POST,
            "/api/v1/users",
            &admin,
            Some(json!({ "username": "dave", "password": "short" })),
        )
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_value"));
    let (status, body) = app
        .api(
            Method::POST,
            "/api/v1/users",
            &admin,
            Some(json!({ "username": "carol", "password": "long-enough-password" })),
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "username_taken"));

    // Promoting carol to account admin lets her act; her token keeps working (roles are read
    // per request).
    let (status, body) = app.api(Method::PUT, &format!("/api/v1/users/{carol_id}/roles"), &admin,
        Some(json!({ "system_role": null, "account_roles": [{ "account_id": a, "role": "account_admin" }] }))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/virtual-accounts"),
            &carol,
            Some(json!({ "name": "Lab" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Changing one thing leaves the rest: re-enabling keeps her roles.
    let (_, body) = app
        .api(
            Method::PUT,
            &format!("/api/v1/users/{carol_id}/roles"),
            &admin,
            Some(json!({ "disabled": false })),
        )
        .await;
    assert_eq!(body["account_roles"][0]["role"], "account_admin", "{body}");
    // Disabling her ends her session at once.
    let (status, _) = app
        .api(
            Method::PUT,
            &format!("/api/v1/users/{carol_id}/roles"),
            &admin,
            Some(json!({ "system_role": null, "account_roles": [], "disabled": true })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .api(Method::GET, &format!("/api/v1/accounts/{a}"), &carol, None)
        .await;
    assert_eq!(status, 401);
    // An admin cannot lock itself out.
    let (_, me) = app.api(Method::GET, "/api/v1/users", &admin, None).await;
    let admin_id = me["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app
        .api(
            Method::PUT,
            &format!("/api/v1/users/{admin_id}/roles"),
            &admin,
            Some(json!({ "system_role": "system_user" })),
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "self_lockout"));
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE account_id IS NULL AND action IN ('user.create', 'user.roles') AND actor = 'user:admin'").await,
        5,
        "each user change is in the system event log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_per_address_and_user() {
    let app = TestApp::new().await;
    let login = |password: &'static str| {
        app.api(
            Method::POST,
            "/api/v1/auth/login",
            "",
            Some(json!({ "username": "admin", "password": password })),
        )
    };
    for _ in 0..5 {
        assert_eq!(login("wrong").await.0, 401);
    }
    // The sixth attempt is refused before the password is checked, even the right one.
    let response = app
        .http()
        .post(format!("{}/api/v1/auth/login", app.admin_base))
        .json(&json!({ "username": "admin", "password": outpost_tests::ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "too_many_requests");
    // Another user name from the same address is not locked out.
    let (status, _) = app
        .api(
            Method::POST,
            "/api/v1/auth/login",
            "",
            Some(json!({ "username": "someone", "password": "x" })),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM events WHERE action = 'auth.login' AND result = 'rejected'"
        )
        .await,
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_accounts_have_tenant_urls_and_are_deleted_only_when_empty() {
    let app = TestApp::builder().with_account("Acme Campus").start().await;
    let admin = app.admin_token().await;
    let a = app.account("Acme Campus").await.id.to_string();
    let (status, lva) = app.api(Method::POST, &format!("/api/v1/accounts/{a}/virtual-accounts"), &admin,
        Some(json!({ "name": "Data centre", "smart_account": SMART_ACCOUNT, "virtual_account": "DC" }))).await;
    assert_eq!(status, 201, "{lva}");
    assert_eq!(lva["number"], 2);
    assert_eq!(lva["tenant_id"], "Acme Campus-2");
    let url = format!(
        "{}/cslu/v1/pi/Acme%20Campus-2",
        app.settings.public_base_url()
    );
    assert_eq!(lva["transport_url"], url.as_str());
    assert_eq!(
        lva["device_configuration"],
        json!([
            "license smart transport cslu",
            format!("license smart url cslu {url}")
        ])
    );
    assert_eq!(
        (
            lva["virtual_account"].as_str(),
            lva["own_mapping"].as_bool()
        ),
        (Some("DC"), Some(true))
    );
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/virtual-accounts"),
            &admin,
            Some(json!({ "name": "x", "smart_account": "only one" })),
        )
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_value"));

    // A device of LVA 2 reports to its URL and lands in LVA 2.
    let mut device = Device::new("C9300-48P", "FOC2222X0AA");
    assert_eq!(
        app.push_next_report(&mut device, "Acme Campus-2")
            .await
            .status,
        Status::OkPoll
    );
    let (_, list) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/product-instances?lva=2"),
            &admin,
            None,
        )
        .await;
    assert_eq!(list["total"], 1, "{list}");
    let pi = list["items"][0]["id"].as_str().unwrap().to_owned();

    let (status, body) = app
        .api(
            Method::PATCH,
            &format!("/api/v1/accounts/{a}/virtual-accounts/2"),
            &admin,
            Some(json!({ "name": "DC east" })),
        )
        .await;
    assert_eq!((status, body["name"].as_str()), (200, Some("DC east")));
    let (status, body) = app
        .api(
            Method::DELETE,
            &format!("/api/v1/accounts/{a}/virtual-accounts/2"),
            &admin,
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "not_empty"), "{body}");
    let (status, body) = app
        .api(
            Method::DELETE,
            &format!("/api/v1/accounts/{a}/virtual-accounts/1"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "default_virtual_account")
    );
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/product-instances/transfer"),
            &admin,
            Some(json!({ "product_instance_ids": [pi], "to_lva": 1 })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .api(
            Method::DELETE,
            &format!("/api/v1/accounts/{a}/virtual-accounts/2"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, body) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/virtual-accounts"),
            &admin,
            None,
        )
        .await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let log = actions(&app, &a).await;
    for action in [
        "virtual_account.create",
        "virtual_account.update",
        "product_instance.transfer",
        "virtual_account.delete",
    ] {
        assert!(
            log.iter().any(|l| l.starts_with(action)),
            "{action} missing in {log:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_account_keeps_devices_with_the_old_url_reporting() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    let a = app.account("Acme").await.id.to_string();
    let mut device = Device::new("C9300-24UX", "FCW2134L00C");
    let old_client = app.pi_client("Acme-1");
    let r1 = device.next_report();
    assert_eq!(
        device.push(&old_client, vec![r1]).await.unwrap().status,
        Status::OkPoll
    );

    let (status, body) = app
        .api(
            Method::PATCH,
            &format!("/api/v1/accounts/{a}"),
            &admin,
            Some(json!({ "name": "Globex" })),
        )
        .await;
    assert_eq!(
        (status, body["name"].as_str()),
        (200, Some("Globex")),
        "{body}"
    );
    let (_, lvas) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/virtual-accounts"),
            &admin,
            None,
        )
        .await;
    assert_eq!(lvas["items"][0]["tenant_id"], "Globex-1");
    let (_, account) = app
        .api(Method::GET, &format!("/api/v1/accounts/{a}"), &admin, None)
        .await;
    assert_eq!(account["former_names"], json!(["Acme"]));

    // The device still configured with the old URL keeps reporting, to the same PI; the new
    // URL works too.
    let r2 = device.next_report();
    let answer = device.push(&old_client, vec![r2]).await.unwrap();
    assert_eq!(answer.status, Status::OkPoll, "{}", answer.message);
    assert_eq!(
        app.push_next_report(&mut device, "Globex-1").await.status,
        Status::OkPoll
    );
    assert_eq!(app.count("SELECT count(*) FROM product_instances").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM rum_reports").await, 3);
    // Unknown tenants stay unknown.
    let (status, answer) = app
        .pi_client("Acme-7")
        .exchange(&device.hello_request())
        .await
        .unwrap();
    assert_eq!(
        (status, answer.message_code),
        (404, MessageCode::UnknownTenant)
    );

    // The old name stays reserved for the renamed account's devices.
    let (status, body) = app
        .api(
            Method::POST,
            "/api/v1/accounts",
            &admin,
            Some(json!({ "name": "Acme", "smart_account": "s", "virtual_account": "v" })),
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "name_taken"));
    // Renaming back makes it current again.
    let (status, _) = app
        .api(
            Method::PATCH,
            &format!("/api/v1/accounts/{a}"),
            &admin,
            Some(json!({ "name": "Acme" })),
        )
        .await;
    assert_eq!(status, 200);
    let (_, account) = app
        .api(Method::GET, &format!("/api/v1/accounts/{a}"), &admin, None)
        .await;
    assert_eq!(account["former_names"], json!(["Globex"]));
    assert_eq!(
        app.push_next_report(&mut device, "Globex-1").await.status,
        Status::OkPoll
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_validation_and_nat_support_are_set_per_tenant() {
    let app = TestApp::builder()
        .with_account("Acme")
        .with_account("Beta")
        .start()
        .await;
    let admin = app.admin_token().await;
    let a = app.account("Acme").await.id.to_string();
    let b = app.account("Beta").await.id.to_string();
    let (status, body) = app
        .api(
            Method::PUT,
            &format!("/api/v1/accounts/{a}/settings"),
            &admin,
            Some(json!({ "validate_device": true })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["effective"],
        json!({ "validate_device": true, "nat_support": false })
    );
    let (_, body) = app
        .api(
            Method::PUT,
            &format!("/api/v1/accounts/{b}/settings"),
            &admin,
            Some(json!({ "nat_support": true })),
        )
        .await;
    assert_eq!(
        body["effective"],
        json!({ "validate_device": false, "nat_support": true })
    );

    // Acme refuses an unknown device; Beta (global setting: off) takes it, behind NAT.
    let mut stranger = Device::new("C9300-24UX", "FCW0000UNKN");
    let report = stranger.next_report();
    let (status, answer) = app
        .pi_client("Acme-1")
        .exchange(&stranger.usage_request(vec![report.clone()]))
        .await
        .unwrap();
    assert_eq!(
        (status, answer.message_code),
        (403, MessageCode::DeviceNotAllowed)
    );
    assert_eq!(
        stranger
            .push(&app.pi_client("Beta-1"), vec![report.clone()])
            .await
            .unwrap()
            .status,
        Status::OkPoll
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM product_instances WHERE account_id = '{b}' AND behind_nat"
        ))
        .await,
        1
    );

    // Once added to Acme's inventory, the device is accepted there.
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/product-instances"),
            &admin,
            Some(json!({ "udi_pid": "C9300-24UX", "udi_serial_number": "FCW0000UNKN" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        stranger
            .push(&app.pi_client("Acme-1"), vec![report])
            .await
            .unwrap()
            .status,
        Status::OkPoll
    );

    // `null` follows the global switch again, which a system admin turns on for everyone.
    let (_, body) = app
        .api(
            Method::PUT,
            &format!("/api/v1/accounts/{a}/settings"),
            &admin,
            Some(json!({ "validate_device": null })),
        )
        .await;
    assert_eq!(body["validate_device"], Value::Null);
    let (status, body) = app
        .api(
            Method::PUT,
            "/api/v1/settings",
            &admin,
            Some(json!({ "validate_device": true })),
        )
        .await;
    assert_eq!(
        (status, body["validate_device"].as_bool()),
        (200, Some(true))
    );
    let mut other = Device::new("C9300-24UX", "FCW0000OTHR");
    let other_report = other.next_report();
    let (status, _) = app
        .pi_client("Beta-1")
        .exchange(&other.usage_request(vec![other_report]))
        .await
        .unwrap();
    assert_eq!(status, 403, "the global switch now covers Beta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_sends_each_report_to_the_pair_its_device_or_lva_maps_to() {
    let app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    let a = app.account("Acme").await.id.to_string();
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{a}/virtual-accounts"),
            &admin,
            Some(json!({ "name": "DC", "smart_account": SMART_ACCOUNT, "virtual_account": "DC" })),
        )
        .await;
    assert_eq!(status, 201);
    // In LVA 2 (mapped to DC) but mapped back to Campus on its own.
    let (status, body) = app.api(Method::POST, &format!("/api/v1/accounts/{a}/product-instances"), &admin,
        Some(json!({ "udi_pid": "C9300-24UX", "udi_serial_number": "OWN0001", "lva": 2, "smart_account": SMART_ACCOUNT, "virtual_account": VIRTUAL_ACCOUNT }))).await;
    assert_eq!(status, 201, "{body}");
    let mut in_lva1 = Device::new("C9300-24UX", "LVA10001");
    let mut in_lva2 = Device::new("C9300-24UX", "LVA20001");
    let mut own = Device::new("C9300-24UX", "OWN0001");
    for (device, tenant) in [
        (&mut in_lva1, "Acme-1"),
        (&mut in_lva2, "Acme-2"),
        (&mut own, "Acme-2"),
    ] {
        assert_eq!(
            app.push_next_report(device, tenant).await.status,
            Status::OkPoll
        );
    }
    assert_eq!(app.sync("Acme").await, JobState::Succeeded);
    let mut seen: Vec<(String, String)> = app
        .cssm
        .received_reports()
        .iter()
        .map(|r| (r.sudi.udi_serial_number.clone(), r.virtual_account.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("LVA10001".into(), "Campus".into()),
            ("LVA20001".into(), "DC".into()),
            ("OWN0001".into(), "Campus".into())
        ]
    );
    // Each device gets its ACK back.
    for (device, tenant) in [
        (&mut in_lva1, "Acme-1"),
        (&mut in_lva2, "Acme-2"),
        (&mut own, "Acme-2"),
    ] {
        assert_eq!(device.poll(&app.pi_client(tenant)).await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_skips_approval_and_deleted_lva_numbers_are_not_reused() {
    let mut app = TestApp::builder().with_account("Acme").start().await;
    let admin = app.admin_token().await;
    let (_, operator) = app.user("olga", Some("system_operator"), json!([])).await;
    let (_, alice) = app.user("alice", None, json!([])).await;
    let requested = request_account(&app, &alice, "Pending").await;

    // An operator cannot deactivate a request (reactivating would approve it).
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{requested}/deactivate"),
            &operator,
            Some(json!({ "reason": "x" })),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "invalid_state"),
        "{body}"
    );

    // A deactivated approved account registers neither online nor by files.
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{requested}/approve"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{requested}/deactivate"),
            &operator,
            Some(json!({ "reason": "on hold" })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{requested}/register"),
            &alice,
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "invalid_state"),
        "{body}"
    );
    let (status, body) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{requested}/registration-request"),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (_, body) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{requested}"),
            &alice,
            None,
        )
        .await;
    assert_eq!(body["status"], "inactive");
    // Deactivated after its registration was queued: the job refuses, the account stays inactive.
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{requested}/reactivate"),
            &operator,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, job) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{requested}/register"),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{requested}/deactivate"),
            &operator,
            Some(json!({ "reason": "again" })),
        )
        .await;
    assert_eq!(status, 200);
    app.expect_failed_jobs(1);
    app.run_jobs().await;
    let (_, job) = app
        .api(
            Method::GET,
            &format!("/api/v1/jobs/{}", job["job_id"].as_str().unwrap()),
            &alice,
            None,
        )
        .await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap()
            .contains("only an approved account registers"),
        "{job}"
    );
    let (_, body) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{requested}"),
            &alice,
            None,
        )
        .await;
    assert_eq!(
        (body["status"].as_str(), body["registered_at"].as_str()),
        (Some("inactive"), None)
    );

    // Deleting LVA 2 and creating another gives number 3: devices still configured with the
    // URL of 2 do not land in the new one.
    let a = app.account("Acme").await.id.to_string();
    let lvas = format!("/api/v1/accounts/{a}/virtual-accounts");
    let (_, two) = app
        .api(Method::POST, &lvas, &admin, Some(json!({ "name": "Two" })))
        .await;
    assert_eq!(two["number"], 2);
    let (status, _) = app
        .api(Method::DELETE, &format!("{lvas}/2"), &admin, None)
        .await;
    assert_eq!(status, 204);
    let (_, three) = app
        .api(
            Method::POST,
            &lvas,
            &admin,
            Some(json!({ "name": "Three" })),
        )
        .await;
    assert_eq!(
        (three["number"].as_i64(), three["tenant_id"].as_str()),
        (Some(3), Some("Acme-3"))
    );
    let device = Device::new("C9300-24UX", "OLDURL01");
    let (status, answer) = app
        .pi_client("Acme-2")
        .exchange(&device.hello_request())
        .await
        .unwrap();
    assert_eq!(
        (status, answer.message_code),
        (404, MessageCode::UnknownTenant)
    );

    // Bad text is refused before it reaches the database, and nothing is half done.
    for (path, method, body) in [
        (
            lvas.clone(),
            Method::POST,
            json!({ "name": "x", "smart_account": "a\u{0}", "virtual_account": "b" }),
        ),
        (
            format!("/api/v1/accounts/{a}"),
            Method::PATCH,
            json!({ "name": "Renamed", "email": "a@b\u{0}" }),
        ),
        (
            format!("/api/v1/accounts/{a}/licenses/transfer"),
            Method::POST,
            json!({ "entitlement_tag": "t\u{0}", "from_lva": 1, "to_lva": 3, "quantity": 1 }),
        ),
        (
            "/api/v1/accounts".to_owned(),
            Method::POST,
            json!({ "name": "N", "smart_account": "s\u{7}", "virtual_account": "v" }),
        ),
    ] {
        let (status, response) = app.api(method, &path, &admin, Some(body)).await;
        assert_eq!(status, 422, "{path}: {response}");
    }
    let (status, _) = app
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{a}/product-instances?alert=%00"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .api(
            Method::POST,
            "/api/v1/auth/login",
            "",
            Some(json!({ "username": "ad\u{0}min", "password": "x" })),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM local_virtual_accounts WHERE account_id = '{a}'"
        ))
        .await,
        2,
        "LVAs 1 and 3"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM local_accounts WHERE name = 'Renamed'")
            .await,
        0
    );
}
