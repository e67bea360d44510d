//! The CSSM sync job: retries, timeouts, pending ACKs, signature checks, crash recovery,
//! batching, schedules and job leases, against the CSSM simulator's injected faults.

use std::time::Duration;

use chrono::{DateTime, Utc};
use outpost_core::clock::{Clock, ManualClock};
use outpost_core::device::Status;
use outpost_cssm_sim::{Endpoint, Fault};
use outpost_db::enums::JobState;
use outpost_db::{jobs, locks, uploads};
use outpost_pi_sim::Device;
use outpost_tests::TestApp;
use outpost_worker::scheduler::Scheduler;

const ACCOUNT: &str = "Acme Campus";
const TENANT: &str = "Acme Campus-1";

/// Pushes `reports` reports from one new device; returns it.
async fn push(app: &TestApp, serial: &str, reports: usize) -> Device {
    let mut device = Device::new("C9300-24UX", serial);
    let batch = (0..reports).map(|_| device.next_report()).collect();
    let answer = device.push(&app.pi_client(TENANT), batch).await.unwrap();
    assert_eq!(answer.status, Status::OkPoll);
    device
}

fn manual_clock() -> ManualClock {
    ManualClock::new(Utc::now())
}

fn count_calls(app: &TestApp, endpoint: Endpoint) -> usize {
    app.cssm
        .request_log()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cssm_is_retried_with_backoff_and_the_ledger_says_so() {
    let clock = manual_clock();
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account(ACCOUNT)
        .start()
        .await;
    push(&app, "FCWRETRY001", 2).await;
    app.cssm.inject(Endpoint::ReportUsage, &[Fault::Http500]);

    assert_eq!(
        app.sync(ACCOUNT).await,
        JobState::Queued,
        "the failed run is queued for a retry"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM sync_runs WHERE state = 'failed' AND message LIKE '%500%'")
            .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM alerts WHERE kind = 'cssm_sync_failed' AND cleared_at IS NULL"
        )
        .await,
        1
    );
    // The backoff holds the retry back until its time comes.
    assert!(app.run_jobs().await.is_empty());
    clock.advance(chrono::Duration::seconds(2));
    let ran = app.run_jobs().await;
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].1, JobState::Succeeded);

    assert_eq!(
        app.cssm.received_reports().len(),
        2,
        "the retry sent the batch once"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) FROM sync_runs WHERE state = 'succeeded'")
            .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM alerts WHERE kind = 'cssm_sync_failed' AND cleared_at IS NULL"
        )
        .await,
        0
    );
    assert_eq!(app.count("SELECT attempts FROM jobs").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_poll_times_out_and_the_retry_polls_without_resending() {
    let clock = manual_clock();
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_settings(|s| s.cssm.request_timeout_secs = 1)
        .with_account(ACCOUNT)
        .start()
        .await;
    push(&app, "FCWHANG0001", 3).await;
    app.cssm
        .inject(Endpoint::Poll, &[Fault::Hang(Duration::from_secs(3))]);

    assert_eq!(app.sync(ACCOUNT).await, JobState::Queued);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM sync_runs WHERE state = 'failed' AND message LIKE '%timed out%'"
        )
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM cssm_uploads WHERE state = 'polling'")
            .await,
        1
    );

    clock.advance(chrono::Duration::seconds(2));
    assert_eq!(app.run_jobs().await[0].1, JobState::Succeeded);
    assert_eq!(
        count_calls(&app, Endpoint::ReportUsage),
        1,
        "the batch was not sent again"
    );
    assert_eq!(app.cssm.received_reports().len(), 3);
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_not_ready_leave_the_sync_pending_and_a_follow_up_completes_it() {
    let clock = manual_clock();
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account(ACCOUNT)
        .start()
        .await;
    let mut device = push(&app, "FCWPENDING1", 1).await;
    let client = app.pi_client(TENANT);
    // Five OK_POLL answers; a sync polls three times.
    app.cssm.set_ok_polls(5);

    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
    assert_eq!(
        app.count("SELECT count(*) FROM sync_runs WHERE state = 'pending'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE state = 'queued'")
            .await,
        1,
        "a follow-up sync is queued"
    );
    assert_eq!(
        device.poll(&client).await.unwrap(),
        0,
        "the device still waits"
    );

    clock.advance(chrono::Duration::seconds(
        i64::try_from(app.settings.cssm.follow_up_secs).unwrap() + 1,
    ));
    assert_eq!(app.run_jobs().await[0].1, JobState::Succeeded);
    assert_eq!(
        app.count("SELECT count(*) FROM sync_runs WHERE state = 'succeeded'")
            .await,
        1
    );
    assert_eq!(device.poll(&client).await.unwrap(), 1);
    assert_eq!(device.acks.len(), 1);
    assert_eq!(count_calls(&app, Endpoint::ReportUsage), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_that_does_not_verify_is_refused_and_nothing_is_stored() {
    let wrong = outpost_core::crypto::generate_signing_certificate("not CSSM").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong_path = dir.path().join("wrong.crt");
    std::fs::write(&wrong_path, wrong.cert_pem).unwrap();
    let wrong_path = wrong_path.to_str().unwrap().to_owned();
    let mut app = TestApp::builder()
        .with_settings(move |s| {
            s.cssm.signing_certificate_file = wrong_path;
            s.worker.max_attempts = 1;
        })
        .with_account(ACCOUNT)
        .start()
        .await;
    let mut device = push(&app, "FCWBADSIG01", 2).await;

    assert_eq!(app.sync(ACCOUNT).await, JobState::Failed);
    app.expect_failed_jobs(1);
    assert_eq!(app.count("SELECT count(*) FROM acks").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM sync_runs WHERE state = 'failed' AND message LIKE '%refused: <smartLicenseRumAck> signature check failed%'").await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM alerts WHERE kind = 'cssm_sync_failed' AND cleared_at IS NULL"
        )
        .await,
        1
    );
    assert_eq!(device.poll(&app.pi_client(TENANT)).await.unwrap(), 0);
    assert!(device.acks.is_empty(), "no unverified ACK reaches a device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_recorded_before_a_crash_is_resent_once_and_a_second_run_sends_nothing() {
    let app = TestApp::builder().with_account(ACCOUNT).start().await;
    push(&app, "FCWCRASH001", 3).await;
    // What the sync writes just before its reportusage call, as if it then crashed.
    let account = app.account(ACCOUNT).await;
    let outgoing = uploads::unsent_reports(&mut *app.conn().await, account.id, 0, 100)
        .await
        .unwrap();
    let rows: Vec<i64> = outgoing.iter().map(|r| r.row_id).collect();
    let _tagged = uploads::create_upload(
        &mut *app.conn().await,
        account.id,
        "Acme Corp",
        "Campus",
        "CRASHEDNONCE0001",
        &rows,
        Utc::now(),
    )
    .await
    .unwrap();

    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
    assert_eq!(
        app.count("SELECT count(*) FROM cssm_uploads").await,
        1,
        "the recorded batch was reused"
    );
    assert_eq!(app.cssm.received_reports().len(), 3);
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        3
    );

    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
    assert_eq!(
        count_calls(&app, Endpoint::ReportUsage),
        1,
        "a second sync sends nothing new"
    );
    assert_eq!(app.cssm.received_reports().len(), 3);
    assert_eq!(app.count("SELECT count(*) FROM acks").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_from_cssm_is_resent_and_counted_as_duplicates() {
    let clock = manual_clock();
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_settings(|s| s.cssm.request_timeout_secs = 1)
        .with_account(ACCOUNT)
        .start()
        .await;
    push(&app, "FCWLOST0001", 2).await;
    // CSSM takes the batch but its answer comes too late for Outpost.
    app.cssm.inject(
        Endpoint::ReportUsage,
        &[Fault::Hang(Duration::from_secs(2))],
    );
    assert_eq!(app.sync(ACCOUNT).await, JobState::Queued);
    // CSSM records the batch when its slow answer finally goes out.
    outpost_tests::eventually(10, "CSSM to record the first batch", || async {
        app.cssm.received_reports().len() == 2
    })
    .await;
    clock.advance(chrono::Duration::seconds(2));
    assert_eq!(app.run_jobs().await[0].1, JobState::Succeeded);

    let received = app.cssm.received_reports();
    assert_eq!(
        received.iter().filter(|r| r.duplicate).count(),
        2,
        "CSSM lists the resent reports as duplicates"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM sync_runs WHERE state = 'succeeded' AND reports_duplicate = 2"
        )
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_in_batches_of_the_configured_size() {
    let app = TestApp::builder()
        .with_settings(|s| s.cssm.batch_size = 2)
        .with_account(ACCOUNT)
        .start()
        .await;
    push(&app, "FCWBATCH001", 3).await;
    push(&app, "FCWBATCH002", 2).await;
    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
    assert_eq!(count_calls(&app, Endpoint::ReportUsage), 3);
    assert_eq!(
        app.count("SELECT count(*) FROM cssm_uploads WHERE state = 'complete'")
            .await,
        3
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        5
    );
    assert_eq!(
        app.count("SELECT sum(reports_sent) FROM sync_runs").await,
        5
    );
    assert!(app.count("SELECT length(sha256) FROM sync_runs").await == 64);
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_enqueues_its_sync_once_when_due() {
    let clock = ManualClock::new(at("2026-01-10T01:00:00Z"));
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account(ACCOUNT)
        .start()
        .await;
    let scheduler = Scheduler::new(app.worker.clone());

    assert_eq!(scheduler.tick().await.unwrap(), 0, "02:00 is still ahead");
    clock.set(at("2026-01-10T02:00:30Z"));
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    assert_eq!(scheduler.tick().await.unwrap(), 0, "moved to the next day");
    assert_eq!(
        app.count("SELECT count(*) FROM schedules WHERE next_run_at = '2026-01-11T02:00:00Z'")
            .await,
        1
    );
    // "Synchronize now" while the scheduled sync is queued joins it.
    let queued = app
        .count("SELECT count(*) FROM jobs WHERE state = 'queued'")
        .await;
    app.enqueue_sync(ACCOUNT).await;
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE state = 'queued'")
            .await,
        queued
    );
    assert_eq!(app.run_jobs().await[0].1, JobState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_of_unregistered_accounts_enqueue_nothing() {
    let clock = ManualClock::new(at("2026-01-10T01:00:00Z"));
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account(ACCOUNT)
        .start()
        .await;
    app.execute("UPDATE local_accounts SET status = 'inactive'")
        .await;
    let scheduler = Scheduler::new(app.worker.clone());
    clock.set(at("2026-01-10T02:00:30Z"));
    assert_eq!(scheduler.tick().await.unwrap(), 0);
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind <> 'deadline_sweep'")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind = 'deadline_sweep' AND state = 'queued'")
            .await,
        1,
        "one sweep stays queued"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM schedules WHERE next_run_at = '2026-01-11T02:00:00Z'")
            .await,
        1,
        "it moved on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_died_is_taken_over_after_its_lease() {
    let clock = manual_clock();
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account(ACCOUNT)
        .start()
        .await;
    push(&app, "FCWLEASE001", 1).await;
    let id = app.enqueue_sync(ACCOUNT).await;
    // A worker claims it and dies: no heartbeat ever again.
    let lease = chrono::Duration::seconds(30);
    let claimed = jobs::claim_next(&mut *app.conn().await, "dead-worker", clock.now(), lease)
        .await
        .unwrap();
    assert_eq!(claimed.unwrap().id, id);
    assert!(app.run_jobs().await.is_empty(), "the lease still holds");

    clock.advance(chrono::Duration::seconds(31));
    let ran = app.run_jobs().await;
    assert_eq!(ran, vec![(id, JobState::Succeeded)]);
    assert_eq!(app.count("SELECT attempts FROM jobs").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_of_one_account_never_run_at_once() {
    let clock = manual_clock();
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account(ACCOUNT)
        .start()
        .await;
    push(&app, "FCWLOCK0001", 1).await;
    let account = app.account(ACCOUNT).await;
    let mut holder = outpost_db::pool::establish(app.db.url(), Duration::from_secs(5))
        .await
        .unwrap();
    let key = format!("cssm_sync:{}", account.id);
    assert!(locks::try_lock(&mut holder, &key).await.unwrap());

    assert_eq!(app.sync(ACCOUNT).await, JobState::Queued);
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE last_error LIKE 'another sync of account%'")
            .await,
        1
    );
    assert_eq!(count_calls(&app, Endpoint::ReportUsage), 0);

    drop(holder);
    clock.advance(chrono::Duration::seconds(2));
    assert_eq!(app.run_jobs().await[0].1, JobState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_at_a_time_leads_the_schedules() {
    let app = TestApp::new().await;
    let first = Scheduler::new(app.worker.clone());
    let second = Scheduler::new(app.worker.clone());
    assert!(first.lead().await);
    assert!(first.lead().await, "the leader keeps its lock");
    assert!(!second.lead().await, "a second worker does not lead");
    drop(first);
    eventually_leads(&second).await;
}

/// The lock ends with the old leader's connection, which closes in the background.
async fn eventually_leads(scheduler: &Scheduler) {
    for _ in 0..50 {
        if scheduler.lead().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the second worker never took the lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_id_cssm_forgot_makes_the_batch_go_again() {
    let clock = manual_clock();
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account(ACCOUNT)
        .start()
        .await;
    let mut device = push(&app, "FCWFORGOT01", 2).await;
    app.cssm.set_ok_polls(10);
    assert_eq!(
        app.sync(ACCOUNT).await,
        JobState::Succeeded,
        "pending, with a follow-up"
    );
    app.cssm.forget_polls();
    app.cssm.set_ok_polls(0);

    clock.advance(chrono::Duration::seconds(
        i64::try_from(app.settings.cssm.follow_up_secs).unwrap() + 1,
    ));
    assert_eq!(
        app.run_jobs().await[0].1,
        JobState::Queued,
        "the 404 is noted and the sync retried"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM cssm_uploads WHERE state = 'sending' AND poll_id IS NULL")
            .await,
        1
    );
    clock.advance(chrono::Duration::seconds(2));
    assert_eq!(app.run_jobs().await[0].1, JobState::Succeeded);
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        2
    );
    assert_eq!(
        app.cssm
            .received_reports()
            .iter()
            .filter(|r| r.duplicate)
            .count(),
        2,
        "CSSM saw the resend as duplicates"
    );
    assert_eq!(device.poll(&app.pi_client(TENANT)).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_batch_does_not_hold_back_the_others() {
    let mut app = TestApp::builder()
        .with_settings(|s| s.worker.max_attempts = 1)
        .with_account(ACCOUNT)
        .start()
        .await;
    // LVA 2 maps its usage to a Virtual Account CSSM does not know.
    app.execute(
        "INSERT INTO local_virtual_accounts (id, account_id, number, name, tenant_id, smart_account, virtual_account)
         SELECT gen_random_uuid(), id, 2, 'Lab', 'Acme Campus-2', 'Acme Corp', 'Nowhere' FROM local_accounts",
    )
    .await;
    let mut good = push(&app, "FCWGOODLVA1", 2).await;
    let mut lab = Device::new("C9300-24UX", "FCWLABLVA01");
    assert_eq!(
        app.push_next_report(&mut lab, "Acme Campus-2").await.status,
        Status::OkPoll
    );

    assert_eq!(app.sync(ACCOUNT).await, JobState::Failed);
    app.expect_failed_jobs(1);
    assert_eq!(
        good.poll(&app.pi_client(TENANT)).await.unwrap(),
        1,
        "the good batch went through"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE upload_id IS NULL")
            .await,
        1,
        "the lab report waits"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM sync_runs WHERE state = 'failed' AND message LIKE '%Virtual Account ''Nowhere'', which CSSM does not know%'").await,
        1
    );
    assert_eq!(lab.poll(&app.pi_client("Acme Campus-2")).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_an_ack_left_out_are_sent_again() {
    let clock = manual_clock();
    let app = TestApp::builder()
        .with_clock(clock.clone())
        .with_account(ACCOUNT)
        .start()
        .await;
    let mut device = push(&app, "FCWPARTIAL1", 3).await;
    app.cssm.set_ack_omissions(1);
    assert_eq!(app.sync(ACCOUNT).await, JobState::Succeeded);
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE upload_id IS NULL")
            .await,
        1,
        "back among the unsent"
    );
    assert_eq!(app.count("SELECT count(*) FROM sync_runs WHERE state = 'pending' AND message LIKE '%left 1 reports unacknowledged%'").await, 1);

    app.cssm.set_ack_omissions(0);
    clock.advance(chrono::Duration::seconds(
        i64::try_from(app.settings.cssm.follow_up_secs).unwrap() + 1,
    ));
    assert_eq!(app.run_jobs().await[0].1, JobState::Succeeded);
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        3
    );
    assert_eq!(device.poll(&app.pi_client(TENANT)).await.unwrap(), 1);
    assert_eq!(device.acknowledged_report_ids().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_hands_unfinished_jobs_back() {
    let app = TestApp::builder()
        .with_settings(|s| {
            s.worker.shutdown_grace_secs = 1;
            s.worker.poll_interval_ms = 50;
            s.cssm.request_timeout_secs = 30;
        })
        .with_account(ACCOUNT)
        .start()
        .await;
    push(&app, "FCWSHUTDOWN", 1).await;
    app.cssm.inject(
        Endpoint::ReportUsage,
        &[Fault::Hang(Duration::from_secs(20))],
    );
    app.enqueue_sync(ACCOUNT).await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = app.runner.clone();
    let running = tokio::spawn(async move { runner.run(stopped).await });
    outpost_tests::eventually(10, "the sync to be running", || async {
        app.count("SELECT count(*) FROM jobs WHERE state = 'running'")
            .await
            == 1
    })
    .await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker stops after its grace period")
        .unwrap();

    assert_eq!(app.count("SELECT count(*) FROM jobs WHERE state = 'queued' AND attempts = 0 AND locked_by IS NULL").await, 1);
    assert_eq!(
        app.run_jobs().await[0].1,
        JobState::Succeeded,
        "another run completes it"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM rum_reports WHERE acked_at IS NOT NULL")
            .await,
        1
    );
}
