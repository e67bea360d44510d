//! `outpost serve` (API and worker in one process), `outpost api`, `outpost worker`, `outpost
//! migrate`. Stops cleanly on Ctrl-C or SIGTERM: listeners finish their requests, running jobs
//! get a grace period, then the embedded PostgreSQL is stopped.

use std::sync::Arc;

use anyhow::Context;
use outpost_api::Application;
use outpost_core::clock::{SharedClock, SystemClock};
use outpost_core::settings::Settings;
use outpost_core::tenant::PUSH_PATH;
use outpost_worker::WorkerContext;
use outpost_worker::runner::Runner;
use outpost_worker::scheduler::Scheduler;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::database::{self, Database};

/// Which tiers this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiers {
    /// `serve`.
    Both,
    /// `api`.
    Api,
    /// `worker`.
    Worker,
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment the process starts: a signal that
/// arrives while Outpost is still starting is kept and acted on once it is up, instead of
/// killing the process and leaving the embedded PostgreSQL behind.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Runs the tiers until a shutdown signal; `migrate`: apply pending migrations first.
pub async fn run(settings: Settings, tiers: Tiers, migrate: bool) -> anyhow::Result<()> {
    let signals = ShutdownSignals::install()?;
    let settings = Arc::new(settings);
    let db = database::open(&settings, migrate).await?;
    let result = serve(&settings, &db, tiers, signals).await;
    // `serve` owns its embedded cluster; separate tiers leave it to whoever started it.
    db.close(tiers == Tiers::Both).await;
    result
}

async fn serve(
    settings: &Arc<Settings>,
    db: &Database,
    tiers: Tiers,
    mut signals: ShutdownSignals,
) -> anyhow::Result<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    let mut summary = String::from("Outpost is running.\n");

    let mut api = None;
    if tiers != Tiers::Worker {
        let mut conn = db.pool.get().await?;
        let configured = settings.auth.initial_admin_password.expose();
        let first = outpost_app::users::ensure_first_admin(&mut conn, configured, clock.now());
        if let Some(password) = first.await? {
            summary.push_str(&format!(
                "  First admin: user \"admin\", password \"{password}\" (shown only this once; keep it safe)\n"
            ));
        }
        drop(conn);
        let tls =
            outpost_api::tls::load_or_create(settings).context("preparing TLS certificates")?;
        let app =
            Application::build(settings.clone(), db.pool.clone(), clock.clone(), &tls).await?;
        let http = app
            .device_http_addr()
            .map(|a| format!("http://{a}{PUSH_PATH}/<tenant>"))
            .unwrap_or_else(|| "off".into());
        summary.push_str(&format!(
            "  Devices:  https://{}{PUSH_PATH}/<tenant>  (plain HTTP: {http})\n  Admin:    https://{}/api/v1  (web UI /ui/, health /healthz)\n  Public transport URLs start with {}{PUSH_PATH}/\n",
            app.device_https_addr(),
            app.admin_addr(),
            settings.public_base_url(),
        ));
        if let Some(ca) = &tls.ca_file {
            summary.push_str(&format!(
                "  TLS CA:   {} (trust it on devices and API clients)\n",
                ca.display()
            ));
        }
        let handles = app.handles();
        api = Some((handles, tokio::spawn(app.run_until_stopped())));
    }

    let mut worker = None;
    if tiers != Tiers::Api {
        let ctx = Arc::new(WorkerContext::new(
            db.pool.clone(),
            db.url.clone(),
            settings.clone(),
            clock.clone(),
        )?);
        if ctx.ack_verifier.is_none() {
            tracing::warn!(
                "cssm.signing_certificate_file is not set: syncs with CSSM will fail until it is"
            );
        }
        let (stop, stopped) = watch::channel(false);
        let runner = Runner::new(ctx.clone());
        let runner_task = tokio::spawn(async move { runner.run(stopped).await });
        let scheduler = if settings.worker.schedules {
            Some(Scheduler::new(ctx).start().await?)
        } else {
            None
        };
        summary.push_str(&format!(
            "  Worker:   {} jobs at a time\n",
            settings.worker.concurrency
        ));
        worker = Some((stop, runner_task, scheduler));
    }
    summary.push_str("Press Ctrl-C to stop.");
    println!("{summary}");

    // Serve until told to stop, or until a listener fails.
    let listener_failed = async {
        match api.as_mut() {
            Some((_, task)) => match task.await {
                Ok(Ok(())) => anyhow::anyhow!("the listeners stopped"),
                Ok(Err(e)) => anyhow::anyhow!("a listener failed: {e}"),
                Err(e) => anyhow::anyhow!("the listeners crashed: {e}"),
            },
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        () = signals.recv() => Ok(()),
        e = listener_failed => Err(e),
    };
    tracing::info!("stopping");

    if let Some((handles, _)) = &api {
        for handle in handles {
            handle.stop(true).await;
        }
    }
    if let Some((stop, runner_task, scheduler)) = worker {
        let _ = stop.send(true);
        let _ = runner_task.await;
        if let Some(mut scheduler) = scheduler {
            let _ = scheduler.shutdown().await;
        }
    }
    outcome
}

/// `outpost migrate`.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = database::open(&Arc::new(settings), true).await?;
    println!("the database schema is up to date");
    db.close(false).await;
    Ok(())
}
