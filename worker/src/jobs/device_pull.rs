//! The `device_pull` job, "Synchronise now with the device": for each device of an account that
//! Outpost pulls from, install the ACKs waiting for it, then collect its RUM reports and store
//! them through report intake, exactly as pushed ones. Devices are pulled a few at a time
//! (`pull.concurrency`), each within `pull.device_timeout_secs`, so one unreachable device never
//! stalls the rest; a device's failure leaves a "Pull failed: <reason>" alert on it, and a
//! success clears it. Devices behind NAT are never pulled. A database failure is Outpost's, not
//! the device's: it fails the job (retried later), blaming no device.
//!
//! Over the native REST API, RESTCONF and NETCONF over SSH: RESTCONF and NETCONF devices upload
//! their RUM file to, and read ACKs from, one-time Outpost URLs.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use outpost_app::AppError;
use outpost_app::intake::{self, PulledPi};
use outpost_core::device_rpc::Rpc;
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::enums::{AccountStatus, ConnectMethod, EventResult};
use outpost_db::events::{self, NewEvent};
use outpost_db::jobs::catalog::DevicePull;
use outpost_db::pull::{self, Target};
use outpost_db::{AckId, AsyncConnection, AsyncPgConnection, DbError, acks};
use serde_json::{Value, json};

use super::{JobContext, JobError, RunJob};
use crate::devices::PullError;
use crate::devices::netconf::NetconfDevice;
use crate::devices::rest::RestDevice;

/// What one device's pull gave.
#[derive(Debug, Default)]
struct Pulled {
    reports: usize,
    new: usize,
    acks_installed: usize,
}

/// Why one device's pull ended: the device (on its alert), or Outpost itself.
#[derive(Debug)]
enum Failure {
    Device(PullError),
    Internal(AppError),
}

impl From<PullError> for Failure {
    fn from(e: PullError) -> Self {
        Failure::Device(e)
    }
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Self {
        Failure::Internal(e.into())
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        match e {
            // The device's reports are refused (unreadable, or another PI's): its answer is bad.
            AppError::Refused { message, .. } => Failure::Device(PullError::BadResponse(message)),
            other => Failure::Internal(other),
        }
    }
}

/// The job's tally.
#[derive(Debug, Default)]
struct Tally {
    collected: u64,
    reports_new: usize,
    acks_installed: usize,
    failures: BTreeMap<&'static str, u64>,
}

impl RunJob for DevicePull {
    async fn run(self, ctx: &JobContext) -> Result<Value, JobError> {
        let worker = &ctx.worker;
        let mut conn = worker.pool.get().await?;
        let account = accounts::find_account(&mut conn, self.account_id).await?;
        if account.status != AccountStatus::Active {
            return Ok(
                json!({ "message": format!("local account '{}' is {}: nothing pulled", account.name, account.status) }),
            );
        }
        let targets =
            pull::targets(&mut conn, account.id, self.product_instance_ids.as_deref()).await?;
        drop(conn);
        let (behind_nat, targets): (Vec<Target>, Vec<Target>) =
            targets.into_iter().partition(|t| t.behind_nat);
        let total = targets.len() as u64;
        let tally = pull_all(ctx, &account, targets).await?;
        let failed: u64 = tally.failures.values().sum();
        let message = format!(
            "{} of {total} devices pulled ({} new reports, {} ACKs installed); {failed} failed; {} behind NAT not pulled",
            tally.collected,
            tally.reports_new,
            tally.acks_installed,
            behind_nat.len(),
        );
        let result = json!({
            "devices": total,
            "collected": tally.collected,
            "failed": tally.failures,
            "reports_new": tally.reports_new,
            "acks_installed": tally.acks_installed,
            "behind_nat_skipped": behind_nat.len(),
            "message": message,
        });
        let outcome = if failed == 0 {
            EventResult::Ok
        } else {
            EventResult::Failed
        };
        let event = NewEvent::account(
            account.id,
            "system",
            "device.pull",
            outcome,
            result.clone(),
            worker.clock.now(),
        );
        events::record(&mut *worker.pool.get().await?, &event).await?;
        Ok(result)
    }
}

/// Pulls every target, a few at a time, each within the device timeout; a device's failure
/// goes on its alert, Outpost's own ends the job.
async fn pull_all(
    ctx: &JobContext,
    account: &LocalAccount,
    targets: Vec<Target>,
) -> Result<Tally, JobError> {
    let worker = &ctx.worker;
    let total = targets.len() as u64;
    ctx.progress(0, Some(total), "pulling from devices");
    let timeout = Duration::from_secs(worker.settings.pull.device_timeout_secs);
    let mut outcomes = futures_util::stream::iter(targets)
        .map(|target| async move {
            let outcome = tokio::time::timeout(timeout, pull_one(ctx, account, &target))
                .await
                .unwrap_or_else(|_| {
                    Err(Failure::Device(PullError::Unreachable(format!(
                        "no complete answer within {} s",
                        timeout.as_secs()
                    ))))
                });
            (target.id, outcome)
        })
        .buffer_unordered(worker.settings.pull.concurrency);
    let mut tally = Tally::default();
    let mut done = 0u64;
    while let Some((pi, outcome)) = outcomes.next().await {
        done += 1;
        match outcome {
            Ok(pulled) => {
                tally.collected += 1;
                tally.reports_new += pulled.new;
                tally.acks_installed += pulled.acks_installed;
            }
            Err(Failure::Device(error)) => {
                *tally.failures.entry(kind_of(&error)).or_default() += 1;
                let mut conn = worker.pool.get().await?;
                let now = worker.clock.now();
                pull::failed(&mut conn, account.id, pi, &error.to_string(), now).await?;
            }
            Err(Failure::Internal(e)) => return Err(e.into()),
        }
        ctx.progress(done, Some(total), "pulling from devices");
    }
    Ok(tally)
}

fn kind_of(error: &PullError) -> &'static str {
    match error {
        PullError::Unreachable(_) => "unreachable",
        PullError::AuthFailed(_) => "auth_failed",
        PullError::BadResponse(_) => "bad_response",
        PullError::CertificateChanged(_) => "certificate_changed",
        PullError::HostKeyChanged(_) => "host_key_changed",
        PullError::NotConfigured(_) => "not_configured",
    }
}

/// One device: install waiting ACKs, collect reports, store them.
async fn pull_one(
    ctx: &JobContext,
    account: &LocalAccount,
    target: &Target,
) -> Result<Pulled, Failure> {
    let worker = &ctx.worker;
    let Some(host) = &target.host else {
        return Err(PullError::NotConfigured("no host".into()).into());
    };
    let Some(sealed) = &target.credentials else {
        return Err(PullError::NotConfigured("no credentials".into()).into());
    };
    let credentials = worker
        .credentials
        .open(sealed, account.id.0.as_bytes())
        .map_err(|_| {
            PullError::NotConfigured(
                "the stored credentials cannot be opened with this Outpost's key".into(),
            )
        })?;
    let timeout = Duration::from_secs(worker.settings.pull.device_timeout_secs);
    let pinned = target.peer_fingerprint.clone();
    let waiting = acks::undelivered(&mut *worker.pool.get().await?, target.id).await?;
    match target.connect_method {
        method @ (ConnectMethod::Rest | ConnectMethod::Restconf) => {
            let plain = target.plain_http;
            let mut device =
                RestDevice::new(host, target.port, plain, credentials, pinned, timeout)?;
            if method == ConnectMethod::Rest {
                rest_one(ctx, account, target, &device, &waiting).await
            } else {
                by_rpc(ctx, account, target, &mut device, &waiting).await
            }
        }
        ConnectMethod::Netconf => {
            let mut device =
                NetconfDevice::connect(host, target.port, &credentials, pinned, timeout).await?;
            let pulled = by_rpc(ctx, account, target, &mut device, &waiting).await;
            // Not within the device's time: what was pulled is stored already, so a device
            // slow to say goodbye must not turn the pull into a failure.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), device.close()).await;
            });
            pulled
        }
        ConnectMethod::Push => {
            Err(PullError::NotConfigured("the device pushes its reports".into()).into())
        }
    }
}

/// One device over the native REST API: install waiting ACKs with `import`, then
/// `close-reports` and `all-reports`, and store the reports through report intake.
async fn rest_one(
    ctx: &JobContext,
    account: &LocalAccount,
    target: &Target,
    device: &RestDevice,
    waiting: &[(AckId, String)],
) -> Result<Pulled, Failure> {
    let worker = &ctx.worker;
    let mut pulled = Pulled::default();
    for (ack, file) in waiting {
        device.import(file).await?;
        acks::mark_delivered(&mut *worker.pool.get().await?, *ack, worker.clock.now()).await?;
        pulled.acks_installed += 1;
    }
    let reports = device.collect().await?;
    pulled.reports = reports.len();
    let now = worker.clock.now();
    let fingerprint = device.fingerprint();
    let pi = PulledPi {
        account: account.id,
        id: target.id,
        udi_pid: target.udi_pid.as_deref(),
        udi_serial_number: target.udi_serial_number.as_deref(),
    };
    let mut conn = worker.pool.get().await?;
    let stored = conn
        .transaction::<_, AppError, _>(async |conn| {
            let stored = intake::store_collected(conn, pi, &reports, None, now).await?;
            pull::succeeded(conn, account.id, target, fingerprint.as_deref(), now).await?;
            Ok(stored)
        })
        .await?;
    pulled.new = stored.map_or(0, |s| s.new);
    Ok(pulled)
}

/// A device that takes `cisco-smart-license` RPCs: over RESTCONF or NETCONF.
trait RpcDevice {
    /// Calls the RPC; `Ok` when the device says it succeeded.
    async fn call(&mut self, rpc: &Rpc) -> Result<(), PullError>;
    /// The certificate or host key the device presented.
    fn presented(&self) -> Option<String>;
}

impl RpcDevice for RestDevice {
    async fn call(&mut self, rpc: &Rpc) -> Result<(), PullError> {
        self.rpc(rpc).await
    }
    fn presented(&self) -> Option<String> {
        self.fingerprint()
    }
}

impl RpcDevice for NetconfDevice {
    async fn call(&mut self, rpc: &Rpc) -> Result<(), PullError> {
        self.rpc(rpc).await
    }
    fn presented(&self) -> Option<String> {
        self.fingerprint()
    }
}

/// A one-time URL of the device listener for `target`, serving `file` (an ACK to download)
/// or taking an upload (`None`); it lives twice the device timeout.
async fn one_time_url(
    ctx: &JobContext,
    account: &LocalAccount,
    target: &Target,
    file: Option<&str>,
) -> Result<(String, String), Failure> {
    let worker = &ctx.worker;
    let lifetime = chrono::Duration::seconds(
        i64::try_from(worker.settings.pull.device_timeout_secs.saturating_mul(2)).unwrap_or(120),
    );
    let now = worker.clock.now();
    let mut conn = worker.pool.get().await?;
    let token =
        pull::create_drop(&mut conn, account.id, target.id, file, now + lifetime, now).await?;
    let name = if file.is_some() { "ack.xml" } else { "rum.xml" };
    let url = format!(
        "{}/pull-drop/{token}/{name}",
        worker.settings.public_base_url()
    );
    Ok((token, url))
}

/// Whether the device used the one-time URL.
async fn used(conn: &mut AsyncPgConnection, token: &str) -> Result<Option<pull::Drop>, Failure> {
    Ok(pull::drop_state(conn, token)
        .await?
        .filter(|d| d.used_at.is_some()))
}

/// One device over RESTCONF or NETCONF: each waiting ACK through a one-time download URL and
/// `import-file`, then `rum-save-usage-unreported` to a one-time upload URL, where the device
/// listener stores the file through report intake as it arrives.
async fn by_rpc(
    ctx: &JobContext,
    account: &LocalAccount,
    target: &Target,
    device: &mut impl RpcDevice,
    waiting: &[(AckId, String)],
) -> Result<Pulled, Failure> {
    let worker = &ctx.worker;
    let mut pulled = Pulled::default();
    for (ack, file) in waiting {
        let (token, file_path) = one_time_url(ctx, account, target, Some(file)).await?;
        device.call(&Rpc::ImportFile { file_path }).await?;
        let mut conn = worker.pool.get().await?;
        if used(&mut conn, &token).await?.is_none() {
            return Err(PullError::BadResponse(
                "import-file succeeded but the device never fetched the ACK from Outpost".into(),
            )
            .into());
        }
        acks::mark_delivered(&mut conn, *ack, worker.clock.now()).await?;
        pulled.acks_installed += 1;
    }
    let (token, file_path) = one_time_url(ctx, account, target, None).await?;
    device
        .call(&Rpc::RumSaveUsageUnreported { file_path })
        .await?;
    let mut conn = worker.pool.get().await?;
    let Some(upload) = used(&mut conn, &token).await? else {
        return Err(PullError::BadResponse(
            "rum-save-usage-unreported succeeded but no RUM file reached Outpost".into(),
        )
        .into());
    };
    pulled.reports = usize::try_from(upload.reports.unwrap_or(0)).unwrap_or(0);
    pulled.new = usize::try_from(upload.reports_new.unwrap_or(0)).unwrap_or(0);
    let now = worker.clock.now();
    let presented = device.presented();
    pull::succeeded(&mut conn, account.id, target, presented.as_deref(), now).await?;
    Ok(pulled)
}
