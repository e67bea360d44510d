//! What an outsider can make a running `outpost serve` spend: the bombs (a gzip bomb, archives
//! nested in archives, a billion-laughs-shaped and a very wide XML document, a 512 MiB upload)
//! each leave its peak resident memory under 256 MiB above its idle size; a thousand
//! concurrent logins with random names keep it under 512 MiB while a device pushing beside them
//! is still answered. Measured on the real process (`/proc/<pid>/status`), not on the test's.

use std::io::Write;
use std::time::{Duration, Instant};

use outpost_core::device::Status;
use outpost_cssm_sim::{CssmSim, SimConfig};
use outpost_db::testing::TestDatabase;
use outpost_pi_sim::{Device, PiClient};
use outpost_tests::{OutpostProcess, run_outpost};
use serde_json::{Value, json};

/// An `outpost serve` with one registered account, "Acme".
struct Served {
    outpost: OutpostProcess,
    http: reqwest::Client,
    token: String,
    account: String,
    ca: String,
    _db: TestDatabase,
    _cssm: CssmSim,
    _dir: tempfile::TempDir,
}

const PASSWORD: &str = "abuse-test-password";

async fn serve() -> Served {
    let db = TestDatabase::create().await.unwrap();
    let cssm = CssmSim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("cssm-ca.crt"), cssm.ca_certificate_pem().unwrap()).unwrap();
    std::fs::write(path("cssm-signing.crt"), cssm.signing_certificate_pem()).unwrap();
    let env: Vec<(String, String)> = [
        ("OUTPOST_DATA_DIR", path("data")),
        ("OUTPOST_DATABASE__URL", db.url().to_owned()),
        ("OUTPOST_DEVICE__HTTPS_LISTEN", "127.0.0.1:0".into()),
        ("OUTPOST_ADMIN__HTTPS_LISTEN", "127.0.0.1:0".into()),
        ("OUTPOST_CSSM__API_URL", cssm.url().to_owned()),
        ("OUTPOST_CSSM__TOKEN_URL", cssm.url().to_owned()),
        ("OUTPOST_CSSM__CA_FILE", path("cssm-ca.crt")),
        (
            "OUTPOST_CSSM__SIGNING_CERTIFICATE_FILE",
            path("cssm-signing.crt"),
        ),
        ("OUTPOST_WORKER__SCHEDULES", "false".into()),
        ("OUTPOST_AUTH__INITIAL_ADMIN_PASSWORD", PASSWORD.into()),
        ("OUTPOST_LOG__FILTER", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let outpost = OutpostProcess::serve(&env, dir.path().join("serve.log")).await;
    let cli_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = [
        "admin",
        "create-account",
        "--name",
        "Acme",
        "--smart-account",
        "Acme Corp",
        "--virtual-account",
        "Campus",
    ];
    let (code, out, err) = run_outpost(&args, &cli_env);
    assert_eq!(code, 0, "{out}{err}");
    let ca = std::fs::read_to_string(dir.path().join("data/tls/ca.crt")).unwrap();
    let tls = outpost_core::tls::client_config(std::slice::from_ref(&ca), false).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let login: Value = http
        .post(format!("{}/api/v1/auth/login", outpost.admin_base))
        .json(&json!({ "username": "admin", "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let accounts: Value = http
        .get(format!("{}/api/v1/accounts", outpost.admin_base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account = accounts["items"][0]["id"].as_str().unwrap().to_owned();
    Served {
        outpost,
        http,
        token,
        account,
        ca,
        _db: db,
        _cssm: cssm,
        _dir: dir,
    }
}

impl Served {
    fn device_client(&self) -> PiClient {
        PiClient::new(
            &format!("{}/cslu/v1/pi/Acme-1", self.outpost.device_base),
            Some(&self.ca),
        )
        .unwrap()
    }

    /// Uploads `body` to an admin path; the status.
    async fn upload(&self, path: &str, content_type: &str, body: reqwest::Body) -> u16 {
        self.http
            .post(format!(
                "{}/api/v1/accounts/{}/{path}",
                self.outpost.admin_base, self.account
            ))
            .bearer_auth(&self.token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// A gzip stream of `size` zero bytes.
fn gzip_zeros(size: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    for _ in 0..size / block.len() {
        encoder.write_all(&block).unwrap();
    }
    encoder.finish().unwrap()
}

/// A tar.gz holding one member.
fn tar_gz(name: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::best(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, content).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_leave_the_server_within_256_mib_of_its_idle_size() {
    let served = serve().await;
    let mut device = Device::new("C9300-24UX", "FCWBOMB0001");
    let client = served.device_client();
    assert_eq!(
        device
            .push(&client, vec![device.clone().next_report()])
            .await
            .unwrap()
            .status,
        Status::OkPoll
    );
    let idle = served.outpost.rss_mib();
    let mut nested = tar_gz("deep.txt", b"x");
    for level in 0..10 {
        nested = tar_gz(&format!("ACK_UD_VA_{level}.tar.gz"), &nested);
    }
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"{}\">{}]><smartLicense>&j;</smartLicense>",
        "lol".repeat(100),
        (b'b'..=b'j')
            .map(|c| format!(
                "<!ENTITY {} \"{}\">",
                c as char,
                format!("&{};", (c - 1) as char).repeat(10)
            ))
            .collect::<String>()
    );
    let wide = format!(
        "<smartLicense>{}</smartLicense>",
        "<RUMReport/>".repeat(1_300_000)
    );
    let bombs: Vec<(&str, &str, &str, reqwest::Body)> = vec![
        (
            "a 1 GiB gzip bomb",
            "ack-import",
            "application/gzip",
            gzip_zeros(1 << 30).into(),
        ),
        (
            "archives nested ten deep",
            "ack-import",
            "application/gzip",
            nested.into(),
        ),
        (
            "billion laughs",
            "usage-files",
            "application/xml",
            laughs.into(),
        ),
        (
            "a 16 MiB wide XML document",
            "usage-files",
            "application/xml",
            wide.into(),
        ),
        (
            "a 512 MiB upload",
            "ack-import",
            "application/gzip",
            reqwest::Body::wrap_stream(futures_util::stream::iter(
                (0..512).map(|_| Ok::<_, std::io::Error>(vec![0x1fu8; 1 << 20])),
            )),
        ),
    ];
    for (what, path, content_type, body) in bombs {
        served.outpost.reset_peak();
        let status = served.upload(path, content_type, body).await;
        let peak = served.outpost.peak_rss_mib();
        println!("{what}: answered {status}, peak RSS {peak:.0} MiB (idle {idle:.0} MiB)");
        assert!((400..500).contains(&status), "{what}: {status}");
        assert!(
            peak - idle < 256.0,
            "{what}: peak RSS {peak:.0} MiB, idle {idle:.0} MiB"
        );
    }
    // Still serving.
    assert_eq!(
        device
            .push(&client, vec![device.clone().next_report()])
            .await
            .unwrap()
            .status,
        Status::OkPoll
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_logins_leave_devices_served_and_memory_bounded() {
    let served = serve().await;
    served.outpost.reset_peak();
    let url = format!("{}/api/v1/auth/login", served.outpost.admin_base);
    let flood = futures_util::future::join_all((0..1000).map(|i| {
        let http = served.http.clone();
        let url = url.clone();
        async move {
            let name = format!("user-{i}-{}", outpost_core::crypto::random_alphanumeric(12));
            http.post(&url)
                .json(&json!({ "username": name, "password": "guess-123456" }))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    }));
    let flood = tokio::spawn(flood);
    // A device keeps pushing through the flood: every push must be answered.
    let client = served.device_client();
    let mut device = Device::new("C9300-24UX", "FCWFLOOD001");
    let mut latencies = Vec::new();
    let started = Instant::now();
    while !flood.is_finished() || latencies.len() < 20 {
        let sent = Instant::now();
        let answer = device
            .push(&client, vec![device.clone().next_report()])
            .await
            .unwrap();
        latencies.push(sent.elapsed());
        assert!(
            matches!(answer.status, Status::OkPoll | Status::OkTryAgain),
            "{answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the flood never ended"
        );
    }
    let statuses = flood.await.unwrap();
    let refused = statuses.iter().filter(|s| matches!(s, Ok(401))).count();
    let busy = statuses.iter().filter(|s| matches!(s, Ok(503))).count();
    assert_eq!(
        refused + busy,
        1000,
        "every login answered 401 or 503: {statuses:?}"
    );
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let peak = served.outpost.peak_rss_mib();
    println!(
        "1000 logins: {refused} refused, {busy} told to come back; {} pushes beside them, p50 {:?} p99 {p99:?}; peak RSS {peak:.0} MiB",
        latencies.len(),
        latencies[latencies.len() / 2],
    );
    assert!(peak < 512.0, "peak RSS {peak:.0} MiB");
    // A timed bound would flake on a busy machine; this one only catches a starved device path.
    assert!(p99 < Duration::from_secs(10), "p99 {p99:?}");
}
