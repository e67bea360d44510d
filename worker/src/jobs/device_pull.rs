//! The `device_pull` job, "Synchronise now with the device": for each device of an account that
//! Outpost pulls from, install the ACKs waiting for it, then collect its RUM reports and store
//! them exactly as pushed ones. Devices are pulled a few at a time (`pull.concurrency`), each
//! within `pull.device_timeout_secs`, so one unreachable device never stalls the rest; a failure
//! leaves a "Pull failed: <reason>" alert on that device, and a success clears it. Devices
//! behind NAT are never pulled.
//!
//! Over the native REST API, RESTCONF and NETCONF over SSH: RESTCONF and NETCONF devices upload
//! their RUM file to, and read ACKs from, one-time Outpost URLs.

use std::time::Duration;

use futures_util::StreamExt;
use outpost_core::Sudi;
use outpost_db::accounts::{self, LocalAccount};
use outpost_db::enums::{AccountStatus, ConnectMethod, EventResult, ReportSource};
use outpost_db::events::{self, NewEvent};
use outpost_db::jobs::catalog::DevicePull;
use outpost_db::pull::{self, Target};
use outpost_db::{AckId, AsyncConnection, DbError, acks, intake};
use serde_json::{Value, json};

use super::{JobContext, JobError, RunJob};
use outpost_core::device_rpc::Rpc;

use crate::netconf::NetconfDevice;
use crate::pull::{PullError, RestDevice};

/// What one device's pull gave.
#[derive(Debug, Default)]
struct Pulled {
    reports: usize,
    new: usize,
    acks_installed: usize,
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
        ctx.progress(0, Some(total), "pulling from devices");
        let timeout = Duration::from_secs(worker.settings.pull.device_timeout_secs);
        let mut outcomes = futures_util::stream::iter(targets)
            .map(|target| {
                let account = &account;
                async move {
                    let outcome = tokio::time::timeout(timeout, pull_one(ctx, account, &target))
                        .await
                        .unwrap_or_else(|_| {
                            Err(PullError::Unreachable(format!(
                                "no complete answer within {} s",
                                timeout.as_secs()
                            )))
                        });
                    (target.id, outcome)
                }
            })
            .buffer_unordered(worker.settings.pull.concurrency);
        let (mut collected, mut reports_new, mut acks_installed) = (0u64, 0usize, 0usize);
        let mut failures: std::collections::BTreeMap<&'static str, u64> = Default::default();
        let mut done = 0u64;
        while let Some((pi, outcome)) = outcomes.next().await {
            done += 1;
            let now = worker.clock.now();
            let mut conn = worker.pool.get().await?;
            match outcome {
                Ok(pulled) => {
                    collected += 1;
                    reports_new += pulled.new;
                    acks_installed += pulled.acks_installed;
                }
                Err(error) => {
                    *failures.entry(kind_of(&error)).or_default() += 1;
                    pull::failed(&mut conn, account.id, pi, &error.to_string(), now).await?;
                }
            }
            ctx.progress(done, Some(total), "pulling from devices");
        }
        drop(outcomes);
        let failed: u64 = failures.values().sum();
        let message = format!(
            "{collected} of {total} devices pulled ({reports_new} new reports, {acks_installed} ACKs installed); {failed} failed; {} behind NAT not pulled",
            behind_nat.len(),
        );
        let result = json!({
            "devices": total,
            "collected": collected,
            "failed": failures,
            "reports_new": reports_new,
            "acks_installed": acks_installed,
            "behind_nat_skipped": behind_nat.len(),
            "message": message,
        });
        let mut conn = worker.pool.get().await?;
        let outcome = if failed == 0 {
            EventResult::Ok
        } else {
            EventResult::Failed
        };
        events::record(
            &mut conn,
            &NewEvent::account(
                account.id,
                "system",
                "device.pull",
                outcome,
                result.clone(),
                worker.clock.now(),
            ),
        )
        .await?;
        Ok(result)
    }
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
) -> Result<Pulled, PullError> {
    let worker = &ctx.worker;
    let db = |e: DbError| PullError::NotConfigured(format!("database: {e}"));
    let Some(host) = &target.host else {
        return Err(PullError::NotConfigured("no host".into()));
    };
    let Some(sealed) = &target.credentials else {
        return Err(PullError::NotConfigured("no credentials".into()));
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
    let waiting: Vec<(AckId, String)> = {
        let mut conn = worker.pool.get().await.map_err(db)?;
        acks::undelivered(&mut conn, target.id).await.map_err(db)?
    };
    match target.connect_method {
        method @ (ConnectMethod::Rest | ConnectMethod::Restconf) => {
            let mut device = RestDevice::new(
                host,
                target.port,
                target.plain_http,
                credentials,
                pinned,
                timeout,
            )?;
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
        ConnectMethod::Push => Err(PullError::NotConfigured(
            "the device pushes its reports".into(),
        )),
    }
}

/// One device over the native REST API: install waiting ACKs with `import`, then
/// `close-reports` and `all-reports`, and store the reports as pushed ones.
async fn rest_one(
    ctx: &JobContext,
    account: &LocalAccount,
    target: &Target,
    device: &RestDevice,
    waiting: &[(AckId, String)],
) -> Result<Pulled, PullError> {
    let worker = &ctx.worker;
    let db = |e: DbError| PullError::NotConfigured(format!("database: {e}"));
    let mut pulled = Pulled::default();
    for (ack, file) in waiting {
        device.import(file).await?;
        let mut conn = worker.pool.get().await.map_err(db)?;
        acks::mark_delivered(&mut conn, *ack, worker.clock.now())
            .await
            .map_err(db)?;
        pulled.acks_installed += 1;
    }
    let reports = device.collect().await?;
    pulled.reports = reports.len();

    // The device is whoever its reports say, for a PI added by host.
    let sender = match (&target.udi_pid, &target.udi_serial_number) {
        (Some(pid), Some(serial)) => Sudi::new(pid.clone(), serial.clone()),
        _ => match reports.first().and_then(|r| r.facts().ok()) {
            Some(facts) => facts.instance.clone(),
            None => {
                let mut conn = worker.pool.get().await.map_err(db)?;
                pull::succeeded(
                    &mut conn,
                    account.id,
                    target,
                    device.fingerprint().as_deref(),
                    worker.clock.now(),
                )
                .await
                .map_err(db)?;
                return Ok(pulled);
            }
        },
    };
    let now = worker.clock.now();
    let prepared = intake::prepare(account.id, &sender, &reports, ReportSource::Pull, now)
        .map_err(PullError::BadResponse)?;
    let fingerprint = device.fingerprint();
    let mut conn = worker.pool.get().await.map_err(db)?;
    let stored = conn
        .transaction::<_, TxFailure, _>(async |conn| {
            if !pull::identify(conn, account.id, target.id, &sender).await? {
                return Err(TxFailure::Refused(format!(
                    "its reports are from {sender}, which is already another product instance of this account"
                )));
            }
            let stored = if prepared.is_empty() {
                None
            } else {
                Some(intake::store(conn, account.id, target.id, prepared, now).await?)
            };
            pull::succeeded(conn, account.id, target, fingerprint.as_deref(), now).await?;
            Ok(stored)
        })
        .await
        .map_err(|e| match e {
            TxFailure::Refused(m) => PullError::BadResponse(m),
            TxFailure::Db(e) => db(e),
        })?;
    pulled.new = stored.map_or(0, |s| s.new);
    Ok(pulled)
}

enum TxFailure {
    Refused(String),
    Db(DbError),
}

impl From<DbError> for TxFailure {
    fn from(e: DbError) -> Self {
        TxFailure::Db(e)
    }
}

impl From<outpost_db::QueryError> for TxFailure {
    fn from(e: outpost_db::QueryError) -> Self {
        TxFailure::Db(e.into())
    }
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

/// One device over RESTCONF or NETCONF: each waiting ACK through a one-time download URL and
/// `import-file`, then `rum-save-usage-unreported` to a one-time upload URL, where the device
/// listener stores the file as it arrives.
async fn by_rpc(
    ctx: &JobContext,
    account: &LocalAccount,
    target: &Target,
    device: &mut impl RpcDevice,
    waiting: &[(AckId, String)],
) -> Result<Pulled, PullError> {
    let worker = &ctx.worker;
    let db = |e: DbError| PullError::NotConfigured(format!("database: {e}"));
    let base = worker.settings.public_base_url();
    let lifetime = chrono::Duration::seconds(
        i64::try_from(worker.settings.pull.device_timeout_secs.saturating_mul(2)).unwrap_or(120),
    );
    let mut pulled = Pulled::default();
    for (ack, file) in waiting {
        let now = worker.clock.now();
        let token = {
            let mut conn = worker.pool.get().await.map_err(db)?;
            pull::create_drop(
                &mut conn,
                account.id,
                target.id,
                Some(file),
                now + lifetime,
                now,
            )
            .await
            .map_err(db)?
        };
        let file_path = format!("{base}/pull-drop/{token}/ack.xml");
        device.call(&Rpc::ImportFile { file_path }).await?;
        let mut conn = worker.pool.get().await.map_err(db)?;
        let fetched = pull::drop_state(&mut conn, &token)
            .await
            .map_err(db)?
            .is_some_and(|d| d.used_at.is_some());
        if !fetched {
            return Err(PullError::BadResponse(
                "import-file succeeded but the device never fetched the ACK from Outpost".into(),
            ));
        }
        acks::mark_delivered(&mut conn, *ack, worker.clock.now())
            .await
            .map_err(db)?;
        pulled.acks_installed += 1;
    }
    let now = worker.clock.now();
    let token = {
        let mut conn = worker.pool.get().await.map_err(db)?;
        pull::create_drop(&mut conn, account.id, target.id, None, now + lifetime, now)
            .await
            .map_err(db)?
    };
    let file_path = format!("{base}/pull-drop/{token}/rum.xml");
    device
        .call(&Rpc::RumSaveUsageUnreported { file_path })
        .await?;
    let mut conn = worker.pool.get().await.map_err(db)?;
    let Some(upload) = pull::drop_state(&mut conn, &token)
        .await
        .map_err(db)?
        .filter(|d| d.used_at.is_some())
    else {
        return Err(PullError::BadResponse(
            "rum-save-usage-unreported succeeded but no RUM file reached Outpost".into(),
        ));
    };
    pulled.reports = usize::try_from(upload.reports.unwrap_or(0)).unwrap_or(0);
    pulled.new = usize::try_from(upload.reports_new.unwrap_or(0)).unwrap_or(0);
    pull::succeeded(
        &mut conn,
        account.id,
        target,
        device.presented().as_deref(),
        worker.clock.now(),
    )
    .await
    .map_err(db)?;
    Ok(pulled)
}
