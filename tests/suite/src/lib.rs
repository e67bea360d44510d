//! The integration test harness: [`TestApp`] runs the real application (both listeners on
//! loopback port 0, real TLS) against a database of its own and an in-process CSSM simulator.
//! The worker is driven step by step ([`TestApp::run_jobs`]), and dropping a `TestApp` fails
//! the test if it left failed jobs behind (unless the test said it expects them).

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a failed set-up must abort the test"
)]

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use outpost_api::Application;
use outpost_core::clock::{ManualClock, SharedClock, SystemClock};
use outpost_core::schedule::Schedule;
use outpost_core::settings::{Secret, Settings};
use outpost_core::tenant::transport_url;
use outpost_cssm_sim::{CssmSim, SimConfig};
use outpost_db::accounts::{self, AccountRequest, LocalAccount};
use outpost_db::embedded::maintenance_client;
use outpost_db::enums::{AccountStatus, JobState};
use outpost_db::jobs::{self, JobPayload, catalog::CssmSync};
use outpost_db::testing::TestDatabase;
use outpost_db::{DbPool, JobId, PooledConnection};
use outpost_pi_sim::PiClient;
use outpost_worker::WorkerContext;
use outpost_worker::runner::Runner;
use tempfile::TempDir;

/// The `code` of an admin API error envelope (`{"error": {"code": ...}}`); fails the test when
/// the body is not one.
pub fn error_code(body: &serde_json::Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error envelope: {body}"))
}

/// Password of the first admin in every test app.
pub const ADMIN_PASSWORD: &str = "test-admin-password";
/// Smart Account every test account rolls up to (known to the CSSM simulator).
pub const SMART_ACCOUNT: &str = "Acme Corp";
/// Virtual Account every test account rolls up to.
pub const VIRTUAL_ACCOUNT: &str = "Campus";

/// A change a test makes to the settings before the app starts.
type SettingsTweak = Box<dyn FnOnce(&mut Settings) + Send>;

/// Builds a [`TestApp`].
#[must_use]
pub struct TestAppBuilder {
    accounts: Vec<String>,
    tweaks: Vec<SettingsTweak>,
    clock: Option<ManualClock>,
    cssm: Option<SimConfig>,
}

/// A running Outpost for one test.
pub struct TestApp {
    /// Its database.
    pub db: TestDatabase,
    /// Its pool.
    pub pool: DbPool,
    /// Its settings.
    pub settings: Arc<Settings>,
    /// The clock the app uses.
    pub clock: SharedClock,
    /// The CSSM simulator it talks to.
    pub cssm: CssmSim,
    /// The worker context (to build more runners or call worker code).
    pub worker: Arc<WorkerContext>,
    /// The job runner the test drives.
    pub runner: Runner,
    /// `https://127.0.0.1:<port>` of the device listener.
    pub device_base: String,
    /// `http://127.0.0.1:<port>` of the plain-HTTP device listener.
    pub device_http_base: String,
    /// `https://127.0.0.1:<port>` of the admin listener.
    pub admin_base: String,
    /// The CA that issued the listeners' certificate.
    pub ca_pem: String,
    /// Working directory (TLS files, CSSM certificates).
    pub dir: TempDir,
    handles: Vec<ServerHandle>,
    allowed_failed_jobs: usize,
}

impl TestApp {
    /// A builder.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            accounts: Vec::new(),
            tweaks: Vec::new(),
            clock: None,
            cssm: None,
        }
    }

    /// A running app with no accounts.
    pub async fn new() -> Self {
        Self::builder().start().await
    }

    /// A pooled connection.
    pub async fn conn(&self) -> PooledConnection {
        self.pool.get().await.expect("database connection")
    }

    /// Runs one SQL query returning one number, read as `bigint` (assertions on stored rows).
    pub async fn count(&self, sql: &str) -> i64 {
        let client = maintenance_client(self.db.url()).await.expect("connect");
        let sql = format!("SELECT ({sql})::bigint");
        client
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0)
    }

    /// Runs the `outpost` command line against this app's database, data directory and CSSM
    /// settings: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_with(args, &[])
    }

    /// [`cli`](Self::cli) with more environment variables (which win over the app's).
    pub fn cli_with(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
        let data_dir = self.dir.path().to_string_lossy();
        let cssm = &self.settings.cssm;
        let mut env = vec![
            ("OUTPOST_DATABASE__URL", self.db.url()),
            ("OUTPOST_DATA_DIR", &data_dir),
            (
                "OUTPOST_CSSM__SIGNING_CERTIFICATE_FILE",
                &cssm.signing_certificate_file,
            ),
            ("OUTPOST_CSSM__CA_FILE", &cssm.ca_file),
            ("OUTPOST_CSSM__API_URL", &cssm.api_url),
            ("OUTPOST_CSSM__TOKEN_URL", &cssm.token_url),
        ];
        env.retain(|(name, _)| !extra.iter().any(|(other, _)| other == name));
        env.extend_from_slice(extra);
        run_outpost(args, &env)
    }

    /// Runs a query and returns its first column as text, one string per row.
    pub async fn count_rows(&self, sql: &str) -> Vec<String> {
        let client = maintenance_client(self.db.url()).await.expect("connect");
        let rows = client
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        rows.iter().map(|row| row.get::<_, String>(0)).collect()
    }

    /// Runs SQL statements (test set-up that has no API yet); returns rows changed.
    pub async fn execute(&self, sql: &str) -> u64 {
        let client = maintenance_client(self.db.url()).await.expect("connect");
        client
            .execute(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// A fingerprint of every table's content but `except`'s: equal before and after means a
    /// call changed nothing.
    pub async fn fingerprint(&self, except: &[&str]) -> Vec<String> {
        let tables = self
            .count_rows("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE '%diesel%' ORDER BY 1")
            .await;
        let mut prints = Vec::new();
        for table in tables.iter().filter(|t| !except.contains(&t.as_str())) {
            let rows = self
                .count_rows(&format!(
                    "SELECT '{table}:' || count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"
                ))
                .await;
            prints.extend(rows);
        }
        prints
    }

    /// Runs every runnable job, one at a time, until none is left.
    pub async fn run_jobs(&self) -> Vec<(JobId, JobState)> {
        self.runner.run_until_idle().await.expect("run jobs")
    }

    /// An account by name.
    pub async fn account(&self, name: &str) -> LocalAccount {
        accounts::find_account_by_name(&mut *self.conn().await, name)
            .await
            .expect("account")
    }

    /// Creates an account (LVA 1, daily sync schedule) and registers it with the simulator.
    pub async fn create_account(&self, name: &str) -> LocalAccount {
        let request = AccountRequest {
            name: name.into(),
            smart_account: SMART_ACCOUNT.into(),
            virtual_account: VIRTUAL_ACCOUNT.into(),
            email: "noc@acme.example".into(),
            time_zone: "UTC".into(),
            status: AccountStatus::Approved,
            requested_by: None,
        };
        let schedule = Schedule::new(1, 2, 0, "UTC").unwrap();
        let (account, _) = accounts::create_with_default_lva(
            &mut *self.conn().await,
            &request,
            &schedule,
            self.clock.now(),
        )
        .await
        .expect("create account");
        outpost_worker::registration::register_online(&self.worker, account.id, "test")
            .await
            .expect("register")
    }

    /// Enqueues a CSSM sync of an account and runs the worker until idle; returns the job's
    /// final (or retry) state.
    pub async fn sync(&self, account: &str) -> JobState {
        let id = self.enqueue_sync(account).await;
        self.run_jobs().await;
        jobs::find(&mut *self.conn().await, id)
            .await
            .expect("job")
            .state
    }

    /// Enqueues a CSSM sync without running it.
    pub async fn enqueue_sync(&self, account: &str) -> JobId {
        let account = self.account(account).await;
        let now = self.clock.now();
        let job = CssmSync {
            account_id: account.id,
        }
        .job(now, self.settings.worker.max_attempts);
        jobs::enqueue(&mut *self.conn().await, &job, now)
            .await
            .expect("enqueue")
            .0
    }

    /// The HTTPS transport URL of a tenant.
    pub fn tenant_url(&self, tenant_id: &str) -> String {
        transport_url(&self.device_base, tenant_id)
    }

    /// A device client for a tenant, trusting the app's CA.
    pub fn pi_client(&self, tenant_id: &str) -> PiClient {
        PiClient::new(&self.tenant_url(tenant_id), Some(&self.ca_pem)).expect("client")
    }

    /// Pushes a device's next report to a tenant and returns Outpost's answer.
    pub async fn push_next_report(
        &self,
        device: &mut outpost_pi_sim::Device,
        tenant_id: &str,
    ) -> outpost_core::device::DeviceResponse {
        let report = device.next_report();
        device
            .push(&self.pi_client(tenant_id), vec![report])
            .await
            .expect("push a report")
    }

    /// An HTTP client trusting the app's CA (admin API).
    pub fn http(&self) -> reqwest::Client {
        let tls =
            outpost_core::tls::client_config(std::slice::from_ref(&self.ca_pem), false).unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap()
    }

    /// Logs in as the first admin; returns a bearer token.
    pub async fn admin_token(&self) -> String {
        let response = self
            .http()
            .post(format!("{}/api/v1/auth/login", self.admin_base))
            .json(&serde_json::json!({ "username": "admin", "password": ADMIN_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Logs in; returns a bearer token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                "",
                Some(serde_json::json!({ "username": username, "password": password })),
            )
            .await;
        assert_eq!(status, 200, "login of {username}: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Calls the admin API (an empty token sends none); returns the status and the JSON body
    /// (`Null` when the body is not JSON).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http()
            .request(method, format!("{}{path}", self.admin_base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Posts a CSV file to an admin API path; returns the status and the JSON answer.
    pub async fn post_csv(&self, path: &str, token: &str, csv: String) -> (u16, serde_json::Value) {
        let response = self
            .http()
            .post(format!("{}{path}", self.admin_base))
            .bearer_auth(token)
            .header("Content-Type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Creates a user through the API (as the first admin) and logs it in; returns its id and
    /// token. `system_role` is e.g. `Some("system_operator")`.
    pub async fn user(
        &self,
        username: &str,
        system_role: Option<&str>,
        account_roles: serde_json::Value,
    ) -> (String, String) {
        let admin = self.admin_token().await;
        let password = format!("{username}-password-123");
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/api/v1/users",
                &admin,
                Some(serde_json::json!({
                    "username": username,
                    "password": password,
                    "system_role": system_role,
                    "account_roles": account_roles,
                })),
            )
            .await;
        assert_eq!(status, 201, "create user {username}: {body}");
        let id = body["id"].as_str().unwrap().to_owned();
        (id, self.login(username, &password).await)
    }

    /// Says this test leaves `n` failed jobs on purpose.
    pub fn expect_failed_jobs(&mut self, n: usize) {
        self.allowed_failed_jobs = n;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handles = std::mem::take(&mut self.handles);
        let url = self.db.url().to_owned();
        let allowed = self.allowed_failed_jobs;
        let panicking = std::thread::panicking();
        // The listeners and the database run on the test's runtime; block on them from a
        // runtime worker that steps aside (tests use the multi-thread flavour).
        let failed: Result<Vec<String>, String> = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                for handle in handles {
                    handle.stop(false).await;
                }
                let client = maintenance_client(&url).await?;
                let rows = client
                    .query("SELECT kind || ': ' || COALESCE(last_error, '') FROM jobs WHERE state = 'failed'", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
            })
        });
        if panicking {
            return;
        }
        // A check that cannot run must not pass.
        let failed = failed.unwrap_or_else(|e| panic!("could not check for failed jobs: {e}"));
        if failed.len() != allowed {
            panic!(
                "the test left {} failed jobs (expected {allowed}): {failed:?}",
                failed.len()
            );
        }
    }
}

impl TestAppBuilder {
    /// Creates and registers an account named `name` before the test starts.
    pub fn with_account(mut self, name: &str) -> Self {
        self.accounts.push(name.into());
        self
    }

    /// Changes settings before the app starts.
    pub fn with_settings(mut self, tweak: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Trusts a [`WebhookReceiver`]'s CA and lets webhooks reach it on loopback.
    pub fn with_webhook_receiver(self, receiver: &WebhookReceiver) -> Self {
        let ca_file = receiver.ca_file();
        self.with_settings(move |s| {
            s.webhooks.ca_file = ca_file;
            s.webhooks.allow_private_addresses = true;
        })
    }

    /// Uses a clock the test moves.
    pub fn with_clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Starts the CSSM simulator with this configuration.
    pub fn with_cssm(mut self, config: SimConfig) -> Self {
        self.cssm = Some(config);
        self
    }

    /// Starts everything.
    pub async fn start(self) -> TestApp {
        init_tracing();
        let db = TestDatabase::create().await.expect("test database");
        let cssm = CssmSim::start(self.cssm.unwrap_or_default())
            .await
            .expect("CSSM simulator");
        let dir = tempfile::tempdir().expect("temp dir");
        let cssm_ca = dir.path().join("cssm-ca.crt");
        let cssm_signing = dir.path().join("cssm-signing.crt");
        std::fs::write(&cssm_ca, cssm.ca_certificate_pem().unwrap_or_default()).unwrap();
        std::fs::write(&cssm_signing, cssm.signing_certificate_pem()).unwrap();

        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.database.url = Secret::new(db.url());
        settings.database.pool_size = 8;
        settings.device.https_listen = "127.0.0.1:0".parse().unwrap();
        settings.device.http_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.admin.https_listen = "127.0.0.1:0".parse().unwrap();
        settings.cssm.api_url = cssm.url().to_owned();
        settings.cssm.token_url = cssm.url().to_owned();
        settings.cssm.ca_file = path_text(&cssm_ca);
        settings.cssm.signing_certificate_file = path_text(&cssm_signing);
        settings.cssm.poll_interval_secs = 0;
        settings.cssm.poll_attempts = 3;
        settings.cssm.request_timeout_secs = 5;
        settings.worker.lease_secs = 30;
        settings.worker.backoff_base_secs = 1;
        settings.auth.initial_admin_password = Secret::new(ADMIN_PASSWORD);
        for tweak in self.tweaks {
            tweak(&mut settings);
        }
        settings.validate().expect("test settings");
        let settings = Arc::new(settings);

        let clock: SharedClock = match self.clock {
            Some(clock) => Arc::new(clock),
            None => Arc::new(SystemClock),
        };
        let pool = DbPool::new(
            db.url(),
            usize::try_from(settings.database.pool_size).unwrap(),
            std::time::Duration::from_secs(5),
            std::time::Duration::from_millis(settings.database.acquire_timeout_ms),
        )
        .expect("pool");
        outpost_app::users::ensure_first_admin(
            &mut pool.get().await.expect("connection"),
            ADMIN_PASSWORD,
            clock.now(),
        )
        .await
        .expect("first admin");
        let tls = outpost_api::tls::load_or_create(&settings).expect("TLS");
        let ca_pem = std::fs::read_to_string(tls.ca_file.clone().expect("generated CA")).unwrap();
        let app = Application::build(settings.clone(), pool.clone(), clock.clone(), &tls)
            .await
            .expect("application");
        let device_base = format!("https://127.0.0.1:{}", app.device_https_addr().port());
        let device_http_base = format!(
            "http://127.0.0.1:{}",
            app.device_http_addr().expect("http listener").port()
        );
        let admin_base = format!("https://127.0.0.1:{}", app.admin_addr().port());
        let handles = app.handles();
        tokio::spawn(app.run_until_stopped());

        // The worker hands devices one-time URLs on the device listener, whose port is only
        // known now: its settings name it as the public URL.
        let mut worker_settings = (*settings).clone();
        if worker_settings.public_url.is_empty() {
            worker_settings.public_url = device_base.clone();
        }
        let worker = Arc::new(
            WorkerContext::new(
                pool.clone(),
                db.url().to_owned(),
                Arc::new(worker_settings),
                clock.clone(),
            )
            .expect("worker context"),
        );
        let runner = Runner::new(worker.clone());
        let app = TestApp {
            db,
            pool,
            settings,
            clock,
            cssm,
            worker,
            runner,
            device_base,
            device_http_base,
            admin_base,
            ca_pem,
            dir,
            handles,
            allowed_failed_jobs: 0,
        };
        for name in &self.accounts {
            app.create_account(name).await;
        }
        app
    }
}

fn path_text(path: &std::path::Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// Logs to the test output when `RUST_LOG` is set.
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
}

/// The real C9800 RUM file (`shared/samples/real`, copied into `tests/fixtures`).
pub fn c9800_sample() -> String {
    std::fs::read_to_string(fixture("c9800-cl-rum-report-1671840750.xml")).expect("sample")
}

/// Path of a fixture file.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

/// Runs the `outpost` binary to completion with `env` on top of this process's environment
/// (without its `OUTPOST_DATABASE__URL`): (exit code, stdout, stderr).
pub fn run_outpost(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = std::process::Command::new(outpost_binary())
        .args(args)
        .env_remove("OUTPOST_DATABASE__URL")
        .envs(env.iter().copied())
        .output()
        .expect("run outpost");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The `outpost` binary built by cargo beside this test binary (`scripts/test` builds it).
pub fn outpost_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OUTPOST_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/it-<hash> (a test) or target/<profile>/<bench> (a binary) ->
    // target/<profile>/outpost
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let path = dir.join("outpost");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --bin outpost` (scripts/test does)",
        path.display()
    );
    path
}

/// An `outpost` process started by a test (crash and restart tests, the CLI).
pub struct OutpostProcess {
    child: tokio::process::Child,
    /// `https://127.0.0.1:<port>` of its device listener (empty for `outpost worker`).
    pub device_base: String,
    /// `https://127.0.0.1:<port>` of its admin listener (empty for `outpost worker`).
    pub admin_base: String,
    /// What it printed on start-up.
    pub banner: String,
    log: PathBuf,
}

impl OutpostProcess {
    /// Runs `outpost serve` with `env` (settings as `OUTPOST_*` variables) and waits until it
    /// reports its listeners. Its log goes to `log`.
    pub async fn serve(env: &[(String, String)], log: PathBuf) -> Self {
        Self::start("serve", env, log).await
    }

    /// Runs `outpost <command>` (`serve`, `api` or `worker`, with any flags: `worker
    /// --migrate`) and waits until it is up.
    pub async fn start(command: &str, env: &[(String, String)], log: PathBuf) -> Self {
        use tokio::io::AsyncBufReadExt;
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = tokio::process::Command::new(outpost_binary())
            .args(command.split_whitespace())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start outpost");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut banner = String::new();
        let started = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                banner.push_str(&line);
                banner.push('\n');
                if line.starts_with("Press Ctrl-C") {
                    return true;
                }
            }
            false
        })
        .await;
        if started != Ok(true) {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("outpost did not start.\nstdout:\n{banner}\nlog:\n{log_text}");
        }
        // Keep reading so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let address = |label: &str| {
            banner
                .lines()
                .find_map(|l| l.trim_start().strip_prefix(label))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|url| url.strip_prefix("https://"))
                .and_then(|rest| rest.split('/').next())
                .map(|host| format!("https://{host}"))
                .unwrap_or_default()
        };
        let device_base = address("Devices:");
        let admin_base = address("Admin:");
        Self {
            child,
            device_base,
            admin_base,
            banner,
            log,
        }
    }

    /// SIGKILL: no clean-up of any kind, as in a power cut.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }

    /// SIGTERM (what systemd sends), then waits; returns the exit status.
    pub async fn terminate(self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM).await
    }

    /// SIGINT (Ctrl-C in a terminal), then waits; returns the exit status.
    pub async fn interrupt(self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGINT).await
    }

    async fn signal(mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            signal,
        )
        .expect("signal");
        tokio::time::timeout(std::time::Duration::from_secs(60), self.child.wait())
            .await
            .expect("outpost stops within a minute")
            .expect("wait")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A line of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`), as MiB.
    fn status_mib(&self, field: &str) -> f64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{field} in {status}"));
        kib / 1024.0
    }

    /// Its resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS")
    }

    /// The most resident memory it had since it started or since [`reset_peak`]
    /// (Self::reset_peak), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM")
    }

    /// Starts counting the peak resident memory afresh (`/proc/<pid>/clear_refs`).
    pub fn reset_peak(&self) {
        let pid = self.child.id().expect("running");
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
    }
}

/// Waits until `probe` returns true, checking every 100 ms, for at most `seconds`.
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while tokio::time::Instant::now() < deadline {
        if probe().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out after {seconds} s waiting for {what}");
}

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct ReceivedHook {
    /// Request headers, names lower-case.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body exactly as sent.
    pub body: String,
    /// The status it answered.
    pub answered: u16,
}

/// An HTTPS endpoint for webhook tests: answers 500 to its first `fail_first` requests, then
/// 204, and keeps every request. Trust its CA with `webhooks.ca_file = receiver.ca_file()`.
pub struct WebhookReceiver {
    /// `https://127.0.0.1:<port>/hook`.
    pub url: String,
    received: Arc<std::sync::Mutex<Vec<ReceivedHook>>>,
    handle: ServerHandle,
    dir: TempDir,
}

impl WebhookReceiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start(fail_first: usize) -> Self {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        let ca = outpost_core::crypto::generate_ca("Webhook receiver CA").unwrap();
        let leaf =
            outpost_core::crypto::issue_server_certificate(&ca, &["127.0.0.1".into()]).unwrap();
        let tls = outpost_core::tls::server_config(&leaf.cert_pem, &leaf.key_pem).unwrap();
        let received: Arc<std::sync::Mutex<Vec<ReceivedHook>>> = Arc::default();
        let log = received.clone();
        let server = HttpServer::new(move || {
            let log = log.clone();
            App::new().route(
                "/hook",
                web::post().to(move |req: HttpRequest, body: String| {
                    let log = log.clone();
                    async move {
                        let mut log = log.lock().unwrap();
                        let answered = if log.len() < fail_first { 500 } else { 204 };
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                            })
                            .collect();
                        log.push(ReceivedHook {
                            headers,
                            body,
                            answered,
                        });
                        HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(answered).unwrap(),
                        )
                        .finish()
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind_rustls_0_23("127.0.0.1:0", tls)
        .unwrap();
        let url = format!("https://{}/hook", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        Self {
            url,
            received,
            handle,
            dir,
        }
    }

    /// The CA file that issued its certificate.
    pub fn ca_file(&self) -> String {
        path_text(&self.dir.path().join("ca.crt"))
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<ReceivedHook> {
        self.received.lock().unwrap().clone()
    }

    /// Stops the server.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}
