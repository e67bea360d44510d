//! `outpost admin` commands for air-gapped sites: usage export and ACK import (with a progress
//! bar and a summary), offline registration files, and device files.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use outpost_app::offline::{device_files, export, import};
use outpost_app::{accounts, registration};
use outpost_core::settings::Settings;
use outpost_db::{ProductInstanceId, product_instances};

use crate::admin::actor;
use crate::database::Database;

/// File operations.
#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// "Export Usage to Cisco": write the account's usage bundle (UD_SA_<ts>.tar.gz).
    ExportUsage {
        /// Account name or id.
        account: String,
        /// Export every report of the last N days instead of the unsent ones.
        #[arg(long)]
        days: Option<u32>,
        /// Directory or file to write (default: the current directory).
        #[arg(long, default_value = ".")]
        output: PathBuf,
    },
    /// "Import From Cisco": apply the ACK bundle CSSM returned.
    ImportAck {
        /// Account name or id.
        account: String,
        /// The ACK bundle (tar.gz).
        file: PathBuf,
        /// Check the bundle and say what it would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the signed registration request file to carry to CSSM.
    RegistrationRequest {
        /// Account name or id.
        account: String,
        /// Directory or file to write (default: the current directory).
        #[arg(long, default_value = ".")]
        output: PathBuf,
    },
    /// Register the account from the response file CSSM issued.
    RegistrationResponse {
        /// Account name or id.
        account: String,
        /// The response file.
        file: PathBuf,
    },
    /// Store a RUM file written by `license smart save usage` as if the device had pushed it.
    UsageFile {
        /// Account name or id.
        account: String,
        /// The RUM file.
        file: PathBuf,
        /// Local virtual account number of a new device.
        #[arg(long, default_value_t = 1)]
        lva: i32,
    },
    /// Write a device's latest ACK, to install with `license smart import`.
    AckFile {
        /// Account name or id.
        account: String,
        /// The device: its UDI (PID:C9300-24UX,SN:FCW2134L00C) or its id.
        device: String,
        /// Directory or file to write (default: the current directory).
        #[arg(long, default_value = ".")]
        output: PathBuf,
    },
}

/// A directory gets the file's own name; anything else is the file to write.
fn target(output: PathBuf, name: &str) -> PathBuf {
    if output.is_dir() {
        output.join(name)
    } else {
        output
    }
}

fn bar(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} {{elapsed}}");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs a file command.
pub async fn run(
    settings: &Arc<Settings>,
    db: &Database,
    command: FileCommand,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let account_of = |key: String| async move {
        let mut conn = db.pool.get().await?;
        anyhow::Ok(accounts::find(&mut conn, &key).await?)
    };
    let key = || -> anyhow::Result<_> {
        Ok(outpost_core::secrets::CredentialKey::load_or_create(
            &settings.credentials_key_path(),
        )?)
    };
    let verifier = || -> anyhow::Result<_> {
        outpost_core::crypto::load_verifier(&settings.cssm.signing_certificate_file)
            .map_err(|e| anyhow::anyhow!("cssm.signing_certificate_file {e}"))?
            .context("cssm.signing_certificate_file is not set: Outpost cannot verify files signed by CSSM")
    };
    match command {
        FileCommand::ExportUsage {
            account,
            days,
            output,
        } => {
            let account = account_of(account).await?;
            let selection = export::selection(days, now)?;
            let path = target(output, &export::file_name(now));
            if path.exists() && !path.is_file() {
                bail!("{}: neither a directory nor a regular file", path.display());
            }
            // Written under a temporary name beside the target, made durable and renamed before
            // the reports are marked exported: a crash or a full disk leaves no half bundle and
            // no report marked for a bundle that does not exist.
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => PathBuf::from("."),
            };
            let partial = tempfile::Builder::new()
                .prefix(".UD_SA_")
                .suffix(".partial")
                .tempfile_in(&dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let target_path = path.clone();
            let finish = move |file: tempfile::NamedTempFile| {
                file.as_file().sync_all()?;
                file.persist(&target_path).map_err(|e| e.error)?;
                Ok(())
            };
            let request = export::ExportRequest {
                account: account.id,
                selection,
                now,
                actor: &actor(),
            };
            let progress = bar(0, "reports");
            let shown = progress.clone();
            let mut conn = db.pool.get().await?;
            let result =
                export::export_usage(&mut conn, &request, partial, finish, move |done, total| {
                    shown.set_length(total);
                    shown.set_position(done);
                })
                .await;
            progress.finish_and_clear();
            let ((), summary) = result?;
            println!(
                "wrote {}: {} device files ({} product instances), {} reports, {} virtual account archives, {} bytes, sha256 {}",
                path.display(),
                summary.device_files,
                summary.device_files,
                summary.reports,
                summary.virtual_accounts,
                summary.bytes,
                summary.sha256
            );
            println!(
                "carry it to CSSM, upload it there, and import the ACK bundle it returns with `outpost admin import-ack`"
            );
        }
        FileCommand::ImportAck {
            account,
            file,
            dry_run,
        } => {
            let account = account_of(account).await?;
            let verifier = verifier()?;
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("ack.tar.gz")
                .to_owned();
            let reader = std::fs::File::open(&file).with_context(|| file.display().to_string())?;
            let progress = bar(0, "ACK files verified");
            let shown = progress.clone();
            let actor = actor();
            let request = import::ImportRequest {
                account: account.id,
                file_name: &name,
                dry_run,
                now,
                actor: &actor,
                limits: settings.admin.bundle_limits(),
            };
            let mut conn = db.pool.get().await?;
            let result = import::import_ack_bundle(
                &mut conn,
                &verifier,
                &request,
                reader,
                move |done, total| {
                    shown.set_length(total);
                    shown.set_position(done);
                },
            )
            .await;
            progress.finish_and_clear();
            let summary = result?;
            let verb = if dry_run { "would import" } else { "imported" };
            println!(
                "{verb} {}: {} ACK files for {} product instances ({} with a policy), {} new ACKs, {} reports newly acknowledged, {} bytes, sha256 {}",
                summary.file_name,
                summary.ack_files,
                summary.devices,
                summary.policies,
                summary.acks_new,
                summary.reports_newly_acknowledged,
                summary.bytes,
                summary.sha256
            );
            if dry_run {
                println!("nothing was changed; run it again without --dry-run to import");
            } else if summary.acks_new > 0 {
                println!("the devices receive their ACKs with their next exchange");
            } else {
                println!("nothing new: every ACK in this file was imported before");
            }
        }
        FileCommand::RegistrationRequest { account, output } => {
            let account = account_of(account).await?;
            let mut conn = db.pool.get().await?;
            let (name, text) =
                registration::request_file(&mut conn, &key()?, account.id, &actor(), now).await?;
            let path = target(output, &name);
            std::fs::write(&path, text).with_context(|| path.display().to_string())?;
            println!(
                "wrote {}: carry it to CSSM and bring back its response file for `outpost admin registration-response`",
                path.display()
            );
        }
        FileCommand::RegistrationResponse { account, file } => {
            let account = account_of(account).await?;
            let verifier = verifier()?;
            let text =
                std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
            let mut conn = db.pool.get().await?;
            let account = registration::response_file(
                &mut conn,
                &key()?,
                &verifier,
                account.id,
                &text,
                &actor(),
                now,
            )
            .await?;
            println!(
                "registered '{}' with CSSM (Smart Account '{}', Virtual Account '{}')",
                account.name, account.smart_account, account.virtual_account
            );
        }
        FileCommand::UsageFile { account, file, lva } => {
            let account = account_of(account).await?;
            let text =
                std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
            let mut conn = db.pool.get().await?;
            let answer =
                device_files::upload_usage_file(&mut conn, account.id, lva, &text, now, &actor())
                    .await?;
            println!("{}", answer.message);
        }
        FileCommand::AckFile {
            account,
            device,
            output,
        } => {
            let account = account_of(account).await?;
            let pi = match device.parse::<ProductInstanceId>() {
                Ok(id) => id,
                Err(_) => {
                    let (pid, serial) = device
                        .strip_prefix("PID:")
                        .and_then(|rest| rest.split_once(",SN:"))
                        .context("the device is its id or its UDI, PID:<pid>,SN:<serial>")?;
                    let key = product_instances::UdiKey {
                        account_id: account.id,
                        pid,
                        serial,
                    };
                    let mut conn = db.pool.get().await?;
                    product_instances::find_by_udi(&mut conn, key)
                        .await?
                        .with_context(|| {
                            format!("no device {device} in local account '{}'", account.name)
                        })?
                        .id
                }
            };
            let mut conn = db.pool.get().await?;
            let (name, text) = device_files::ack_file(&mut conn, account.id, pi, now).await?;
            let path = target(output, &name);
            std::fs::write(&path, text).with_context(|| path.display().to_string())?;
            println!(
                "wrote {}: install it on the device with `license smart import`",
                path.display()
            );
        }
    }
    Ok(())
}
