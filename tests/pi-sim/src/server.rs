//! The device side of pulling (`docs/protocol.md` sections 4.1 and 4.2): one HTTP server answering
//! for many simulated devices, each on a loopback port of its own over HTTPS and another over
//! plain HTTP, with the IOS-XE native REST API
//! `/smartlic-service` and the RESTCONF `cisco-smart-license` RPCs, behind HTTP Basic auth; and
//! for each device an SSH server on a port of its own with the `netconf` subsystem (RFC 6242,
//! end-of-message framing) taking the same RPCs, behind a password login. For
//! `rum-save-usage-*` a device uploads its offline RUM file to the `file-path` URL; for
//! `import-file` it reads the file there. Tests also get ports where nothing listens
//! (unreachable devices) and ports that accept connections and never answer (hung devices).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use outpost_core::device_rpc::{self, NetconfFramer, Rpc};
use outpost_core::rum::RumEnvelope;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg};
use serde_json::json;

use crate::{Device, data_of};

/// A device the farm serves, with the login its REST API takes.
#[derive(Debug, Clone)]
pub struct FarmDevice {
    /// The device.
    pub device: Device,
    /// Basic auth user.
    pub username: String,
    /// Basic auth password.
    pub password: String,
}

#[derive(Debug)]
struct Served {
    device: Device,
    username: String,
    password: String,
    /// Closed reports the device still holds (until an ACK covers them).
    reports: Vec<RumEnvelope>,
    /// Files installed with `import`.
    imported: Vec<String>,
    /// Requests answered, by path.
    calls: Vec<String>,
    /// SSH password logins tried, right or wrong.
    ssh_logins: usize,
}

type Devices = Arc<Mutex<HashMap<u16, Served>>>;

/// A device's plain HTTP port → its HTTPS port, the key of [`Devices`].
#[derive(Default)]
struct PlainPorts(Mutex<HashMap<u16, u16>>);

/// The device a request reached, by the local port it came in on.
fn device_port(req: &HttpRequest) -> u16 {
    let port = req.app_config().local_addr().port();
    req.app_data::<web::Data<PlainPorts>>()
        .and_then(|p| {
            p.0.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&port)
                .copied()
        })
        .unwrap_or(port)
}

/// What the RESTCONF handlers use to reach the URLs they are given.
struct Uplink(reqwest::Client);

fn lock(devices: &Devices) -> MutexGuard<'_, HashMap<u16, Served>> {
    devices.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running farm of simulated devices.
pub struct DeviceFarm {
    devices: Devices,
    ports: Vec<u16>,
    plain_ports: Vec<u16>,
    netconf_ports: Vec<u16>,
    /// The SHA-256 fingerprint of the devices' SSH host key (`SHA256:...`).
    pub host_key_fingerprint: String,
    handle: ServerHandle,
    /// Ports of devices that never answer (connections accepted and held).
    pub hung: Vec<u16>,
    /// Ports where nothing listens.
    pub unreachable: Vec<u16>,
    holders: Vec<tokio::task::JoinHandle<()>>,
    /// The sockets that keep the unreachable ports ours.
    _reserved: Vec<tokio::net::TcpSocket>,
}

impl std::fmt::Debug for DeviceFarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceFarm")
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

fn authorised(served: &Served, req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Some(decoded) = STANDARD
        .decode(value)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return false;
    };
    decoded == format!("{}:{}", served.username, served.password)
}

async fn smartlic(
    devices: web::Data<Devices>,
    req: HttpRequest,
    path: web::Path<String>,
    body: String,
) -> HttpResponse {
    let port = device_port(&req);
    let mut all = lock(&devices);
    let Some(served) = all.get_mut(&port) else {
        return HttpResponse::NotFound().finish();
    };
    if !authorised(served, &req) {
        return HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Basic realm=\"level_15_access\""))
            .finish();
    }
    served.calls.push(path.as_str().to_owned());
    match (req.method().as_str(), path.as_str()) {
        ("POST", "close-reports") => {
            // Closing the open measurement period makes one more report to collect.
            let report = served.device.next_report();
            served.reports.push(report);
            HttpResponse::Ok().json(json!({ "status": "closed" }))
        }
        ("GET", "all-reports") => HttpResponse::Ok()
            .content_type("application/yang-data+json")
            .json(json!({ "usage": served.reports })),
        ("POST", "import") => {
            install(served, body);
            HttpResponse::Ok().json(json!({ "status": "imported" }))
        }
        _ => HttpResponse::NotFound().finish(),
    }
}

/// Removes the reports an ACK file covers; keeps the file as installed.
fn install(served: &mut Served, file: String) {
    let acked: Vec<i64> = data_of(&file)
        .and_then(|d| d["acked_report_ids"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(serde_json::Value::as_i64)
        .collect();
    served.reports.retain(|r| {
        r.facts()
            .map(|f| !acked.contains(&f.report_id))
            .unwrap_or(true)
    });
    served.device.acks.push(file.clone());
    served.imported.push(file);
}

fn output(code: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yang-data+json")
        .json(json!({ "cisco-smart-license:output": { "return-code": code } }))
}

async fn restconf(
    devices: web::Data<Devices>,
    uplink: web::Data<Uplink>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    let port = device_port(&req);
    let Some(file_path) = body["cisco-smart-license:input"]["file-path"]
        .as_str()
        .map(str::to_owned)
    else {
        return HttpResponse::BadRequest().body("input file-path is missing");
    };
    let operation = path.into_inner();
    let Some(rpc) = operation
        .strip_prefix("cisco-smart-license:")
        .and_then(|name| Rpc::from_name(name, file_path))
    else {
        return HttpResponse::NotFound().body("unknown operation");
    };
    {
        let mut all = lock(&devices);
        let Some(served) = all.get_mut(&port) else {
            return HttpResponse::NotFound().finish();
        };
        if !authorised(served, &req) {
            return HttpResponse::Unauthorized().finish();
        }
        served.calls.push(operation.clone());
    }
    output(perform(&devices, &uplink.0, port, &rpc).await)
}

/// Carries out an RPC for the device on `port` (RESTCONF or NETCONF alike) and returns its
/// `return-code`: `rum-save-usage-*` closes a report and uploads the RUM file to the URL;
/// `import-file` reads the file there and installs it.
async fn perform(
    devices: &Devices,
    uplink: &reqwest::Client,
    port: u16,
    rpc: &Rpc,
) -> &'static str {
    // Read what the RPC needs under the lock, talk to the URL without it.
    let upload = {
        let mut all = lock(devices);
        let Some(served) = all.get_mut(&port) else {
            return "failure";
        };
        match rpc {
            Rpc::RumSaveUsageUnreported { .. } | Rpc::RumSaveUsageAll { .. } => {
                let report = served.device.next_report();
                served.reports.push(report);
                Some(served.device.offline_file(&served.reports))
            }
            Rpc::ImportFile { .. } => None,
        }
    };
    match upload {
        Some(file) => match uplink.put(rpc.file_path()).body(file).send().await {
            Ok(r) if r.status().is_success() => "success",
            _ => "commsend",
        },
        None => {
            let fetched = match uplink.get(rpc.file_path()).send().await {
                Ok(r) if r.status().is_success() => r.text().await.ok(),
                _ => None,
            };
            let Some(file) = fetched else {
                return "storagefailtoretrieve";
            };
            if let Some(served) = lock(devices).get_mut(&port) {
                install(served, file);
            }
            "success"
        }
    }
}

/// The capability announcing the module, as IOS-XE lists it in its hello.
const SMART_LICENSE_CAPABILITY: &str =
    "http://cisco.com/ns/yang/cisco-smart-license?module=cisco-smart-license&revision=2021-03-01";

/// One SSH connection to a device's NETCONF port.
struct NetconfSession {
    devices: Devices,
    uplink: reqwest::Client,
    /// The device's key in `devices` (its HTTPS port).
    port: u16,
    channel: Option<Channel<Msg>>,
}

impl russh::server::Handler for NetconfSession {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let accepted = lock(&self.devices).get_mut(&self.port).is_some_and(|d| {
            d.ssh_logins += 1;
            d.username == user && d.password == password
        });
        Ok(if accepted {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channel = Some(channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channel.take() {
            Some(open) if name == "netconf" && open.id() == channel => {
                session.channel_success(channel)?;
                tokio::spawn(serve_netconf(
                    open,
                    self.devices.clone(),
                    self.uplink.clone(),
                    self.port,
                ));
            }
            other => {
                self.channel = other;
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }
}

/// A NETCONF session on an open `netconf` subsystem: hellos, then one reply per `<rpc>` until
/// `<close-session>` or the client leaves.
async fn serve_netconf(
    mut channel: Channel<Msg>,
    devices: Devices,
    uplink: reqwest::Client,
    port: u16,
) {
    let send = async |channel: &Channel<Msg>, message: String| {
        channel
            .data(format!("{message}{}", device_rpc::NETCONF_EOM).as_bytes())
            .await
            .is_ok()
    };
    let hello = device_rpc::netconf_hello(
        &[
            device_rpc::NETCONF_BASE_CAPABILITY,
            SMART_LICENSE_CAPABILITY,
        ],
        Some(u32::from(port)),
    );
    if !send(&channel, hello).await {
        return;
    }
    let mut framer = NetconfFramer::default();
    let mut greeted = false;
    loop {
        let message = match framer.next_message() {
            Ok(Some(message)) => message,
            Ok(None) => match channel.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    framer.push(&data);
                    continue;
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
                Some(_) => continue,
            },
            Err(_) => break,
        };
        if !greeted {
            // RFC 6242: the first message is the client's hello.
            greeted = device_rpc::netconf_capabilities(&message).is_ok();
            if !greeted {
                break;
            }
            continue;
        }
        let reply = match device_rpc::parse_netconf_rpc(&message) {
            Err(e) => device_rpc::netconf_error("", "malformed-message", &e),
            Ok((id, Some(rpc))) => {
                if let Some(served) = lock(&devices).get_mut(&port) {
                    served.calls.push(format!("netconf:{}", rpc.name()));
                }
                let code = perform(&devices, &uplink, port, &rpc).await;
                device_rpc::netconf_return_code(&id, code)
            }
            Ok((id, None)) if message.contains("<close-session") => {
                let _ = send(&channel, device_rpc::netconf_reply(&id, "<ok/>")).await;
                break;
            }
            Ok((id, None)) => {
                device_rpc::netconf_error(&id, "operation-not-supported", "unknown operation")
            }
        };
        if !send(&channel, reply).await {
            break;
        }
    }
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

impl DeviceFarm {
    /// Starts the farm: `devices` answer on ports of their own, plus `hung` ports that never
    /// answer and `unreachable` ports where nothing listens.
    pub async fn start(
        devices: Vec<FarmDevice>,
        hung: usize,
        unreachable: usize,
    ) -> anyhow::Result<Self> {
        Self::start_trusting(devices, hung, unreachable, None).await
    }

    /// As [`start`](Self::start); RESTCONF devices reach the URLs they are given trusting
    /// `outpost_ca_pem` (Outpost's device listener CA).
    pub async fn start_trusting(
        devices: Vec<FarmDevice>,
        hung: usize,
        unreachable: usize,
        outpost_ca_pem: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut roots = Vec::new();
        if let Some(pem) = outpost_ca_pem {
            roots.push(pem.to_owned());
        }
        let client_tls = outpost_core::tls::client_config(&roots, false)?;
        let uplink_client = reqwest::Client::builder()
            .tls_backend_preconfigured(client_tls)
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let uplink = web::Data::new(Uplink(uplink_client.clone()));
        let ca = outpost_core::crypto::generate_ca("Simulated devices")?;
        let leaf = outpost_core::crypto::issue_server_certificate(&ca, &["127.0.0.1".into()])?;
        let tls = outpost_core::tls::server_config(&leaf.cert_pem, &leaf.key_pem)?;
        let shared: Devices = Arc::default();
        let data = web::Data::new(shared.clone());
        let plain = web::Data::new(PlainPorts::default());
        let plain_data = plain.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(plain_data.clone())
                .app_data(uplink.clone())
                // RESTCONF bodies are application/yang-data+json.
                .app_data(web::JsonConfig::default().content_type(|_| true))
                .route("/smartlic-service/{call}", web::to(smartlic))
                .route("/restconf/operations/{operation}", web::post().to(restconf))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);
        let mut ports = Vec::with_capacity(devices.len());
        let mut plain_ports = Vec::with_capacity(devices.len());
        for device in devices {
            server = server.bind_rustls_0_23(SocketAddr::from(([127, 0, 0, 1], 0)), tls.clone())?;
            let port = server.addrs().last().map_or(0, SocketAddr::port);
            ports.push(port);
            server = server.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let plain_port = server.addrs().last().map_or(0, SocketAddr::port);
            plain_ports.push(plain_port);
            plain
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(plain_port, port);
            lock(&shared).insert(
                port,
                Served {
                    device: device.device,
                    username: device.username,
                    password: device.password,
                    reports: Vec::new(),
                    imported: Vec::new(),
                    calls: Vec::new(),
                    ssh_logins: 0,
                },
            );
        }
        let running = server.run();
        let handle = running.handle();
        tokio::spawn(running);

        // One SSH host key for the farm, as one certificate serves its HTTPS ports.
        let host_key = PrivateKey::from(Ed25519Keypair::from_seed(&rand::random()));
        let host_key_fingerprint = host_key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string();
        let ssh = Arc::new(russh::server::Config {
            keys: vec![host_key],
            auth_rejection_time: std::time::Duration::from_millis(50),
            auth_rejection_time_initial: Some(std::time::Duration::ZERO),
            inactivity_timeout: Some(std::time::Duration::from_secs(120)),
            ..Default::default()
        });
        let mut holders = Vec::new();
        let mut netconf_ports = Vec::with_capacity(ports.len());
        for &port in &ports {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            netconf_ports.push(listener.local_addr()?.port());
            let (ssh, devices, uplink) = (ssh.clone(), shared.clone(), uplink_client.clone());
            holders.push(tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    let session = NetconfSession {
                        devices: devices.clone(),
                        uplink: uplink.clone(),
                        port,
                        channel: None,
                    };
                    let ssh = ssh.clone();
                    tokio::spawn(async move {
                        if let Ok(running) = russh::server::run_stream(ssh, socket, session).await {
                            let _ = running.await;
                        }
                    });
                }
            }));
        }

        let mut hung_ports = Vec::new();
        for _ in 0..hung {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            hung_ports.push(listener.local_addr()?.port());
            holders.push(tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((socket, _)) = listener.accept().await {
                    held.push(socket);
                }
            }));
        }
        // Bound but never listening: connections are refused, and the port stays ours, so no
        // other server (another test's, say) can take it while the farm runs.
        let reserved: Vec<tokio::net::TcpSocket> = (0..unreachable)
            .map(|_| {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
                Ok::<_, std::io::Error>(socket)
            })
            .collect::<Result<_, _>>()?;
        let unreachable_ports = reserved
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            devices: shared,
            ports,
            plain_ports,
            netconf_ports,
            host_key_fingerprint,
            handle,
            hung: hung_ports,
            unreachable: unreachable_ports,
            holders,
            _reserved: reserved,
        })
    }

    /// The port of the `i`th device.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// The plain HTTP port of the `i`th device (the same device as on [`port`](Self::port)).
    pub fn plain_port(&self, i: usize) -> u16 {
        self.plain_ports[i]
    }

    /// The NETCONF (SSH) port of the `i`th device.
    pub fn netconf_port(&self, i: usize) -> u16 {
        self.netconf_ports[i]
    }

    /// The files the device on `port` installed with `import`.
    pub fn imported(&self, port: u16) -> Vec<String> {
        lock(&self.devices)
            .get(&port)
            .map(|d| d.imported.clone())
            .unwrap_or_default()
    }

    /// The calls the device on `port` answered, in order: REST paths, RESTCONF operations and
    /// `netconf:<rpc>` for NETCONF.
    pub fn calls(&self, port: u16) -> Vec<String> {
        lock(&self.devices)
            .get(&port)
            .map(|d| d.calls.clone())
            .unwrap_or_default()
    }

    /// How many SSH password logins the device on `port` was sent, right or wrong.
    pub fn ssh_logins(&self, port: u16) -> usize {
        lock(&self.devices).get(&port).map_or(0, |d| d.ssh_logins)
    }

    /// Stops the servers and the hung listeners.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
        for holder in &self.holders {
            holder.abort();
        }
    }
}
