//! The `outpost` binary as an operator uses it: settings errors, the embedded PostgreSQL of
//! `outpost serve`, and the admin commands.

use std::process::Command;

use outpost_cssm_sim::{CssmSim, SimConfig};
use outpost_db::embedded::{EmbeddedPostgres, PgBinaries};
use outpost_db::testing::TestDatabase;
use outpost_tests::{OutpostProcess, outpost_binary, run_outpost};

#[test]
fn settings_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("outpost.toml");
    std::fs::write(&bad, "[device]\nhttps_listen = \"not an address\"\n").unwrap();
    let (code, _, err) = run_outpost(&["--config", bad.to_str().unwrap(), "check-config"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("settings key `device.https_listen`"), "{err}");

    let (code, _, err) = run_outpost(&["check-config"], &[("OUTPOST_WORKER__CONCURRENCY", "0")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`worker.concurrency`: must be at least 1"),
        "{err}"
    );

    let (code, _, err) = run_outpost(
        &["--config", "/nonexistent/outpost.toml", "check-config"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/outpost.toml does not exist"),
        "{err}"
    );

    let example = outpost_tests::fixture("../../deploy/config.example.toml");
    let (code, out, _) = run_outpost(
        &["--config", example.to_str().unwrap(), "check-config"],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("settings are valid"));
}

#[test]
fn without_postgresql_serve_says_which_package_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run_outpost(
        &["serve"],
        &[
            ("OUTPOST_DATA_DIR", dir.path().to_str().unwrap()),
            ("OUTPOST_EMBEDDED_POSTGRES__BIN_DIR", "/nonexistent/bin"),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("Install the Debian package `postgresql`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_its_own_postgresql_and_stops_it_on_exit() {
    // Under /tmp: when the suite runs as root, the cluster runs as `postgres`, which must reach
    // it. A space in the path, as operators' paths sometimes have.
    let dir = tempfile::Builder::new()
        .prefix("outpost data ")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().join("data");
    let env: Vec<(String, String)> = [
        ("OUTPOST_DATA_DIR", data.to_str().unwrap()),
        ("OUTPOST_DEVICE__HTTPS_LISTEN", "127.0.0.1:0"),
        ("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0"),
        ("OUTPOST_WORKER__SCHEDULES", "false"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let outpost = OutpostProcess::serve(&env, dir.path().join("serve.log")).await;
    assert!(
        outpost
            .banner
            .contains("First admin: user \"admin\", password \""),
        "{}",
        outpost.banner
    );
    let cluster = EmbeddedPostgres::new(
        PgBinaries::locate("").unwrap(),
        &data.join("postgres"),
        "postgres",
        true,
    )
    .unwrap();
    assert!(cluster.is_running().await.unwrap());
    let ca = std::fs::read_to_string(data.join("tls/ca.crt")).unwrap();
    let tls = outpost_core::tls::client_config(&[ca], false).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let ready = http
        .get(format!("{}/readyz", outpost.admin_base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let status = outpost.interrupt().await;
    assert!(status.success(), "Ctrl-C stops Outpost cleanly");
    assert!(
        !cluster.is_running().await.unwrap(),
        "the embedded PostgreSQL stops with Outpost"
    );

    // The second start finds the cluster made by the first and prints no new password.
    let outpost = OutpostProcess::serve(&env, dir.path().join("serve-2.log")).await;
    assert!(
        !outpost.banner.contains("First admin"),
        "{}",
        outpost.banner
    );
    assert!(outpost.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_onboard_an_account_and_explain_failures() {
    let db = TestDatabase::create().await.unwrap();
    let cssm = CssmSim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("cssm-ca.crt");
    std::fs::write(&ca, cssm.ca_certificate_pem().unwrap()).unwrap();
    let env = [
        ("OUTPOST_DATABASE__URL", db.url()),
        ("OUTPOST_DATA_DIR", dir.path().to_str().unwrap()),
        ("OUTPOST_CSSM__API_URL", cssm.url()),
        ("OUTPOST_CSSM__TOKEN_URL", cssm.url()),
        ("OUTPOST_CSSM__CA_FILE", ca.to_str().unwrap()),
        ("OUTPOST_PUBLIC_URL", "https://outpost.acme.example"),
    ];
    let run = |args: &[&str]| run_outpost(args, &env);

    let (code, out, err) = run(&[
        "admin",
        "create-account",
        "--name",
        "Acme Campus",
        "--smart-account",
        "Acme Corp",
        "--virtual-account",
        "Campus",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("registered 'Acme Campus' with CSSM"), "{out}");
    assert!(
        out.contains(
            "license smart url cslu https://outpost.acme.example/cslu/v1/pi/Acme%20Campus-1"
        ),
        "{out}"
    );

    let (code, _, err) = run(&[
        "admin",
        "create-account",
        "--name",
        "Acme Campus",
        "--smart-account",
        "Acme Corp",
        "--virtual-account",
        "Campus",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the name 'Acme Campus' is used by another local account"),
        "{err}"
    );

    let (code, _, err) = run(&[
        "admin",
        "create-account",
        "--name",
        "Globex",
        "--smart-account",
        "Globex Inc",
        "--virtual-account",
        "Main",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Smart Account 'Globex Inc' not found"),
        "{err}"
    );
    assert!(err.contains("outpost admin register 'Globex'"), "{err}");

    let (code, out, _) = run(&["admin", "list-accounts"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Acme Campus  [active]") && out.contains("Globex  [approved]"),
        "{out}"
    );

    let (code, out, _) = run(&["admin", "settings", "--validate-device", "on"]);
    assert_eq!(
        (code, out.trim()),
        (0, "validate_device = on\nnat_support = off")
    );

    let (code, out, err) = run(&["admin", "sync", "Acme Campus"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sync of 'Acme Campus' queued as job"), "{out}");
    let (code, _, err) = run(&["admin", "sync", "Globex"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "local account 'Globex' is approved: licensing functions need an active account registered with CSSM"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_brings_an_empty_database_up_to_date() {
    let db = TestDatabase::create_empty().await.unwrap();
    let output = Command::new(outpost_binary())
        .arg("migrate")
        .env("OUTPOST_DATABASE__URL", db.url())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("the database schema is up to date"));
    assert!(
        outpost_db::migrations::pending(db.url())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_symlink_never_redirects_the_socket_directory() {
    // A data directory too deep for a socket path makes the cluster use /tmp/outpost-pg-<hash>,
    // a name anyone could create first.
    let base = tempfile::tempdir_in("/tmp").unwrap();
    let deep = base.path().join("d".repeat(60)).join("e".repeat(40));
    let cluster =
        EmbeddedPostgres::new(PgBinaries::locate("").unwrap(), &deep, "postgres", false).unwrap();
    let socket = cluster.socket_dir().to_path_buf();
    assert!(
        socket.starts_with(std::env::temp_dir()),
        "{}",
        socket.display()
    );
    let victim = base.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let before = std::fs::metadata(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, &socket).unwrap();

    let err = cluster.start().await.unwrap_err();
    std::fs::remove_file(&socket).unwrap();
    assert!(
        err.to_string().contains("is not a private directory"),
        "{err}"
    );
    let after = std::fs::metadata(&victim).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (before.uid(), before.mode()),
        (after.uid(), after.mode()),
        "the symlink's target was not touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signal_during_start_up_still_stops_cleanly() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let data = dir.path().join("data");
    let mut child = tokio::process::Command::new(outpost_binary())
        .arg("serve")
        .env("OUTPOST_DATA_DIR", &data)
        .env("OUTPOST_DEVICE__HTTPS_LISTEN", "127.0.0.1:0")
        .env("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0")
        .env_remove("OUTPOST_DATABASE__URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // While initdb still runs (it takes a second or more).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the signal is kept until start-up is done, then honoured: {status}"
    );
    let cluster = EmbeddedPostgres::new(
        PgBinaries::locate("").unwrap(),
        &data.join("postgres"),
        "postgres",
        true,
    )
    .unwrap();
    assert!(
        !cluster.is_running().await.unwrap(),
        "no PostgreSQL is left running"
    );
}
