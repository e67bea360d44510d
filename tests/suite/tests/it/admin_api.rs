//! The admin API of the first slice: login, tokens, "Synchronize now", jobs, schedules, the
//! ledger, alerts and events; errors in the JSON envelope.

use outpost_tests::{TestApp, error_code};
use serde_json::{Value, json};

const ACCOUNT: &str = "Acme Campus";

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let response = app
        .http()
        .get(format!("{}{path}", app.admin_base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_tokens() {
    let app = TestApp::new().await;
    let http = app.http();
    let login = |username: &str, password: &str| {
        http.post(format!("{}/api/v1/auth/login", app.admin_base))
            .json(&json!({ "username": username, "password": password }))
            .send()
    };
    let wrong = login("admin", "nope").await.unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(error_code(&body), "invalid_credentials");
    let unknown = login("mallory", "nope").await.unwrap();
    assert_eq!(unknown.status(), 401);

    let bad_body = http
        .post(format!("{}/api/v1/auth/login", app.admin_base))
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_body.status(), 400);
    assert_eq!(error_code(&bad_body.json().await.unwrap()), "bad_request");

    let token = app.admin_token().await;
    assert_eq!(get(&app, &token, "/api/v1/accounts").await.0, 200);

    // No token, a forged one, and tokens that break the fixed rules are all 401.
    let none = http
        .get(format!("{}/api/v1/accounts", app.admin_base))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(error_code(&none.json().await.unwrap()), "unauthorized");
    // Forgeries name the real admin, so only the signature and claim checks can refuse them.
    let decode = |part: &str| -> Value {
        serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part)
                .unwrap(),
        )
        .unwrap()
    };
    let admin_id = decode(token.split('.').nth(1).unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = chrono::Utc::now().timestamp();
    let claims = |aud: &str, exp: i64| json!({ "sub": admin_id, "iss": "outpost", "aud": aud, "exp": exp, "nbf": now - 10, "iat": now - 10 });
    let other_key = jsonwebtoken::EncodingKey::from_secret(b"another key that is long enough!!");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims("outpost-admin-api", now + 600),
        &other_key,
    )
    .unwrap();
    let b64 = |v: &Value| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            v.to_string(),
        )
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(&claims("outpost-admin-api", now + 600))
    );
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload = decode(&parts[1]);
    payload["exp"] = json!(now + 100_000);
    parts[1] = b64(&payload);
    let tampered = parts.join(".");
    // The key kept in the database (test apps leave auth.jwt_secret empty) is sealed: signed
    // with what a dump of the database shows, a token is refused.
    let client = outpost_db::embedded::maintenance_client(app.db.url())
        .await
        .unwrap();
    let stored: String = client
        .query_one("SELECT jwt_secret FROM system_settings", &[])
        .await
        .unwrap()
        .get(0);
    let dumped_key = jsonwebtoken::EncodingKey::from_secret(stored.as_bytes());
    let from_dump = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims("outpost-admin-api", now + 600),
        &dumped_key,
    )
    .unwrap();
    assert_eq!(get(&app, &from_dump, "/api/v1/accounts").await.0, 401);
    // With the real key, opened with the credentials key: a well-formed token works, an
    // expired one or one for another audience does not.
    let credentials =
        outpost_core::secrets::CredentialKey::load_or_create(&app.settings.credentials_key_path())
            .unwrap();
    let secret = outpost_app::secrets::jwt_secret(&mut *app.conn().await, &credentials)
        .await
        .unwrap();
    let real_key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let sign = |claims: &Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &real_key).unwrap()
    };
    assert_eq!(
        get(
            &app,
            &sign(&claims("outpost-admin-api", now + 600)),
            "/api/v1/accounts"
        )
        .await
        .0,
        200
    );
    let expired = sign(&claims("outpost-admin-api", now - 600));
    let other_audience = sign(&claims("outpost-device-api", now + 600));
    for (what, bad) in [
        ("garbage", "not-a-token".to_owned()),
        ("another key", forged),
        ("alg none", alg_none),
        ("tampered payload", tampered),
        ("expired", expired),
        ("another audience", other_audience),
    ] {
        let (status, body) = get(&app, &bad, "/api/v1/accounts").await;
        assert_eq!(status, 401, "{what}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronize_now_through_the_api() {
    let app = TestApp::builder().with_account(ACCOUNT).start().await;
    let token = app.admin_token().await;
    let account = app.account(ACCOUNT).await;

    let (status, body) = get(
        &app,
        &token,
        &format!("/api/v1/accounts/{}/virtual-accounts", account.id),
    )
    .await;
    assert_eq!(status, 200);
    let lva = &body["items"][0];
    assert_eq!(lva["tenant_id"], "Acme Campus-1");
    assert!(
        lva["transport_url"]
            .as_str()
            .unwrap()
            .ends_with("/cslu/v1/pi/Acme%20Campus-1"),
        "{lva}"
    );
    assert_eq!(
        lva["device_configuration"][0],
        "license smart transport cslu"
    );

    let post = || {
        app.http()
            .post(format!(
                "{}/api/v1/accounts/{}/sync",
                app.admin_base, account.id
            ))
            .bearer_auth(&token)
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let second: Value = post().await.unwrap().json().await.unwrap();
    assert_eq!(
        first["job_id"], second["job_id"],
        "one queued sync per account"
    );
    assert_eq!(second["already_queued"], true);

    let job_path = format!("/api/v1/jobs/{}", first["job_id"].as_str().unwrap());
    assert_eq!(get(&app, &token, &job_path).await.1["state"], "queued");
    app.run_jobs().await;
    let (_, job) = get(&app, &token, &job_path).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["state"], "succeeded");

    let (_, runs) = get(
        &app,
        &token,
        &format!("/api/v1/accounts/{}/sync-runs", account.id),
    )
    .await;
    assert_eq!(runs["items"][0]["state"], "succeeded");
    assert_eq!(runs["items"][0]["licenses_synced"], 3);
    let (_, events) = get(
        &app,
        &token,
        &format!("/api/v1/accounts/{}/events?limit=10", account.id),
    )
    .await;
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"cssm.sync") && actions.contains(&"cssm.sync_requested"),
        "{actions:?}"
    );
    let (status, _) = get(
        &app,
        &token,
        &format!("/api/v1/accounts/{}/alerts", account.id),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_and_errors_use_the_envelope() {
    let app = TestApp::builder().with_account(ACCOUNT).start().await;
    let token = app.admin_token().await;
    let account = app.account(ACCOUNT).await;
    let path = format!(
        "{}/api/v1/accounts/{}/schedules/cssm-sync",
        app.admin_base, account.id
    );

    let (status, schedule) = get(
        &app,
        &token,
        &format!("/api/v1/accounts/{}/schedules/cssm-sync", account.id),
    )
    .await;
    assert_eq!(
        (
            status,
            schedule["every_days"].as_i64(),
            schedule["hour"].as_i64()
        ),
        (200, Some(1), Some(2))
    );

    let put = |body: Value| app.http().put(&path).bearer_auth(&token).json(&body).send();
    let bad = put(
        json!({ "enabled": true, "every_days": 3, "hour": 25, "minute": 0, "time_zone": "UTC" }),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 422);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(error_code(&bad), "invalid_value");
    assert!(bad["error"]["message"].as_str().unwrap().contains("hour"));
    let unknown_field = put(json!({ "enabled": true, "every_days": 3, "hour": 1, "minute": 0, "time_zone": "UTC", "color": "red" })).await.unwrap();
    assert_eq!(unknown_field.status(), 400);
    let good = put(json!({ "enabled": true, "every_days": 3, "hour": 4, "minute": 30, "time_zone": "Europe/Paris" })).await.unwrap();
    assert_eq!(good.status(), 200);
    let good: Value = good.json().await.unwrap();
    assert_eq!(
        (good["every_days"].as_i64(), good["time_zone"].as_str()),
        (Some(3), Some("Europe/Paris"))
    );

    // Unknown and malformed ids are a plain 404; so is an unknown path.
    for missing in [
        format!("/api/v1/accounts/{}/sync-runs", uuid::Uuid::new_v4()),
        "/api/v1/accounts/not-a-uuid/alerts".into(),
        "/api/v1/nothing".into(),
        format!("/api/v1/jobs/{}", uuid::Uuid::new_v4()),
    ] {
        let (status, body) = get(&app, &token, &missing).await;
        assert_eq!(status, 404, "{missing}");
        assert_eq!(error_code(&body), "not_found");
    }

    // Synchronising an account that is not registered is refused with a reason.
    app.execute("UPDATE local_accounts SET status = 'approved'")
        .await;
    let refused = app
        .http()
        .post(format!(
            "{}/api/v1/accounts/{}/sync",
            app.admin_base, account.id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert_eq!(
        error_code(&refused.json().await.unwrap()),
        "account_not_registered"
    );

    let health = app
        .http()
        .get(format!("{}/healthz", app.admin_base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .http()
        .get(format!("{}/readyz", app.admin_base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ui = app
        .http()
        .get(format!("{}/ui/", app.admin_base))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(
        ui.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert!(
        ui.text()
            .await
            .unwrap()
            .contains(r#"<script src="app.js">"#)
    );
}
