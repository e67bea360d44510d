//! What an operator installing Outpost relies on: `outpost --version` names the commit,
//! `outpost check-config` finds what would stop a start, and only `migrate`, `serve` and the
//! tiers with `--migrate` change the schema.

use outpost_db::testing::TestDatabase;
use outpost_tests::{OutpostProcess, eventually, run_outpost};

#[test]
fn version_names_the_git_commit() {
    let (code, out, _) = run_outpost(&["--version"], &[]);
    assert_eq!(code, 0);
    let line = out.trim();
    let commit = line
        .strip_prefix(&format!("outpost {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "built in a git checkout, so the commit is known: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reports_each_check_and_fails_on_a_broken_one() {
    let db = TestDatabase::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let good = [
        ("OUTPOST_DATABASE__URL", db.url()),
        ("OUTPOST_DATA_DIR", data),
        ("OUTPOST_DEVICE__HTTPS_LISTEN", "127.0.0.1:0"),
        ("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0"),
    ];
    let (code, out, err) = run_outpost(&["check-config"], &good);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "ok    settings: settings are valid",
        &format!("ok    data_dir: {data} is writable"),
        "ok    database: reached ",
        "ok    database extensions: pg_trgm installed",
        "ok    database schema: up to date",
        "ok    tls: a private CA and a certificate for localhost, 127.0.0.1 are created in",
        "warn  cssm.signing_certificate_file: not set",
        "ok    device.https_listen: 127.0.0.1:0: a free port is picked at start",
        "every check passed",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }

    // Broken: a certificate with another certificate's key, an address this machine does not
    // have, a database nobody listens for. Every problem is named; the exit code says so.
    let ca = outpost_core::crypto::generate_ca("Check CA").unwrap();
    let leaf =
        outpost_core::crypto::issue_server_certificate(&ca, &["outpost.example".into()]).unwrap();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("ca.key"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &ca.key_pem).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgres://outpost@127.0.0.1:{closed}/outpost?sslmode=disable");
    let (code, out, _) = run_outpost(
        &["check-config"],
        &[
            ("OUTPOST_DATABASE__URL", &unreachable),
            ("OUTPOST_DATA_DIR", data),
            ("OUTPOST_DEVICE__HTTPS_LISTEN", "192.0.2.10:8444"),
            ("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0"),
            ("OUTPOST_TLS__CERT_FILE", cert.to_str().unwrap()),
            ("OUTPOST_TLS__KEY_FILE", key.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 1, "{out}");
    for line in [
        &format!(
            "FAIL  database: 127.0.0.1:{closed} (database outpost, user outpost, sslmode=disable): cannot connect to the database"
        ),
        "FAIL  tls: ",
        "FAIL  device.https_listen: 192.0.2.10:8444 cannot be bound",
        "3 check(s) failed",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }

    // The embedded PostgreSQL is looked at, never started.
    let (code, out, _) = run_outpost(
        &["check-config"],
        &[
            ("OUTPOST_DATA_DIR", data),
            ("OUTPOST_DEVICE__HTTPS_LISTEN", "127.0.0.1:0"),
            ("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok    embedded PostgreSQL: no cluster yet: `outpost serve` creates it in"),
        "{out}"
    );
    assert!(!dir.path().join("postgres").exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_migrate_serve_and_the_tiers_with_migrate_change_the_schema() {
    let db = TestDatabase::create_empty().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OUTPOST_DATABASE__URL", db.url()),
        ("OUTPOST_DATA_DIR", dir.path().to_str().unwrap()),
        ("OUTPOST_DEVICE__HTTPS_LISTEN", "127.0.0.1:0"),
        ("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0"),
        ("OUTPOST_WORKER__SCHEDULES", "false"),
    ];
    let pending = || async { outpost_db::migrations::pending(db.url()).await.unwrap() };
    let all = pending().await.len();
    assert!(all > 0);

    for args in [
        &["admin", "list-accounts"][..],
        &["api"],
        &["worker"],
        &["serve", "--migrate=false"],
    ] {
        let (code, _, err) = run_outpost(args, &env);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "the database schema is older than this Outpost ({all} migration(s) pending"
            )) && err.contains("run `outpost migrate` first"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(pending().await.len(), all, "nothing was migrated");
    let tables = outpost_db::embedded::maintenance_client(db.url())
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(tables, 0, "not even diesel's bookkeeping table");

    // `worker --migrate` brings the schema up to date and runs.
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let worker =
        OutpostProcess::start("worker --migrate", &env, dir.path().join("worker.log")).await;
    eventually(10, "the schema to be current", || async {
        pending().await.is_empty()
    })
    .await;
    assert!(worker.terminate().await.success());
}
