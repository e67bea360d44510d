//! Air-gapped synchronisation (`docs/protocol.md` section 7): usage export, the CSSM portal's
//! answer, ACK import, offline registration and device files, with no network between Outpost and CSSM.

use std::io::Write;
use std::process::Command;

use outpost_app::offline::export;
use outpost_core::crypto::SignatureVerifier;
use outpost_core::device::Status;
use outpost_core::offline_file;
use outpost_core::signed_file::verify_ack;
use outpost_db::enums::JobState;
use outpost_db::exports::Selection;
use outpost_pi_sim::Device;
use outpost_tests::{TestApp, c9800_sample};
use serde_json::Value;

const ACCOUNT: &str = "Acme Campus";
const TENANT: &str = "Acme Campus-1";

/// The admin API of a test app, logged in.
struct Admin<'a> {
    app: &'a TestApp,
    token: String,
    http: reqwest::Client,
}

impl<'a> Admin<'a> {
    async fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            token: app.admin_token().await,
            http: app.http(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.app.admin_base)
    }

    /// `GET .../usage-export`: (status, file name, bytes).
    async fn export(&self, account: &str, query: &str) -> (u16, String, Vec<u8>) {
        let id = self.app.account(account).await.id;
        let response = self
            .http
            .get(self.url(&format!("/accounts/{id}/usage-export{query}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let name = response
            .headers()
            .get("Content-Disposition")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("filename=").nth(1))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        (status, name, response.bytes().await.unwrap().to_vec())
    }

    /// `POST .../ack-import`: (status, JSON answer).
    async fn import(
        &self,
        account: &str,
        name: &str,
        bundle: Vec<u8>,
        dry_run: bool,
    ) -> (u16, Value) {
        let id = self.app.account(account).await.id;
        let url = self.url(&format!(
            "/accounts/{id}/ack-import?dry_run={dry_run}&file_name={name}"
        ));
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .body(bundle)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

/// Pushes `count` reports from a new device to `tenant`.
async fn push(app: &TestApp, tenant: &str, serial: &str, count: usize) -> Device {
    let mut device = Device::new("C9300-24UX", serial);
    let reports = (0..count).map(|_| device.next_report()).collect();
    assert_eq!(
        device
            .push(&app.pi_client(tenant), reports)
            .await
            .unwrap()
            .status,
        Status::OkPoll
    );
    device
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_air_gapped_cycle_loses_nothing() {
    let app = TestApp::builder().with_account(ACCOUNT).start().await;
    let admin = Admin::new(&app).await;
    let mut first = push(&app, TENANT, "FCWAIRGAP01", 3).await;
    let mut second = push(&app, TENANT, "FCWAIRGAP02", 2).await;
    let (status, _) = app
        .pi_client(TENANT)
        .post_raw("application/xml", c9800_sample().into_bytes())
        .await
        .unwrap();
    assert_eq!(status, 200);
    let sent: Vec<String> = app
        .count_rows("SELECT payload FROM rum_reports ORDER BY id")
        .await;
    assert_eq!(sent.len(), 6);

    // Export Usage to Cisco.
    let (status, name, bundle) = admin.export(ACCOUNT, "").await;
    assert_eq!(status, 200);
    assert!(
        name.starts_with("UD_SA_") && name.ends_with(".tar.gz"),
        "{name}"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM rum_reports WHERE exported_at IS NOT NULL AND acked_at IS NULL"
        )
        .await,
        6
    );
    assert_eq!(app.count("SELECT count(*) FROM sync_runs WHERE channel = 'file' AND direction = 'outbound' AND state = 'succeeded' AND reports_sent = 6 AND length(sha256) = 64").await, 1);
    // Nothing is left to export, and nothing goes online twice.
    let (status, _, body) = admin.export(ACCOUNT, "").await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
    assert!(
        app.cssm.received_reports().is_empty(),
        "exported reports are not uploaded online too"
    );

    // At a connected workstation, CSSM's portal answers with the ACK bundle.
    let (ack_name, acks) = app
        .cssm
        .portal()
        .answer_usage_bundle(&name, &bundle)
        .unwrap();
    let received: Vec<String> = app
        .cssm
        .received_reports()
        .into_iter()
        .map(|r| r.payload)
        .collect();
    let mut expected = sent.clone();
    let mut got = received.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "CSSM saw every payload byte-identical");

    // Import From Cisco: a dry run first, which changes nothing.
    let (status, dry) = admin.import(ACCOUNT, &ack_name, acks.clone(), true).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (
            dry["ack_files"].as_u64(),
            dry["acks_new"].as_u64(),
            dry["reports_newly_acknowledged"].as_u64()
        ),
        (Some(3), Some(3), Some(6))
    );
    assert_eq!(app.count("SELECT count(*) FROM acks").await, 0);
    let (status, done) = admin.import(ACCOUNT, &ack_name, acks.clone(), false).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (
            done["acks_new"].as_u64(),
            done["reports_newly_acknowledged"].as_u64(),
            done["policies"].as_u64()
        ),
        (Some(3), Some(6), Some(3))
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        6
    );
    assert_eq!(
        app.count("SELECT count(*) FROM acks WHERE source = 'file_import'")
            .await,
        3
    );
    assert_eq!(
        app.count("SELECT count(*) FROM sync_runs WHERE channel = 'file' AND direction = 'inbound' AND state = 'succeeded' AND file_name LIKE 'ACK_UD_SA_%' AND length(sha256) = 64").await,
        1
    );

    // The same bundle again changes nothing.
    let (status, again) = admin.import(ACCOUNT, &ack_name, acks, false).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            again["acks_new"].as_u64(),
            again["reports_newly_acknowledged"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(app.count("SELECT count(*) FROM acks").await, 3);

    // The devices receive their ACKs on their next poll; the ACKs verify against CSSM's key.
    let verifier =
        SignatureVerifier::from_certificate_pem(app.cssm.signing_certificate_pem()).unwrap();
    for device in [&mut first, &mut second] {
        assert_eq!(device.poll(&app.pi_client(TENANT)).await.unwrap(), 1);
        let ack = verify_ack(&device.acks[0], &verifier, chrono::Utc::now()).unwrap();
        assert_eq!(ack.ack.sudi, device.sudi);
        assert!(ack.policy.is_some());
    }
    assert_eq!(first.acknowledged_report_ids().len(), 3);
    assert_eq!(second.acknowledged_report_ids().len(), 2);

    // "All reports of the last N days" exports them again on demand.
    let (status, _, again) = admin.export(ACCOUNT, "?days=1").await;
    assert_eq!(status, 200);
    let (_, _) = app
        .cssm
        .portal()
        .answer_usage_bundle("again.tar.gz", &again)
        .unwrap();
}

fn untar(archive: &std::path::Path, into: &std::path::Path) -> Vec<String> {
    std::fs::create_dir_all(into).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success(), "tar -xzf {}", archive.display());
    let mut names: Vec<String> = std::fs::read_dir(into)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn is_timestamp(ts: &str) -> bool {
    // yyMMMdd_HH_MM_SS_mmm
    let parts: Vec<&str> = ts.split('_').collect();
    parts.len() == 5
        && parts[0].len() == 7
        && parts[0][..2].chars().all(|c| c.is_ascii_digit())
        && parts[0][2..5].chars().all(|c| c.is_ascii_alphabetic())
        && parts[1..4]
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_digit()))
        && parts[4].len() == 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_has_the_layout_of_protocol_section_7() {
    let app = TestApp::builder().with_account(ACCOUNT).start().await;
    // LVA 2 reports into another Virtual Account of the same Smart Account.
    app.execute(
        "INSERT INTO local_virtual_accounts (id, account_id, number, name, tenant_id, smart_account, virtual_account)
         SELECT gen_random_uuid(), id, 2, 'DC', 'Acme Campus-2', 'Acme Corp', 'DC' FROM local_accounts",
    )
    .await;
    let campus = push(&app, TENANT, "FCWLAYOUT01", 2).await;
    push(&app, TENANT, "FCWLAYOUT02", 1).await;
    push(&app, "Acme Campus-2", "FCWLAYOUT03", 1).await;

    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = app.cli(&[
        "admin",
        "export-usage",
        ACCOUNT,
        "--output",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            ": 3 device files (3 product instances), 4 reports, 2 virtual account archives"
        ),
        "{out}"
    );

    let bundles: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(bundles.len(), 1);
    let bundle = &bundles[0];
    let name = bundle.file_name().unwrap().to_str().unwrap();
    let ts = name
        .strip_prefix("UD_SA_")
        .and_then(|n| n.strip_suffix(".tar.gz"))
        .unwrap();
    assert!(is_timestamp(ts), "{name}");

    let outer = dir.path().join("outer");
    let members = untar(bundle, &outer);
    assert_eq!(members.len(), 3, "{members:?}");
    assert_eq!(members[2], "manifest.mf");
    let va_archives = &members[..2];
    for va in va_archives {
        let ts = va
            .strip_prefix("UD_VA_")
            .and_then(|n| n.strip_suffix(".tar.gz"))
            .unwrap();
        assert!(is_timestamp(ts), "{va}");
    }

    let manifest = std::fs::read_to_string(outer.join("manifest.mf")).unwrap();
    let lines: Vec<&str> = manifest.lines().collect();
    assert_eq!(lines[0], "Manifest-Version: 1.0");
    let created_by: String =
        serde_json::from_str(lines[1].strip_prefix("Created-By: ").unwrap()).unwrap();
    let created_by: Value = serde_json::from_str(&created_by).unwrap();
    assert!(
        uuid::Uuid::parse_str(created_by["uuid"].as_str().unwrap()).is_ok(),
        "{}",
        lines[1]
    );
    assert_eq!(
        &lines[2..4],
        ["Smart-Account: Acme Corp", "Smart-Account-ID: 100000"]
    );
    let sections: Vec<&str> = manifest.split("\n\n").skip(1).collect();
    assert_eq!(sections.len(), 2);
    let mut per_va = std::collections::BTreeMap::new();
    for section in sections {
        let section: Vec<&str> = section.lines().collect();
        let file = section[0].strip_prefix("Name: /").unwrap();
        assert!(va_archives.iter().any(|v| v == file), "{file}");
        let va = section[1].strip_prefix("Specification-VA: ").unwrap();
        let va_id = section[2].strip_prefix("Specification-VA-ID: ").unwrap();
        per_va.insert(va.to_owned(), (file.to_owned(), va_id.to_owned()));
    }
    assert_eq!(
        per_va["Campus"].1, "200000",
        "the account's own pair has its CSSM id"
    );

    // Campus: one dev_<id>_<ts>.txt per product instance, each an offline RUM file.
    let inner = dir.path().join("campus");
    let files = untar(&outer.join(&per_va["Campus"].0), &inner);
    assert_eq!(files.len(), 2, "{files:?}");
    let mut found = false;
    for file in &files {
        let rest = file
            .strip_prefix("dev_")
            .and_then(|n| n.strip_suffix(".txt"))
            .unwrap();
        let (id, ts) = rest.split_once('_').unwrap();
        assert!(
            uuid::Uuid::parse_str(id).is_ok() && is_timestamp(ts),
            "{file}"
        );
        let parsed =
            offline_file::parse(&std::fs::read_to_string(inner.join(file)).unwrap()).unwrap();
        if parsed.device().unwrap().same_device(&campus.sudi) {
            found = true;
            assert_eq!(parsed.reports.len(), 2);
            let stored: Vec<String> = app.count_rows("SELECT r.payload FROM rum_reports r JOIN product_instances p ON p.id = r.pi_id WHERE p.udi_serial_number = 'FCWLAYOUT01' ORDER BY r.id").await;
            let written: Vec<String> = parsed.reports.iter().map(|r| r.payload.clone()).collect();
            assert_eq!(written, stored, "payloads byte-exact");
        }
    }
    assert!(found);
    let dc = untar(&outer.join(&per_va["DC"].0), &dir.path().join("dc"));
    assert_eq!(dc.len(), 1);

    // The CLI imports what the portal returns, after a dry run.
    let bytes = std::fs::read(bundle).unwrap();
    let (ack_name, acks) = app.cssm.portal().answer_usage_bundle(name, &bytes).unwrap();
    let ack_path = dir.path().join(&ack_name);
    std::fs::write(&ack_path, acks).unwrap();
    let (code, out, err) = app.cli(&[
        "admin",
        "import-ack",
        ACCOUNT,
        ack_path.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("would import {ack_name}: 3 ACK files for 3 product instances (3 with a policy), 3 new ACKs, 4 reports newly acknowledged")), "{out}");
    assert_eq!(app.count("SELECT count(*) FROM acks").await, 0);
    let (code, out, err) = app.cli(&["admin", "import-ack", ACCOUNT, ack_path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("imported {ack_name}: 3 ACK files")),
        "{out}"
    );
    assert!(out.contains("the devices receive their ACKs"), "{out}");
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        4
    );
    // The same file again: a no-op that says so.
    let (code, out, err) = app.cli(&["admin", "import-ack", ACCOUNT, ack_path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("0 new ACKs, 0 reports newly acknowledged")
            && out.contains("nothing new: every ACK in this file was imported before"),
        "{out}"
    );
    assert_eq!(app.count("SELECT count(*) FROM acks").await, 3);
}

/// A sink that accepts `budget` bytes and then fails, like a disk filling up.
struct FullDisk {
    budget: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.budget {
            return Err(std::io::Error::other("No space left on device"));
        }
        self.budget -= buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_marks_nothing() {
    let app = TestApp::builder().with_account(ACCOUNT).start().await;
    for serial in ["FCWFULL0001", "FCWFULL0002", "FCWFULL0003"] {
        push(&app, TENANT, serial, 40).await;
    }
    let account = app.account(ACCOUNT).await.id;
    let request = export::ExportRequest {
        account,
        selection: Selection::Unsent,
        now: chrono::Utc::now(),
        actor: "test",
    };
    let unmarked = || async {
        assert_eq!(
            app.count("SELECT count(*) FROM rum_reports WHERE exported_at IS NULL")
                .await,
            120,
            "a failed export leaves every report unsent"
        );
        assert_eq!(
            app.count("SELECT count(*) FROM sync_runs WHERE channel = 'file'")
                .await,
            0
        );
    };

    // The disk fills up half-way through the bundle.
    let failed = export::export_usage(
        &mut *app.conn().await,
        &request,
        FullDisk { budget: 1_000 },
        Ok,
        |_, _| {},
    )
    .await;
    let error = failed.err().expect("the export fails").to_string();
    assert!(error.contains("No space left on device"), "{error}");
    unmarked().await;

    // The bundle is complete but cannot be made durable.
    let failed = export::export_usage(
        &mut *app.conn().await,
        &request,
        Vec::new(),
        |_| -> std::io::Result<()> { Err(std::io::Error::other("fsync failed")) },
        |_, _| {},
    )
    .await;
    assert!(failed.is_err());
    unmarked().await;

    // The same export on a working disk goes through, with all 120 reports.
    let (bytes, summary) =
        export::export_usage(&mut *app.conn().await, &request, Vec::new(), Ok, |_, _| {})
            .await
            .expect("export");
    assert_eq!((summary.reports, summary.device_files), (120, 3));
    assert_eq!(bytes.len() as u64, summary.bytes);
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE exported_at IS NOT NULL")
            .await,
        120
    );
}

/// A tar.gz with one member whose name the tar crate would refuse to write.
fn archive_with_member_name(name: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(4);
    header.set_mode(0o644);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend_from_slice(b"evil");
    tar.resize(512 * 4, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// Rewrites one ACK file inside an ACK bundle.
fn tamper(bundle: &[u8]) -> Vec<u8> {
    let acks = outpost_core::bundle::read_ack_bundle(bundle, "x").unwrap();
    let mut files: Vec<(String, String)> = acks
        .iter()
        .map(|a| (a.device_id.clone(), a.text.clone()))
        .collect();
    files[0].1 = files[0]
        .1
        .replacen("acked_report_ids\":[", "acked_report_ids\":[7,", 1);
    let va_ts = acks[0]
        .archive
        .trim_start_matches("ACK_UD_VA_")
        .trim_end_matches(".tar.gz")
        .to_owned();
    outpost_core::bundle::write_ack_bundle(Vec::new(), &[(va_ts, files)], chrono::Utc::now())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_are_refused_whole_with_the_file_named() {
    let app = TestApp::builder()
        .with_account(ACCOUNT)
        .with_account("Globex")
        .start()
        .await;
    app.execute("UPDATE local_accounts SET virtual_account = 'DC' WHERE name = 'Globex'")
        .await;
    let admin = Admin::new(&app).await;
    push(&app, TENANT, "FCWREFUSE01", 2).await;
    push(&app, "Globex-1", "FCWGLOBEX01", 1).await;
    let (_, name, bundle) = admin.export(ACCOUNT, "").await;
    let (ack_name, acks) = app
        .cssm
        .portal()
        .answer_usage_bundle(&name, &bundle)
        .unwrap();
    let (_, globex_name, globex) = admin.export("Globex", "").await;
    let (_, globex_acks) = app
        .cssm
        .portal()
        .answer_usage_bundle(&globex_name, &globex)
        .unwrap();

    let empty =
        outpost_core::bundle::write_ack_bundle(Vec::new(), &[], chrono::Utc::now()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "tampered signature",
            tamper(&acks),
            "signature check failed",
        ),
        (
            "another account's bundle",
            globex_acks,
            "not for local account 'Acme Campus'",
        ),
        (
            "truncated gzip",
            acks[..acks.len() / 2].to_vec(),
            "the archive is truncated",
        ),
        (
            "../ member name",
            archive_with_member_name(b"../ACK_UD_VA_x.tar.gz"),
            "member name '../ACK_UD_VA_x.tar.gz' is not allowed",
        ),
        (
            "absolute member name",
            archive_with_member_name(b"/etc/passwd"),
            "member name '/etc/passwd' is not allowed",
        ),
        ("empty archive", empty, "the archive holds no ACK_UD_VA_"),
        (
            "not an archive",
            b"<html>not a bundle</html>".to_vec(),
            "is not a tar.gz",
        ),
    ];
    for (what, bytes, says) in cases {
        let (status, answer) = admin.import(ACCOUNT, "bad.tar.gz", bytes, false).await;
        assert_eq!(status, 422, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "file_rejected", "{what}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{what}: {message}");
        assert!(
            message.starts_with("bad.tar.gz: "),
            "{what}: names the file: {message}"
        );
        assert_eq!(
            app.count("SELECT count(*) FROM acks").await,
            0,
            "{what}: nothing applied"
        );
        assert_eq!(
            app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
                .await,
            0,
            "{what}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM sync_runs WHERE direction = 'inbound' AND state = 'failed' AND file_name = 'bad.tar.gz'").await, 7);
    // The genuine bundle still imports afterwards.
    let (status, answer) = admin.import(ACCOUNT, &ack_name, acks, false).await;
    assert_eq!(
        (status, answer["reports_newly_acknowledged"].as_u64()),
        (200, Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_registration_registers_exactly_like_online() {
    let app = TestApp::new().await;
    let (code, out, err) = app.cli(&[
        "admin",
        "create-account",
        "--name",
        "Acme Campus",
        "--smart-account",
        "Acme Corp",
        "--virtual-account",
        "Campus",
        "--offline",
    ]);
    assert_eq!(code, 0, "{err}");
    // The hint is a command that can be pasted as it is: the name is quoted.
    assert!(
        out.contains(
            "not registered yet (air-gapped): run `outpost admin registration-request 'Acme Campus'`"
        ),
        "{out}"
    );
    assert_eq!(
        app.cssm.request_log().len(),
        0,
        "nothing went to CSSM online"
    );
    let admin = Admin::new(&app).await;
    let id = app.account(ACCOUNT).await.id;

    // Until registered, exports are refused with the reason.
    let (status, _, body) = admin.export(ACCOUNT, "").await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));

    let request = |http: &reqwest::Client| {
        http.get(admin.url(&format!("/accounts/{id}/registration-request")))
            .bearer_auth(&admin.token)
            .send()
    };
    let first = request(&admin.http).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(
        first.headers()["Content-Disposition"]
            .to_str()
            .unwrap()
            .contains("Acme_Campus.registration.json")
    );
    let first = first.text().await.unwrap();
    let stale = app
        .cssm
        .portal()
        .answer_registration_request(&first)
        .unwrap();
    let latest = request(&admin.http).await.unwrap().text().await.unwrap();
    let response = app
        .cssm
        .portal()
        .answer_registration_request(&latest)
        .unwrap();

    let post = |body: String| {
        admin
            .http
            .post(admin.url(&format!("/accounts/{id}/registration-response")))
            .bearer_auth(&admin.token)
            .body(body)
            .send()
    };
    for (what, body, says) in [
        ("an answer to an older request", stale, "another request"),
        (
            "a tampered response",
            response.replace("Campus", "Campux"),
            "signature",
        ),
        (
            "not a response",
            latest.clone(),
            "its type is 'outpost-registration-request'",
        ),
    ] {
        let answer = post(body).await.unwrap();
        assert_eq!(answer.status(), 422, "{what}");
        let answer: Value = answer.json().await.unwrap();
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(says),
            "{what}: {answer}"
        );
        assert_eq!(
            app.count("SELECT count(*) FROM local_accounts WHERE status = 'active'")
                .await,
            0,
            "{what}"
        );
    }
    let answer = post(response).await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["status"], "active");
    assert_eq!(app.count("SELECT count(*) FROM local_accounts WHERE cssm_smart_account_id = '100000' AND cssm_virtual_account_id = '200000' AND cssm_client_id IS NOT NULL AND registration_request_nonce IS NULL").await, 1);

    // Registered: the account works offline and, should it get a route, online too.
    let mut device = push(&app, TENANT, "FCWOFFREG01", 1).await;
    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
    assert_eq!(device.poll(&app.pi_client(TENANT)).await.unwrap(), 1);
    let again = request(&admin.http).await.unwrap();
    assert_eq!(again.status(), 409, "already registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_files_go_in_and_acks_come_out() {
    let app = TestApp::builder().with_account(ACCOUNT).start().await;
    let admin = Admin::new(&app).await;
    let id = app.account(ACCOUNT).await.id;

    let upload = |body: String| {
        admin
            .http
            .post(admin.url(&format!("/accounts/{id}/usage-files")))
            .bearer_auth(&admin.token)
            .body(body)
            .send()
    };
    let answer: Value = upload(c9800_sample()).await.unwrap().json().await.unwrap();
    assert_eq!(
        answer["message"],
        "usage accepted: 1 reports (0 already known)"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE source = 'file'")
            .await,
        1
    );
    let bad = upload("<smartLicense><RUMReport>{}</RUMReport></smartLicense>".into())
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);

    let pi = app
        .count_rows("SELECT id::text FROM product_instances")
        .await
        .remove(0);
    let download = || {
        admin
            .http
            .get(admin.url(&format!("/accounts/{id}/product-instances/{pi}/ack-file")))
            .bearer_auth(&admin.token)
            .send()
    };
    assert_eq!(download().await.unwrap().status(), 409, "no ACK yet");
    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
    let file = download().await.unwrap();
    assert_eq!(file.status(), 200);
    assert!(
        file.headers()["Content-Disposition"]
            .to_str()
            .unwrap()
            .contains("ACK_C9800-CL-K9_9NTUEA8FIIH.txt")
    );
    let verifier =
        SignatureVerifier::from_certificate_pem(app.cssm.signing_certificate_pem()).unwrap();
    let ack = verify_ack(&file.text().await.unwrap(), &verifier, chrono::Utc::now()).unwrap();
    assert_eq!(ack.ack.acked_report_ids, vec![1_671_840_750]);

    let other = admin
        .http
        .get(admin.url(&format!(
            "/accounts/{id}/product-instances/{}/ack-file",
            uuid::Uuid::new_v4()
        )))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
