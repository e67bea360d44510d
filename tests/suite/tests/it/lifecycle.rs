//! One rule, one answer: every account-lifecycle command, run through the `outpost admin`
//! command line and through the admin API against accounts in the same states, gets the same
//! outcome (done, with the same state afterwards; or refused with the same code and message).
//! Both front doors call the same use cases of `outpost_app`; this proves it from outside.

use outpost_tests::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

/// The states an account is put in before each command.
const STATES: [&str; 6] = [
    "New",
    "Requested",
    "Approved",
    "Active",
    "Renamed",
    "Inactive",
];
/// The lifecycle commands.
const COMMANDS: [&str; 7] = [
    "create",
    "approve",
    "register",
    "deactivate",
    "reactivate",
    "rename",
    "delete",
];

/// What a command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Done; the account's status (and name) afterwards, or "gone".
    Done(String),
    /// Refused by a rule: (code, message).
    Refused(String, String),
    /// The account does not exist.
    NotFound,
}

/// The account a (state, command) case works on, and the name its "Renamed" state had before.
fn names(state: &str, command: &str) -> (String, String) {
    (format!("{state} {command}"), format!("Former {command}"))
}

/// Puts one account of each (state, command) case into its state, with the admin API (which
/// the command line is compared against, so either could set up).
async fn set_up(app: &TestApp, admin: &str, requester: &str) {
    for command in COMMANDS {
        for state in STATES {
            let (name, former) = names(state, command);
            let id = match state {
                "New" => continue,
                "Requested" => request(app, requester, &name).await,
                "Renamed" => {
                    let id = active(app, admin, requester, &former).await;
                    let (status, body) = app
                        .api(
                            Method::PATCH,
                            &format!("/api/v1/accounts/{id}"),
                            admin,
                            Some(json!({ "name": name })),
                        )
                        .await;
                    assert_eq!(status, 200, "{body}");
                    id
                }
                "Active" => active(app, admin, requester, &name).await,
                _ => {
                    let id = request(app, requester, &name).await;
                    call(app, admin, Method::POST, &format!("{id}/approve"), None).await;
                    id
                }
            };
            if state == "Inactive" {
                call(app, admin, Method::POST, &format!("{id}/register"), None).await;
                app.run_jobs().await;
                let reason = json!({ "reason": "on hold" });
                call(
                    app,
                    admin,
                    Method::POST,
                    &format!("{id}/deactivate"),
                    Some(reason),
                )
                .await;
            }
        }
    }
}

async fn request(app: &TestApp, requester: &str, name: &str) -> String {
    let body = json!({ "name": name, "smart_account": "Acme Corp", "virtual_account": "Campus" });
    let (status, body) = app
        .api(Method::POST, "/api/v1/accounts", requester, Some(body))
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn active(app: &TestApp, admin: &str, requester: &str, name: &str) -> String {
    let id = request(app, requester, name).await;
    call(app, admin, Method::POST, &format!("{id}/approve"), None).await;
    call(app, admin, Method::POST, &format!("{id}/register"), None).await;
    app.run_jobs().await;
    id
}

/// A set-up call that must work.
async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) {
    let (status, answer) = app
        .api(method, &format!("/api/v1/accounts/{path}"), token, body)
        .await;
    assert!((200..300).contains(&status), "{path}: {answer}");
}

/// The account's status and name now, for comparing what a command left.
async fn standing(app: &TestApp, name: &str) -> String {
    let rows = app
        .count_rows(&format!(
            "SELECT status || ' ' || name FROM local_accounts WHERE name = '{name}' OR name = '{name} Two' OR id IN (SELECT account_id FROM account_former_names WHERE name = '{name}')"
        ))
        .await;
    rows.first().cloned().unwrap_or_else(|| "gone".into())
}

/// The new name a rename asks for: back to its former name for a renamed account (its own
/// former name is free for it), else a new one.
fn new_name(state: &str, command: &str) -> String {
    let (name, former) = names(state, command);
    if state == "Renamed" {
        former
    } else {
        format!("{name} Two")
    }
}

/// The name `create` asks for: the account's own, or the name a renamed account bore.
fn created_name(state: &str, command: &str) -> String {
    let (name, former) = names(state, command);
    if state == "Renamed" { former } else { name }
}

/// Runs a command with `outpost admin`.
async fn by_cli(app: &TestApp, state: &str, command: &str) -> Outcome {
    let (name, _) = names(state, command);
    let args: Vec<String> = match command {
        "create" => vec![
            "create-account".into(),
            "--name".into(),
            created_name(state, command),
            "--smart-account".into(),
            "Acme Corp".into(),
            "--virtual-account".into(),
            "Campus".into(),
        ],
        "deactivate" => vec![
            command.into(),
            name.clone(),
            "--reason".into(),
            "on hold".into(),
        ],
        "rename" => vec![command.into(), name.clone(), new_name(state, command)],
        "delete" => vec!["delete-account".into(), name.clone()],
        _ => vec![command.into(), name.clone()],
    };
    let mut all = vec!["admin"];
    all.extend(args.iter().map(String::as_str));
    let (code, out, err) = app.cli(&all);
    if code == 0 {
        return Outcome::Done(standing(app, &created_or(state, command, &name)).await);
    }
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or(&err);
    let line = line.trim_start_matches("error: ");
    if line.ends_with(" not found") {
        return Outcome::NotFound;
    }
    match line.rsplit_once(" (") {
        Some((message, code)) if code.ends_with(')') => {
            Outcome::Refused(code.trim_end_matches(')').to_owned(), message.to_owned())
        }
        _ => panic!("{command} of {state}: unexpected output\n{out}\n{err}"),
    }
}

fn created_or(state: &str, command: &str, name: &str) -> String {
    if command == "create" {
        created_name(state, command)
    } else {
        name.to_owned()
    }
}

/// Runs a command with the admin API, as a system admin.
async fn by_api(app: &TestApp, admin: &str, state: &str, command: &str) -> Outcome {
    let (name, _) = names(state, command);
    let id = app
        .count_rows(&format!(
            "SELECT id::text FROM local_accounts WHERE name = '{name}'"
        ))
        .await
        .pop()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let account = format!("/api/v1/accounts/{id}");
    let (method, path, body) = match command {
        "create" => {
            let body = json!({ "name": created_name(state, command), "smart_account": "Acme Corp", "virtual_account": "Campus" });
            (Method::POST, "/api/v1/accounts".to_owned(), Some(body))
        }
        "deactivate" => (
            Method::POST,
            format!("{account}/deactivate"),
            Some(json!({ "reason": "on hold" })),
        ),
        "rename" => (
            Method::PATCH,
            account,
            Some(json!({ "name": new_name(state, command) })),
        ),
        "delete" => (Method::DELETE, account, None),
        _ => (Method::POST, format!("{account}/{command}"), None),
    };
    let (status, answer) = app.api(method, &path, admin, body).await;
    if (200..300).contains(&status) {
        // A registration runs in the worker; the command line waits for it.
        app.run_jobs().await;
        if command == "create" {
            // The API's request waits for approval; the command line is an administrator's
            // and approves at once: both accepted the same account.
            return Outcome::Done(standing(app, &created_name(state, command)).await);
        }
        return Outcome::Done(standing(app, &name).await);
    }
    if status == 404 {
        return Outcome::NotFound;
    }
    let error = &answer["error"];
    Outcome::Refused(
        error["code"].as_str().unwrap_or_default().to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The outcome every case must have, by kind: `ok`, `not_found` or the refusal's code.
fn expected(state: &str, command: &str) -> &'static str {
    match (command, state) {
        ("create", "New") => "ok",
        ("create", _) => "name_taken",
        (_, "New") => "not_found",
        ("approve", "Requested") => "ok",
        ("approve", _) => "invalid_state",
        ("register", "Approved") => "ok",
        ("register", "Requested") => "invalid_state",
        ("register", _) => "already_registered",
        ("deactivate", "Approved" | "Active" | "Renamed") => "ok",
        ("deactivate", _) => "invalid_state",
        ("reactivate", "Inactive") => "ok",
        ("reactivate", _) => "invalid_state",
        _ => "ok",
    }
}

fn kind(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Done(_) => "ok",
        Outcome::NotFound => "not_found",
        Outcome::Refused(code, _) => code,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lifecycle_command_gets_the_same_answer_from_the_cli_and_the_api() {
    let cli = TestApp::new().await;
    let api = TestApp::new().await;
    for app in [&cli, &api] {
        let admin = app.admin_token().await;
        let (_, requester) = app.user("requester", None, json!([])).await;
        set_up(app, &admin, &requester).await;
    }
    let admin = api.admin_token().await;
    let mut cases = 0;
    for command in COMMANDS {
        for state in STATES {
            let by_cli = by_cli(&cli, state, command).await;
            let by_api = by_api(&api, &admin, state, command).await;
            let same = match (&by_cli, &by_api) {
                // The API's request waits for approval, the administrator's is approved and
                // registered at once: both were accepted.
                (Outcome::Done(_), Outcome::Done(_)) if command == "create" => true,
                _ => by_cli == by_api,
            };
            assert!(
                same,
                "{command} of a {state} account:\n  cli: {by_cli:?}\n  api: {by_api:?}"
            );
            assert_eq!(
                kind(&by_cli),
                expected(state, command),
                "{command} of a {state} account: {by_cli:?}"
            );
            cases += 1;
        }
    }
    assert_eq!(cases, 42);
}
