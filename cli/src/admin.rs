//! `outpost admin ...`: onboarding and operations from the command line. Commands talk to the
//! database directly (starting the embedded PostgreSQL if `outpost serve` is not running).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use outpost_core::clock::{SharedClock, SystemClock};
use outpost_core::schedule::Schedule;
use outpost_core::settings::Settings;
use outpost_core::tenant::{transport_url, validate_account_name};
use outpost_db::accounts::{self, AccountRequest, LocalAccount};
use outpost_db::enums::{AccountStatus, EventResult, JobState};
use outpost_db::events::{self, NewEvent};
use outpost_db::jobs::{self, catalog::CssmSync};
use outpost_db::{AccountId, AsyncPgConnection, system};
use outpost_worker::WorkerContext;
use outpost_worker::runner::Runner;
use serde_json::json;

use crate::database::{self, Database};

/// On or off.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// Administration commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a local account, register it with CSSM online, and create its default local
    /// virtual account (number 1) with its transport URL.
    CreateAccount {
        /// Unique name; devices report to <public URL>/cslu/v1/pi/<name>-1.
        #[arg(long)]
        name: String,
        /// Smart Account in CSSM.
        #[arg(long)]
        smart_account: String,
        /// Virtual Account in CSSM.
        #[arg(long)]
        virtual_account: String,
        /// Notification address.
        #[arg(long, default_value = "")]
        email: String,
        /// Time zone of the account's schedules (IANA name).
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// Local time of the scheduled CSSM sync, HH:MM.
        #[arg(long, default_value = "02:00")]
        sync_at: String,
        /// Days between scheduled CSSM syncs.
        #[arg(long, default_value_t = 1)]
        sync_every_days: u16,
        /// Do not register online (air-gapped site): register with `registration-request` and
        /// `registration-response` instead.
        #[arg(long)]
        offline: bool,
    },
    /// Register an existing local account with CSSM online (after a failed attempt).
    Register {
        /// Account name or id.
        account: String,
    },
    /// List local accounts and their transport URLs.
    ListAccounts,
    /// Synchronise a local account with CSSM now.
    Sync {
        /// Account name or id.
        account: String,
        /// Wait for the sync to finish and show its progress.
        #[arg(long)]
        wait: bool,
    },
    /// Files for air-gapped sites: usage export, ACK import, offline registration, device files.
    #[command(flatten)]
    Files(crate::files::FileCommand),
    /// Show or change the global settings kept in the database.
    Settings {
        /// Device validation: refuse reports from devices not in the tenant's inventory.
        #[arg(long)]
        validate_device: Option<OnOff>,
    },
}

/// Runs an admin command.
pub async fn run(settings: Settings, command: AdminCommand) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let db = database::open(&settings, false).await?;
    let result = dispatch(&settings, &db, command).await;
    db.close(false).await;
    result
}

async fn dispatch(
    settings: &Arc<Settings>,
    db: &Database,
    command: AdminCommand,
) -> anyhow::Result<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    let worker = || -> anyhow::Result<Arc<WorkerContext>> {
        Ok(Arc::new(WorkerContext::new(
            db.pool.clone(),
            db.url.clone(),
            settings.clone(),
            clock.clone(),
        )?))
    };
    match command {
        AdminCommand::CreateAccount {
            name,
            smart_account,
            virtual_account,
            email,
            time_zone,
            sync_at,
            sync_every_days,
            offline,
        } => {
            validate_account_name(&name).map_err(|e| anyhow!("--name: {e}"))?;
            if smart_account.trim().is_empty() || virtual_account.trim().is_empty() {
                bail!("--smart-account and --virtual-account must not be empty");
            }
            let (hour, minute) = parse_time(&sync_at).context("--sync-at")?;
            let schedule = Schedule::new(sync_every_days, hour, minute, &time_zone)
                .map_err(|e| anyhow!("schedule: {e}"))?;
            let now = clock.now();
            let mut conn = db.pool.get().await?;
            let request = AccountRequest {
                name: name.clone(),
                smart_account,
                virtual_account,
                email,
                time_zone,
                status: AccountStatus::Approved,
                requested_by: None,
            };
            let (account, _) = match accounts::create_with_default_lva(
                &mut conn, &request, &schedule, now,
            )
            .await
            {
                Ok(created) => created,
                Err(e) if e.is_unique_violation() => {
                    bail!("a local account named '{name}' already exists")
                }
                Err(e) => return Err(e.into()),
            };
            record(
                &mut conn,
                account.id,
                "account.create",
                json!({ "name": account.name }),
            )
            .await?;
            drop(conn);
            println!("created local account '{}' ({})", account.name, account.id);
            if offline {
                println!(
                    "not registered yet (air-gapped): run `outpost admin registration-request '{}'` and carry the file to CSSM",
                    account.name.replace('\'', "'\\''")
                );
            } else {
                register(&*worker()?, &account).await?;
            }
            print_account(settings, db, account.id).await
        }
        AdminCommand::Register { account } => {
            let mut conn = db.pool.get().await?;
            let account = find_account(&mut conn, &account).await?;
            drop(conn);
            register(&*worker()?, &account).await?;
            print_account(settings, db, account.id).await
        }
        AdminCommand::ListAccounts => {
            let mut conn = db.pool.get().await?;
            let list = accounts::list_accounts(&mut conn).await?;
            drop(conn);
            if list.is_empty() {
                println!("no local accounts yet: create one with `outpost admin create-account`");
            }
            for account in list {
                print_account(settings, db, account.id).await?;
            }
            Ok(())
        }
        AdminCommand::Sync { account, wait } => {
            let mut conn = db.pool.get().await?;
            let account = find_account(&mut conn, &account).await?;
            if account.status != AccountStatus::Active {
                bail!(
                    "local account '{}' is not registered with CSSM: run `outpost admin register {}`",
                    account.name,
                    account.name
                );
            }
            let now = clock.now();
            let job = CssmSync {
                account_id: account.id,
            }
            .job(now, settings.worker.max_attempts);
            let (job_id, created) = jobs::enqueue(&mut conn, &job, now).await?;
            record(
                &mut conn,
                account.id,
                "cssm.sync_requested",
                json!({ "job_id": job_id, "already_queued": !created }),
            )
            .await?;
            drop(conn);
            println!(
                "sync of '{}' queued as job {job_id}{}",
                account.name,
                if created {
                    ""
                } else {
                    " (it was already queued)"
                }
            );
            if db.started_here {
                // No `outpost serve` is running, so nobody else would pick the job up.
                println!("no Outpost server is running; running the sync in this process");
                Runner::new(worker()?).run_until_idle().await?;
                return report_job(db, job_id).await;
            }
            if wait {
                return wait_for(db, job_id).await;
            }
            Ok(())
        }
        AdminCommand::Files(command) => crate::files::run(settings, db, command).await,
        AdminCommand::Settings { validate_device } => {
            let mut conn = db.pool.get().await?;
            if let Some(value) = validate_device {
                system::set_validate_device(&mut conn, matches!(value, OnOff::On)).await?;
            }
            let on = system::validate_device(&mut conn).await?;
            println!("validate_device = {}", if on { "on" } else { "off" });
            Ok(())
        }
    }
}

fn parse_time(text: &str) -> anyhow::Result<(u8, u8)> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("expected HH:MM, got '{text}'"))?;
    Ok((
        h.parse().with_context(|| format!("hour in '{text}'"))?,
        m.parse().with_context(|| format!("minute in '{text}'"))?,
    ))
}

/// How a command-line user appears in event logs.
pub fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// An account by id or name.
pub async fn find_account(conn: &mut AsyncPgConnection, key: &str) -> anyhow::Result<LocalAccount> {
    let found = match key.parse::<AccountId>() {
        Ok(id) => accounts::find_account(conn, id).await,
        Err(_) => accounts::find_account_by_name(conn, key).await,
    };
    match found {
        Ok(account) => Ok(account),
        Err(e) if e.is_not_found() => bail!("no local account named '{key}'"),
        Err(e) => Err(e.into()),
    }
}

async fn record(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    action: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let actor = actor();
    let event = NewEvent::account(
        account,
        actor,
        action,
        EventResult::Ok,
        detail,
        chrono::Utc::now(),
    );
    Ok(events::record(conn, &event).await?)
}

async fn register(ctx: &WorkerContext, account: &LocalAccount) -> anyhow::Result<()> {
    let actor = actor();
    match outpost_worker::registration::register_online(ctx, account.id, &actor).await {
        Ok(account) => {
            println!(
                "registered '{}' with CSSM (Smart Account '{}', Virtual Account '{}')",
                account.name, account.smart_account, account.virtual_account
            );
            Ok(())
        }
        Err(e) => bail!(
            "{e}\nthe account exists but is not registered; fix the cause and run `outpost admin register {}`",
            account.name
        ),
    }
}

async fn print_account(settings: &Settings, db: &Database, id: AccountId) -> anyhow::Result<()> {
    let mut conn = db.pool.get().await?;
    let account = accounts::find_account(&mut conn, id).await?;
    println!(
        "\n{}  [{}]\n  id: {}\n  Smart Account / Virtual Account: {} / {}",
        account.name, account.status, account.id, account.smart_account, account.virtual_account
    );
    for lva in accounts::list_lvas(&mut conn, id).await? {
        let url = transport_url(&settings.public_base_url(), &lva.tenant_id);
        println!(
            "  local virtual account {} '{}': tenant id {}\n    transport URL: {url}\n    device configuration:\n      license smart transport cslu\n      license smart url cslu {url}",
            lva.number, lva.name, lva.tenant_id
        );
    }
    Ok(())
}

async fn report_job(db: &Database, job_id: outpost_db::JobId) -> anyhow::Result<()> {
    let mut conn = db.pool.get().await?;
    let job = jobs::find(&mut conn, job_id).await?;
    match job.state {
        JobState::Succeeded => {
            let result = job.result.unwrap_or_default();
            println!(
                "sync {}: {} reports sent ({} already known to CSSM), {} ACKs stored, {} reports acknowledged, {} batches still waiting for ACKs",
                result["state"].as_str().unwrap_or("done"),
                result["reports_sent"],
                result["duplicates"],
                result["acks_received"],
                result["reports_acked"],
                result["pending_batches"],
            );
            Ok(())
        }
        JobState::Queued => bail!(
            "the sync failed and will be retried at {}: {}",
            job.run_at,
            job.last_error.unwrap_or_default()
        ),
        state => bail!("the sync {state}: {}", job.last_error.unwrap_or_default()),
    }
}

async fn wait_for(db: &Database, job_id: outpost_db::JobId) -> anyhow::Result<()> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    loop {
        let mut conn = db.pool.get().await?;
        let job = jobs::find(&mut conn, job_id).await?;
        drop(conn);
        let progress = job
            .progress
            .as_ref()
            .and_then(|p| p["message"].as_str())
            .unwrap_or("");
        let message = match job.state {
            JobState::Queued if job.last_error.is_some() => {
                format!(
                    "attempt {} failed ({}); retrying at {}",
                    job.attempts,
                    job.last_error.as_deref().unwrap_or(""),
                    job.run_at
                )
            }
            JobState::Queued => "waiting for a worker".to_owned(),
            JobState::Running => format!("running (attempt {}) {progress}", job.attempts),
            JobState::Succeeded | JobState::Failed | JobState::Cancelled => {
                bar.finish_and_clear();
                return report_job(db, job_id).await;
            }
        };
        bar.set_message(message);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
