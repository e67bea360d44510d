//! The `webhook_delivery` job: POSTs one event to one webhook endpoint, signed, and logs the
//! attempt. A failure (no answer, or not 2xx) is retried with the runner's backoff until the
//! job's attempts run out; then the delivery is marked failed.
//!
//! Signature [ours, after the common `t=...,v1=...` scheme]: header
//! `X-Outpost-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed with the
//! webhook's secret, so a receiver can check both the body and its age.

use std::time::Instant;

use outpost_core::crypto::hmac_sha256_hex;
use outpost_db::jobs::catalog::WebhookDelivery;
use outpost_db::webhooks::{self, AttemptOutcome};
use serde_json::{Value, json};

use super::{JobContext, JobError, RunJob};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Outpost-Signature";

/// The signature header's value for a body sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mac = hmac_sha256_hex(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={mac}")
}

impl RunJob for WebhookDelivery {
    async fn run(self, ctx: &JobContext) -> Result<Value, JobError> {
        let worker = &ctx.worker;
        let mut conn = worker.pool.get().await?;
        let Some(out) = webhooks::outgoing(&mut conn, self.delivery_id).await? else {
            return Ok(json!({ "message": "the webhook was removed; nothing sent" }));
        };
        if out.state != "pending" {
            return Ok(json!({ "message": format!("already {}", out.state) }));
        }
        // The connection goes back to the pool while the endpoint takes its time.
        drop(conn);
        if let Some(refusal) = private_literal(&out.url, &worker.settings.webhooks) {
            // An address literal skips the resolver's check; refuse it here, finally.
            let outcome = AttemptOutcome {
                status_code: None,
                error: Some(refusal.clone()),
                duration_ms: 0,
                delivered: false,
                last: true,
            };
            let mut conn = worker.pool.get().await?;
            webhooks::record_attempt(&mut conn, self.delivery_id, &outcome, worker.clock.now())
                .await?;
            return Err(JobError::Fatal(refusal));
        }
        let secret = outpost_app::secrets::open_webhook_secret(
            &worker.credentials,
            out.account_id,
            &out.secret,
        )?;
        let now = worker.clock.now();
        let started = Instant::now();
        let sent = worker
            .webhooks
            .post(&out.url)
            .header("Content-Type", "application/json")
            .header("X-Outpost-Event", &out.event)
            .header("X-Outpost-Delivery", self.delivery_id.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(&secret, now.timestamp(), &out.body),
            )
            .body(out.body.clone())
            .send()
            .await;
        let duration_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let (status_code, error) = match &sent {
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None)
            }
            Ok(response) => (
                Some(response.status().as_u16()),
                Some(format!("the endpoint answered HTTP {}", response.status())),
            ),
            Err(e) => (None, Some(crate::cssm_client::describe(e))),
        };
        let outcome = AttemptOutcome {
            status_code,
            error: error.clone(),
            duration_ms,
            delivered: error.is_none(),
            last: ctx.job.attempts >= ctx.job.max_attempts,
        };
        let mut conn = worker.pool.get().await?;
        webhooks::record_attempt(&mut conn, self.delivery_id, &outcome, worker.clock.now()).await?;
        match error {
            None => Ok(json!({
                "status_code": status_code,
                "attempt": ctx.job.attempts,
                "message": format!("delivered to {} on attempt {}", out.url, ctx.job.attempts),
            })),
            Some(error) => Err(JobError::Retry(format!("{}: {error}", out.url))),
        }
    }
}

/// Why a URL naming a non-public address literal may not be called, if it may not.
fn private_literal(
    url: &str,
    settings: &outpost_core::settings::WebhookSettings,
) -> Option<String> {
    if settings.allow_private_addresses {
        return None;
    }
    let host = reqwest::Url::parse(url).ok()?.host_str()?.to_owned();
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    (!outpost_core::net::is_public_ip(ip)).then(|| {
        format!("{host} is not a public address (webhooks.allow_private_addresses is off)")
    })
}
