//! `outpost admin ...`: onboarding and operations from the command line. Each command parses
//! its arguments, calls the use case of `outpost_app` the admin API calls for the same thing
//! (same rules, same messages) and prints the outcome. Commands talk to the database directly
//! (starting the embedded PostgreSQL if `outpost serve` is not running).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use outpost_app::accounts::{self, AccountUpdate, NewAccount};
use outpost_app::{jobs as work, settings as switches};
use outpost_core::clock::{SharedClock, SystemClock};
use outpost_core::settings::Settings;
use outpost_core::tenant::transport_url;
use outpost_db::accounts::LocalAccount;
use outpost_db::enums::JobState;
use outpost_db::{AccountId, JobId, jobs};
use outpost_worker::WorkerContext;
use outpost_worker::runner::Runner;

use crate::database::{self, Database};

/// On or off.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        matches!(self, OnOff::On)
    }
}

/// Administration commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a local account (approved at once), register it with CSSM online, and create its
    /// default local virtual account (number 1) with its transport URL.
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
    /// Approve a local account a user requested; its requester becomes its account admin.
    Approve {
        /// Account name or id.
        account: String,
    },
    /// Register an approved local account with CSSM online.
    Register {
        /// Account name or id.
        account: String,
    },
    /// Deactivate a local account: its devices are refused with the reason until reactivated.
    Deactivate {
        /// Account name or id.
        account: String,
        /// Why (shown to administrators and devices).
        #[arg(long)]
        reason: String,
    },
    /// Reactivate a local account.
    Reactivate {
        /// Account name or id.
        account: String,
    },
    /// Rename a local account; devices configured with the old name keep reporting.
    Rename {
        /// Account name or id.
        account: String,
        /// The new name.
        new_name: String,
    },
    /// Delete a local account (refused while it holds product instances, unless --force).
    DeleteAccount {
        /// Account name or id.
        account: String,
        /// Delete it with its product instances, reports and ACKs.
        #[arg(long)]
        force: bool,
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
        /// NAT support: devices are known by UDI only and never pulled.
        #[arg(long)]
        nat_support: Option<OnOff>,
    },
}

/// Runs an admin command.
pub async fn run(settings: Settings, command: AdminCommand) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let db = database::open(&settings, false).await?;
    let admin = Admin {
        settings,
        clock: Arc::new(SystemClock),
        db: &db,
    };
    let result = admin.dispatch(command).await;
    db.close(false).await;
    result
}

/// What every command needs.
struct Admin<'a> {
    settings: Arc<Settings>,
    clock: SharedClock,
    db: &'a Database,
}

/// How a command-line user appears in event logs.
pub fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
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

/// An account name quoted for a shell command line.
fn quoted(name: &str) -> String {
    format!("'{}'", name.replace('\'', "'\\''"))
}

impl Admin<'_> {
    async fn dispatch(&self, command: AdminCommand) -> anyhow::Result<()> {
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
                let (hour, minute) = parse_time(&sync_at).context("--sync-at")?;
                let new = NewAccount {
                    email,
                    time_zone,
                    sync: (sync_every_days, hour, minute),
                    ..NewAccount::new(&name, &smart_account, &virtual_account)
                };
                self.create_account(&new, offline).await
            }
            AdminCommand::Approve { account } => self.lifecycle(&account, Step::Approve).await,
            AdminCommand::Register { account } => {
                let account = self.account(&account).await?;
                self.register(&account).await?;
                self.print_account(account.id).await
            }
            AdminCommand::Deactivate { account, reason } => {
                self.lifecycle(&account, Step::Deactivate(reason)).await
            }
            AdminCommand::Reactivate { account } => {
                self.lifecycle(&account, Step::Reactivate).await
            }
            AdminCommand::Rename { account, new_name } => {
                self.lifecycle(&account, Step::Rename(new_name)).await
            }
            AdminCommand::DeleteAccount { account, force } => {
                let account = self.account(&account).await?;
                let mut conn = self.db.pool.get().await?;
                let now = self.clock.now();
                let deleted = accounts::delete(&mut conn, account.id, force, &actor(), now).await?;
                println!(
                    "deleted local account '{}' with {} product instance(s) and {} local virtual account(s)",
                    deleted.name,
                    deleted.product_instances_removed,
                    deleted.virtual_accounts_removed
                );
                Ok(())
            }
            AdminCommand::ListAccounts => self.list_accounts().await,
            AdminCommand::Sync { account, wait } => self.sync(&account, wait).await,
            AdminCommand::Files(command) => {
                crate::files::run(&self.settings, self.db, command).await
            }
            AdminCommand::Settings {
                validate_device,
                nat_support,
            } => self.switches(validate_device, nat_support).await,
        }
    }

    /// An account by name or id.
    async fn account(&self, key: &str) -> anyhow::Result<LocalAccount> {
        let mut conn = self.db.pool.get().await?;
        Ok(accounts::find(&mut conn, key).await?)
    }

    fn worker(&self) -> anyhow::Result<Arc<WorkerContext>> {
        Ok(Arc::new(WorkerContext::new(
            self.db.pool.clone(),
            self.db.url.clone(),
            self.settings.clone(),
            self.clock.clone(),
        )?))
    }

    async fn create_account(&self, new: &NewAccount, offline: bool) -> anyhow::Result<()> {
        let mut conn = self.db.pool.get().await?;
        let account = accounts::create(&mut conn, new, None, &actor(), self.clock.now()).await?;
        drop(conn);
        println!("created local account '{}' ({})", account.name, account.id);
        if offline {
            println!(
                "not registered yet (air-gapped): run `outpost admin registration-request {}` and carry the file to CSSM",
                quoted(&account.name)
            );
        } else {
            self.register(&account).await.map_err(|e| {
                anyhow!(
                    "{e}\nthe account exists but is not registered; fix the cause and run `outpost admin register {}`",
                    quoted(&account.name)
                )
            })?;
        }
        self.print_account(account.id).await
    }

    async fn register(&self, account: &LocalAccount) -> anyhow::Result<()> {
        let ctx = self.worker()?;
        let registered = outpost_worker::registration::register_online(&ctx, account.id, &actor())
            .await
            .map_err(|e| match e {
                // A refusal is reported as the use case's, like any other command's.
                outpost_worker::registration::RegistrationError::App(e) => anyhow::Error::new(e),
                other => anyhow::Error::new(other),
            })?;
        println!(
            "registered '{}' with CSSM (Smart Account '{}', Virtual Account '{}')",
            registered.name, registered.smart_account, registered.virtual_account
        );
        Ok(())
    }

    async fn lifecycle(&self, key: &str, step: Step) -> anyhow::Result<()> {
        let account = self.account(key).await?;
        let mut conn = self.db.pool.get().await?;
        let (actor, now) = (actor(), self.clock.now());
        let (id, done) = (account.id, step.done());
        let changed = match step {
            Step::Approve => accounts::approve(&mut conn, id, &actor, now).await?,
            Step::Deactivate(reason) => {
                accounts::deactivate(&mut conn, id, &reason, &actor, now).await?
            }
            Step::Reactivate => accounts::reactivate(&mut conn, id, &actor, now).await?,
            Step::Rename(name) => {
                let update = AccountUpdate {
                    name: Some(name),
                    email: None,
                };
                accounts::update(&mut conn, id, &update, &actor, now).await?
            }
        };
        drop(conn);
        println!(
            "local account '{}' {done}; it is {}",
            changed.name, changed.status
        );
        self.print_account(changed.id).await
    }

    async fn list_accounts(&self) -> anyhow::Result<()> {
        let mut conn = self.db.pool.get().await?;
        let list = outpost_db::accounts::list_accounts(&mut conn).await?;
        drop(conn);
        if list.is_empty() {
            println!("no local accounts yet: create one with `outpost admin create-account`");
        }
        for account in list {
            self.print_account(account.id).await?;
        }
        Ok(())
    }

    async fn sync(&self, key: &str, wait: bool) -> anyhow::Result<()> {
        let account = self.account(key).await?;
        let mut conn = self.db.pool.get().await?;
        let attempts = self.settings.worker.max_attempts;
        let queued =
            work::request_sync(&mut conn, account.id, &actor(), attempts, self.clock.now()).await?;
        drop(conn);
        let again = if queued.already_queued {
            " (it was already queued)"
        } else {
            ""
        };
        println!(
            "sync of '{}' queued as job {}{again}",
            account.name, queued.job_id
        );
        if self.db.started_here {
            // No `outpost serve` is running, so nobody else would pick the job up.
            println!("no Outpost server is running; running the sync in this process");
            Runner::new(self.worker()?).run_until_idle().await?;
            return self.report_job(queued.job_id).await;
        }
        if wait {
            return self.wait_for(queued.job_id).await;
        }
        Ok(())
    }

    async fn switches(
        &self,
        validate_device: Option<OnOff>,
        nat_support: Option<OnOff>,
    ) -> anyhow::Result<()> {
        let mut conn = self.db.pool.get().await?;
        let now = self.clock.now();
        let current = if validate_device.is_none() && nat_support.is_none() {
            switches::switches(&mut conn).await?
        } else {
            let (validate, nat) = (validate_device.map(OnOff::on), nat_support.map(OnOff::on));
            switches::set_switches(&mut conn, validate, nat, &actor(), now).await?
        };
        let word = |on: bool| if on { "on" } else { "off" };
        println!("validate_device = {}", word(current.validate_device));
        println!("nat_support = {}", word(current.nat_support));
        Ok(())
    }

    async fn print_account(&self, id: AccountId) -> anyhow::Result<()> {
        let mut conn = self.db.pool.get().await?;
        let account = outpost_db::accounts::find_account(&mut conn, id).await?;
        println!(
            "\n{}  [{}]\n  id: {}\n  Smart Account / Virtual Account: {} / {}",
            account.name,
            account.status,
            account.id,
            account.smart_account,
            account.virtual_account
        );
        let base = self.settings.public_base_url();
        for lva in outpost_db::accounts::list_lvas(&mut conn, id).await? {
            let url = transport_url(&base, &lva.tenant_id);
            println!(
                "  local virtual account {} '{}': tenant id {}\n    transport URL: {url}\n    device configuration:\n      license smart transport cslu\n      license smart url cslu {url}",
                lva.number, lva.name, lva.tenant_id
            );
        }
        Ok(())
    }

    async fn report_job(&self, job_id: JobId) -> anyhow::Result<()> {
        let mut conn = self.db.pool.get().await?;
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

    async fn wait_for(&self, job_id: JobId) -> anyhow::Result<()> {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        loop {
            let mut conn = self.db.pool.get().await?;
            let job = jobs::find(&mut conn, job_id).await?;
            drop(conn);
            let progress = job
                .progress
                .as_ref()
                .and_then(|p| p["message"].as_str())
                .unwrap_or("");
            let message = match job.state {
                JobState::Queued if job.last_error.is_some() => format!(
                    "attempt {} failed ({}); retrying at {}",
                    job.attempts,
                    job.last_error.as_deref().unwrap_or(""),
                    job.run_at
                ),
                JobState::Queued => "waiting for a worker".to_owned(),
                JobState::Running => format!("running (attempt {}) {progress}", job.attempts),
                JobState::Succeeded | JobState::Failed | JobState::Cancelled => {
                    bar.finish_and_clear();
                    return self.report_job(job_id).await;
                }
            };
            bar.set_message(message);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A lifecycle change of an account.
enum Step {
    Approve,
    Deactivate(String),
    Reactivate,
    Rename(String),
}

impl Step {
    fn done(&self) -> &'static str {
        match self {
            Step::Approve => "approved",
            Step::Deactivate(_) => "deactivated",
            Step::Reactivate => "reactivated",
            Step::Rename(_) => "renamed",
        }
    }
}
