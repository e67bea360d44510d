//! `pi-sim sink`: the cheapest server that speaks the push protocol. It answers every POST at
//! once with `OK_POLL` (echoing the nonce), or a share of them with `OK_TRY_AGAIN`, and stores
//! nothing. `pi-sim load` against it measures the generator's own ceiling.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::load::body::{mix, unit};

/// A running sink.
pub struct Sink {
    /// Its address.
    pub addr: SocketAddr,
    /// The CA of its certificate (PEM), when it serves HTTPS.
    pub ca_pem: Option<String>,
    handle: ServerHandle,
}

struct Config {
    try_again_share: f64,
    retry_after: u64,
    count: AtomicU64,
}

/// The value of `"nonce":"..."` in a request body, found without parsing it.
fn nonce_of(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = br#""nonce":""#;
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

async fn answer(body: web::Bytes, config: web::Data<Config>) -> HttpResponse {
    let nonce = nonce_of(&body).unwrap_or("");
    let n = config.count.fetch_add(1, Ordering::Relaxed);
    if unit(mix(n)) < config.try_again_share {
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", config.retry_after.to_string()))
            .content_type("application/json")
            .body(format!(
                r#"{{"status":"OK_TRY_AGAIN","nonce":"{nonce}","message":"busy","message_code":"TRY_AGAIN","poll_id":null,"retry_after":{},"data":{{}}}}"#,
                config.retry_after
            ));
    }
    HttpResponse::Ok().content_type("application/json").body(format!(
        r#"{{"status":"OK_POLL","nonce":"{nonce}","message":"usage accepted","message_code":"USAGE_ACCEPTED","poll_id":"00000000-0000-4000-8000-{:012x}","retry_after":null,"data":{{}}}}"#,
        n & 0xffff_ffff_ffff
    ))
}

impl Sink {
    /// Starts a sink on `listen` with `workers` threads; HTTPS with a fresh CA when `tls`.
    pub async fn start(
        listen: SocketAddr,
        workers: usize,
        tls: bool,
        try_again_share: f64,
        retry_after: u64,
    ) -> anyhow::Result<Self> {
        let config = web::Data::new(Config {
            try_again_share,
            retry_after,
            count: AtomicU64::new(0),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(config.clone())
                .app_data(web::PayloadConfig::new(8 * 1024 * 1024))
                .default_service(web::post().to(answer))
        })
        .workers(workers.max(1))
        .disable_signals()
        // As Outpost's device listener: without it an answer's last TLS record can wait 40 ms
        // for the client's delayed ACK.
        .tcp_nodelay(true)
        .shutdown_timeout(1);
        let (server, ca_pem) = if tls {
            let ca = outpost_core::crypto::generate_ca("pi-sim sink")?;
            let leaf = outpost_core::crypto::issue_server_certificate(
                &ca,
                &["127.0.0.1".into(), "localhost".into()],
            )?;
            let config = outpost_core::tls::server_config(&leaf.cert_pem, &leaf.key_pem)?;
            (server.bind_rustls_0_23(listen, config)?, Some(ca.cert_pem))
        } else {
            (server.bind(listen)?, None)
        };
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| anyhow::anyhow!("the sink is bound to no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            addr,
            ca_pem,
            handle,
        })
    }

    /// Stops it.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

#[cfg(test)]
mod tests {
    use super::nonce_of;

    #[test]
    fn finds_the_nonce() {
        assert_eq!(
            nonce_of(br#"{"data":{"timestamp":1,"nonce":"abc123","sudi":{}}}"#),
            Some("abc123")
        );
        assert_eq!(nonce_of(br#"{"data":{}}"#), None);
    }
}
