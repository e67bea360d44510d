//! Secrets at rest: what the database holds of the CSSM client secrets, the webhook secrets, the
//! access-token key and the instance key is sealed with the credentials key (a file outside
//! the database), so a dump of the database alone opens nothing; a node started with another
//! key refuses to start and says which file to copy; values stored in clear by an older
//! Outpost are sealed at the next start and keep working.

use outpost_core::secrets::is_sealed;
use outpost_db::enums::JobState;
use outpost_tests::TestApp;
use reqwest::Method;
use serde_json::json;

const ACCOUNT: &str = "Acme";

/// Every secret column as stored, with what it is.
async fn stored_secrets(app: &TestApp) -> Vec<(String, String)> {
    let mut stored = Vec::new();
    for (what, sql) in [
        (
            "jwt",
            "SELECT jwt_secret FROM system_settings WHERE jwt_secret IS NOT NULL",
        ),
        (
            "instance key",
            "SELECT instance_private_key_pem FROM system_settings WHERE instance_private_key_pem IS NOT NULL",
        ),
        (
            "client secret",
            "SELECT cssm_client_secret FROM local_accounts WHERE cssm_client_secret IS NOT NULL",
        ),
        ("webhook secret", "SELECT secret FROM webhooks"),
    ] {
        for value in app.count_rows(sql).await {
            stored.push((what.to_owned(), value));
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_dump_holds_no_secret_in_clear() {
    let app = TestApp::builder().with_account(ACCOUNT).start().await;
    let admin = app.admin_token().await;
    let account = app.account(ACCOUNT).await.id;
    let (status, webhook) = app
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{account}/webhooks"),
            &admin,
            Some(json!({ "url": "https://hooks.example.com/outpost", "secret": "webhook-secret-0123456789" })),
        )
        .await;
    assert_eq!(status, 201, "{webhook}");
    assert_eq!(webhook["secret"], "webhook-secret-0123456789");

    let stored = stored_secrets(&app).await;
    let kinds: Vec<&str> = stored.iter().map(|(what, _)| what.as_str()).collect();
    assert_eq!(
        kinds,
        ["jwt", "instance key", "client secret", "webhook secret"]
    );
    for (what, value) in &stored {
        assert!(is_sealed(value), "{what} stored in clear: {value}");
        assert!(
            !value.contains("PRIVATE KEY") && !value.contains("webhook-secret"),
            "{what}: {value}"
        );
    }
    // Sealed, they still work: a sync authenticates to CSSM with the client secret, and the
    // admin token was issued with the sealed access-token key.
    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_key_refuses_to_start_and_clear_values_are_sealed() {
    let app = TestApp::builder().with_account(ACCOUNT).start().await;
    // Another node, configured with a key file of its own: it must not start against secrets it
    // cannot open.
    let other = app.dir.path().join("other-node.key");
    let other_path = other.to_str().unwrap();
    let (code, _, err) = app.cli_with(
        &["admin", "list-accounts"],
        &[("OUTPOST_AUTH__CREDENTIALS_KEY_FILE", other_path)],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("does not open the access-token key this database holds")
            && err.contains(other_path)
            && err.contains("copy that file from a node already serving this database"),
        "{err}"
    );

    // An older Outpost stored the client secret in clear: the next start seals it.
    let secret = app
        .count_rows("SELECT cssm_client_secret FROM local_accounts")
        .await
        .remove(0);
    let key =
        outpost_core::secrets::CredentialKey::load_or_create(&app.settings.credentials_key_path())
            .unwrap();
    let plain =
        outpost_app::secrets::open_client_secret(&key, app.account(ACCOUNT).await.id, &secret)
            .unwrap();
    app.execute(&format!(
        "UPDATE local_accounts SET cssm_client_secret = '{plain}'"
    ))
    .await;
    let (code, out, err) = app.cli(&["admin", "list-accounts"]);
    assert_eq!(code, 0, "{out}{err}");
    let resealed = app
        .count_rows("SELECT cssm_client_secret FROM local_accounts")
        .await
        .remove(0);
    assert!(
        is_sealed(&resealed) && !resealed.contains(&plain),
        "{resealed}"
    );
    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
}
