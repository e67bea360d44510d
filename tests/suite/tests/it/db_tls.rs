//! Outpost against a PostgreSQL that takes TLS only: a throwaway cluster with `ssl=on`, a
//! certificate for `localhost` from a CA made here, and `hostssl` (SCRAM) as the only way in over
//! TCP. `verify-full` connects (pool, migrations, advisory-lock connections, admin commands); a
//! wrong CA or host name is refused with a message that says so; devices push and a CSSM sync
//! completes over it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_core::device::Status;
use outpost_cssm_sim::{CssmSim, SimConfig};
use outpost_db::DbPool;
use outpost_db::embedded::{EmbeddedPostgres, PgBinaries, maintenance_client};
use outpost_pi_sim::{Device, PiClient};
use outpost_tests::{OutpostProcess, run_outpost};

const PASSWORD: &str = "tls-test-password";

/// The TLS-only cluster of one test; stopped and deleted at the end of the test (or by its
/// watchdog when the test process dies).
struct TlsPostgres {
    cluster: EmbeddedPostgres,
    root: PathBuf,
    port: u16,
    /// The CA that issued the server's certificate.
    ca_file: String,
    /// A CA that did not.
    other_ca_file: String,
}

impl TlsPostgres {
    async fn start() -> Self {
        let root =
            std::env::temp_dir().join(format!("outpost-tls-pg-{}", uuid::Uuid::new_v4().simple()));
        let binaries = PgBinaries::locate("").unwrap();
        let port = free_port();
        // Created by `new`; the certificate files must exist before the server starts.
        let cluster = EmbeddedPostgres::new(binaries, &root, "postgres", false).unwrap();
        let tls = root.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let ca = outpost_core::crypto::generate_ca("Outpost test database CA").unwrap();
        let other = outpost_core::crypto::generate_ca("Some other CA").unwrap();
        let server =
            outpost_core::crypto::issue_server_certificate(&ca, &["localhost".into()]).unwrap();
        let path = |name: &str| tls.join(name).to_str().unwrap().to_owned();
        std::fs::write(path("server.crt"), &server.cert_pem).unwrap();
        std::fs::write(path("server.key"), &server.key_pem).unwrap();
        std::fs::write(path("ca.crt"), &ca.cert_pem).unwrap();
        std::fs::write(path("other-ca.crt"), &other.cert_pem).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            // PostgreSQL refuses a key others can read, and one it does not own.
            std::fs::set_permissions(path("server.key"), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            if let Some((uid, gid)) = cluster.run_as() {
                for file in [tls.clone(), tls.join("server.key"), tls.join("server.crt")] {
                    std::os::unix::fs::chown(file, Some(uid.as_raw()), Some(gid.as_raw())).unwrap();
                }
            }
        }
        let cluster = cluster.with_server_options(&format!(
            "-c listen_addresses=localhost -c port={port} -c ssl=on \
             -c ssl_cert_file='{}' -c ssl_key_file='{}'",
            path("server.crt"),
            path("server.key")
        ));
        cluster.start().await.unwrap();
        #[expect(
            clippy::zombie_processes,
            reason = "detached: it outlives this process to stop and delete the cluster when the test binary exits"
        )]
        let _watchdog = cluster
            .watchdog_command(std::process::id(), &root)
            .spawn()
            .unwrap();
        // TCP only with TLS and a password; the Unix socket (this test's own set-up) trusts.
        // Both loopbacks: `localhost` may resolve to ::1 first.
        let hba = cluster.cluster_dir().join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n",
        )
        .unwrap();
        let pg = Self {
            cluster,
            root,
            port,
            ca_file: path("ca.crt"),
            other_ca_file: path("other-ca.crt"),
        };
        let admin = maintenance_client(&pg.socket_url("postgres"))
            .await
            .unwrap();
        // One statement per call: CREATE DATABASE refuses to run in an implicit transaction.
        for sql in [
            format!("ALTER ROLE outpost PASSWORD '{PASSWORD}'"),
            "SELECT pg_reload_conf()".to_owned(),
            "CREATE DATABASE outpost".to_owned(),
        ] {
            admin.batch_execute(&sql).await.unwrap();
        }
        pg
    }

    /// The trusted Unix-socket connection string of a database (test set-up and assertions).
    fn socket_url(&self, dbname: &str) -> String {
        format!(
            "host='{}' port={} user=outpost dbname={dbname}",
            self.cluster.socket_dir().display(),
            self.port
        )
    }

    /// A TCP URL of the `outpost` database: `host` and the query string as given.
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://outpost:{PASSWORD}@{host}:{}/outpost?{query}",
            self.port
        )
    }

    /// `sslmode=verify-full` with the right CA, to `localhost`.
    fn verify_full_url(&self) -> String {
        self.url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={}", self.ca_file),
        )
    }

    async fn count(&self, sql: &str) -> i64 {
        maintenance_client(&self.socket_url("outpost"))
            .await
            .unwrap()
            .query_one(&format!("SELECT ({sql})::bigint"), &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0)
    }

    async fn stop(self) {
        self.cluster.stop().await.unwrap();
        let _removed = std::fs::remove_dir_all(&self.root);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `outpost check-config` against `url`, with nothing else that could fail.
fn check_config(url: &str, data_dir: &Path) -> (i32, String, String) {
    run_outpost(
        &["check-config"],
        &[
            ("OUTPOST_DATABASE__URL", url),
            ("OUTPOST_DATA_DIR", data_dir.to_str().unwrap()),
            ("OUTPOST_DEVICE__HTTPS_LISTEN", "127.0.0.1:0"),
            ("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_and_a_wrong_ca_or_host_name_is_refused() {
    let pg = TlsPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();

    // verify-full: the server is reached over TLS; the migrations run over it too.
    let url = pg.verify_full_url();
    let (code, out, err) = run_outpost(&["migrate"], &[("OUTPOST_DATABASE__URL", &url)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the database schema is up to date"), "{out}");
    let (code, out, _) = check_config(&url, dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok    database: reached localhost:")
            && out.contains("sslmode=verify-full")
            && out.contains("encrypted (TLSv1.3)"),
        "{out}"
    );
    assert!(out.contains("ok    database schema: up to date"), "{out}");
    assert!(out.contains("pg_trgm installed"), "{out}");

    // A CA that did not issue the server's certificate.
    let wrong_ca = pg.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", pg.other_ca_file),
    );
    let (code, out, _) = check_config(&wrong_ca, dir.path());
    assert_eq!(code, 1, "{out}");
    let refusal = format!(
        "the certificate of localhost is not issued by a CA in sslrootcert {} \
         (sslmode=verify-full)",
        pg.other_ca_file
    );
    assert!(
        out.contains("FAIL  database:") && out.contains(&refusal),
        "{out}"
    );
    let (code, _, err) = run_outpost(&["migrate"], &[("OUTPOST_DATABASE__URL", &wrong_ca)]);
    assert_eq!(code, 1);
    assert!(err.contains(&refusal), "{err}");

    // A host name the certificate does not hold (it names localhost only).
    let wrong_host = pg.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", pg.ca_file),
    );
    let (code, out, _) = check_config(&wrong_host, dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "the certificate of 127.0.0.1 does not name the host '127.0.0.1' (it names localhost; \
             sslmode=verify-full checks the host name)"
        ),
        "{out}"
    );
    let err = outpost_db::pool::establish(&wrong_host, Duration::from_secs(5))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not name the host '127.0.0.1'"), "{err}");

    // verify-ca checks the chain only; require encrypts without checking; disable is refused
    // by the server, which takes TLS only.
    let verify_ca = pg.url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", pg.ca_file),
    );
    assert_eq!(check_config(&verify_ca, dir.path()).0, 0);
    let verify_ca_wrong = pg.url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", pg.other_ca_file),
    );
    assert_eq!(check_config(&verify_ca_wrong, dir.path()).0, 1);
    let (code, out, _) = check_config(&pg.url("127.0.0.1", "sslmode=require"), dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("encrypted (TLSv1.3)"), "{out}");
    let (code, out, _) = check_config(&pg.url("127.0.0.1", "sslmode=disable"), dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no encryption"), "the server's refusal: {out}");

    // A multi-host URL (HA) with the first node down: the pool follows it to the second, over
    // TLS, with SCRAM channel binding required (the binding data must be right).
    let ha = format!(
        "postgres://outpost:{PASSWORD}@localhost:{},localhost:{}/outpost?sslmode=verify-full&\
         sslrootcert={}&target_session_attrs=read-write&channel_binding=require",
        free_port(),
        pg.port,
        pg.ca_file
    );
    let pool = DbPool::new(&ha, 2, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    let mut conn = pool.get().await.unwrap();
    outpost_db::ping(&mut conn).await.unwrap();
    drop(conn);
    let info = outpost_db::preflight::check(&ha, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(info.tls.as_deref(), Some("TLSv1.3"));
    assert!(info.version_num >= 150_000);
    drop(pool);
    pg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_push_and_a_sync_completes_over_a_verify_full_database() {
    let pg = TlsPostgres::start().await;
    let cssm = CssmSim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("cssm-ca.crt"), cssm.ca_certificate_pem().unwrap()).unwrap();
    std::fs::write(path("cssm-signing.crt"), cssm.signing_certificate_pem()).unwrap();
    let env: Vec<(String, String)> = [
        ("OUTPOST_DATA_DIR", path("data")),
        ("OUTPOST_DATABASE__URL", pg.verify_full_url()),
        ("OUTPOST_DEVICE__HTTPS_LISTEN", "127.0.0.1:0".into()),
        ("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0".into()),
        ("OUTPOST_CSSM__API_URL", cssm.url().to_owned()),
        ("OUTPOST_CSSM__TOKEN_URL", cssm.url().to_owned()),
        ("OUTPOST_CSSM__CA_FILE", path("cssm-ca.crt")),
        (
            "OUTPOST_CSSM__SIGNING_CERTIFICATE_FILE",
            path("cssm-signing.crt"),
        ),
        ("OUTPOST_CSSM__POLL_INTERVAL_SECS", "1".into()),
        ("OUTPOST_WORKER__POLL_INTERVAL_MS", "100".into()),
        // The schedule leader holds its advisory lock on a connection of its own: over TLS too.
        ("OUTPOST_WORKER__SCHEDULES", "true".into()),
        (
            "OUTPOST_AUTH__INITIAL_ADMIN_PASSWORD",
            "tls-test-admin-password".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // An admin command on an empty database does not migrate it: it says what to run.
    let (code, _, err) = run_outpost(&["admin", "list-accounts"], &env_refs);
    assert_eq!(code, 1);
    assert!(
        err.contains("the database schema is older than this Outpost")
            && err.contains("run `outpost migrate` first"),
        "{err}"
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .await,
        0,
        "nothing was created"
    );

    // `serve` migrates (its default) over TLS and runs.
    let outpost = OutpostProcess::serve(&env, dir.path().join("serve.log")).await;
    let (code, out, err) = run_outpost(
        &[
            "admin",
            "create-account",
            "--name",
            "Acme Campus",
            "--smart-account",
            "Acme Corp",
            "--virtual-account",
            "Campus",
        ],
        &env_refs,
    );
    assert_eq!(code, 0, "{out}{err}");

    let ca = std::fs::read_to_string(dir.path().join("data/tls/ca.crt")).unwrap();
    let client = PiClient::new(
        &format!("{}/cslu/v1/pi/Acme%20Campus-1", outpost.device_base),
        Some(&ca),
    )
    .unwrap();
    let mut device = Device::new("C9300-24UX", "FCWTLSDB001");
    let batch = vec![device.next_report(), device.next_report()];
    assert_eq!(
        device.push(&client, batch).await.unwrap().status,
        Status::OkPoll
    );
    assert_eq!(pg.count("SELECT count(*) FROM rum_reports").await, 2);

    // The running server's worker syncs (the per-account lock on its own TLS connection).
    let (code, out, err) = run_outpost(&["admin", "sync", "Acme Campus", "--wait"], &env_refs);
    assert_eq!(code, 0, "{out}{err}\n{}", outpost.log());
    assert_eq!(
        pg.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        2
    );
    assert_eq!(device.poll(&client).await.unwrap(), 1);
    assert_eq!(device.acknowledged_report_ids().len(), 2);

    // Every TCP session of Outpost's is encrypted, the advisory-lock ones included.
    let sessions = "FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                    WHERE a.datname = 'outpost' AND a.client_addr IS NOT NULL";
    assert!(pg.count(&format!("SELECT count(*) {sessions}")).await > 0);
    assert_eq!(
        pg.count(&format!("SELECT count(*) {sessions} AND NOT s.ssl"))
            .await,
        0
    );
    assert_eq!(
        pg.count(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_ssl s USING (pid) \
             JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.granted AND s.ssl AND a.client_addr IS NOT NULL"
        )
        .await,
        1,
        "the schedule leader's lock, held over TLS"
    );

    let log = outpost.log();
    assert!(outpost.terminate().await.success(), "{log}");
    pg.stop().await;
}
