//! A CSSM simulator: serves the parts of Cisco's Smart Software Manager API that Outpost uses
//! (`docs/protocol.md` section 5) over real HTTPS, signs ACKs (with the configured policy and the
//! trust codes devices asked for) and authorization codes (SLAC) with its own ECDSA P-256 key, and
//! records every payload, trust request and authorization return it receives.
//!
//! Tests run it in-process ([`CssmSim::start`]); the `cssm-sim` binary runs it for demos.
//! Faults can be injected per endpoint: latency, HTTP 500, hanging (timeouts), and `OK_POLL`
//! for the first N polls.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use outpost_core::Sudi;
use outpost_core::crypto::{self, CertifiedKey, EcdsaSigner};
use outpost_core::cssm::{
    API_BASE, AccountsSearchResponse, AckEntry, AuthLicense, AuthRequest, AuthRequestResponse,
    DuplicateReport, Enforcement, ErrorResponse, HEADER_SMART_ACCOUNT, HEADER_VIRTUAL_ACCOUNT,
    LicenseEntry, PollRequest, PollResponse, PollResponseData, RegistrationRequest,
    RegistrationResponse, ReportUsageRequest, ReportUsageResponse, STATUS_COMPLETE, STATUS_OK_POLL,
    SmartAccount, TOKEN_PATH, Term, TokenResponse, VirtualAccount,
};
use outpost_core::rum::parse_payload;
use outpost_core::signed_file::{
    AckData, AuthorizationData, AuthorizedEntitlement, PolicyData, TrustCodeData, build_ack,
    build_authorization, build_trust_code,
};
use serde::{Deserialize, Serialize};

/// The API endpoints, for fault injection and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /as/token.oauth2`.
    Token,
    /// `GET v2/accounts/search`.
    AccountsSearch,
    /// `POST v1/onprem/registrations`.
    Register,
    /// `GET v1/onprem/registrations/{id}/licenses`.
    Licenses,
    /// `POST v2/devices/reportusage`.
    ReportUsage,
    /// `POST v2/accounts/poll`.
    Poll,
    /// `POST v2/devices/authrequest`.
    AuthRequest,
}

/// A fault to inject into the next request of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer HTTP 500.
    Http500,
    /// Hold the request this long before answering normally (the client should time out).
    Hang(Duration),
}

/// A Virtual Account with the licenses it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimVirtualAccount {
    /// Name.
    pub name: String,
    /// Licenses purchased in it.
    pub licenses: Vec<LicenseEntry>,
}

/// A Smart Account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimAccount {
    /// Name.
    pub name: String,
    /// Domain.
    pub domain: String,
    /// Its Virtual Accounts.
    pub virtual_accounts: Vec<SimVirtualAccount>,
}

/// The accounts a fresh simulator knows: "Acme Corp" with "Campus" and "DC".
pub fn default_accounts() -> Vec<SimAccount> {
    let license = |tag: &str, name: &str, quantity, enforcement, term| LicenseEntry {
        entitlement_tag: tag.into(),
        name: name.into(),
        quantity,
        enforcement,
        term,
        end_date: matches!(term, Term::Subscription).then(|| "2027-12-31".into()),
    };
    vec![SimAccount {
        name: "Acme Corp".into(),
        domain: "acme.example".into(),
        virtual_accounts: vec![
            SimVirtualAccount {
                name: "Campus".into(),
                licenses: vec![
                    license(
                        "regid.2017-03.com.cisco.advantagek9,1.0_bd1da96e-ec1d-412b-a50e-53846b347d53",
                        "Catalyst 9300 Network Advantage",
                        100,
                        Enforcement::Unenforced,
                        Term::Perpetual,
                    ),
                    license(
                        "regid.2018-06.com.cisco.DNA_NWStack,1.0_e7244e71-3ad5-4608-8bf0-d12f67c80896",
                        "DNA Advantage",
                        50,
                        Enforcement::Unenforced,
                        Term::Subscription,
                    ),
                    license(
                        "regid.2019-03.com.cisco.HSECK9,1.0_a9f6ad7c-7d0b-4e4c-9c1b-4b4c0c6c3d6e",
                        "Router US Export Lic. for DNA",
                        10,
                        Enforcement::ExportControlled,
                        Term::Perpetual,
                    ),
                ],
            },
            SimVirtualAccount {
                name: "DC".into(),
                licenses: Vec::new(),
            },
        ],
    }]
}

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Serve HTTPS (with a generated CA) or plain HTTP.
    pub tls: bool,
    /// Accounts it knows.
    pub accounts: Vec<SimAccount>,
    /// When set, registrations must carry `Authorization: Bearer <token>`.
    pub registration_token: Option<String>,
    /// The ACK signing key and certificate; generated when `None`.
    pub signing: Option<CertifiedKey>,
    /// The TLS CA; generated when `None`.
    pub tls_ca: Option<CertifiedKey>,
    /// Where registrations are kept across restarts; in memory only when `None`.
    pub state_file: Option<std::path::PathBuf>,
    /// The policy sent with every ACK; `None` sends none.
    pub policy: Option<PolicyData>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            accounts: default_accounts(),
            registration_token: None,
            signing: None,
            tls_ca: None,
            state_file: None,
            policy: Some(PolicyData::cisco_default()),
        }
    }
}

/// One report as received in a `reportusage` call.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedReport {
    /// The device.
    pub sudi: Sudi,
    /// The report id read from the payload.
    pub report_id: i64,
    /// The payload exactly as received (decoded from the request JSON).
    pub payload: String,
    /// Already received before (same UDI and report id).
    pub duplicate: bool,
    /// The poll id of the call that carried it.
    pub poll_id: String,
    /// Smart Account (name) it was reported to.
    pub smart_account: String,
    /// Virtual Account (name) it was reported to.
    pub virtual_account: String,
}

/// One request as seen by the simulator.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// HTTP status answered.
    pub status: u16,
}

#[derive(Debug, Serialize, Deserialize)]
struct Registration {
    id: String,
    client_secret: String,
    account: usize,
    virtual_account: usize,
}

#[derive(Debug)]
struct Poll {
    smart_account: String,
    virtual_account: String,
    devices: Vec<(Sudi, Vec<i64>)>,
    /// Per device (same order): the devices it asked trust codes for.
    trust_requests: Vec<Vec<Sudi>>,
    pending_polls: u32,
    /// Built once, so repeated polls return the very same signed files.
    acks: Option<Vec<AckEntry>>,
}

/// Licenses a device's code holds: (SA, VA, entitlement, count).
type Holding = (String, String, String, u32);

#[derive(Debug, Default)]
struct State {
    registrations: HashMap<String, Registration>,
    tokens: HashMap<String, String>,
    seen: HashMap<(String, String, i64), ()>,
    received: Vec<ReceivedReport>,
    polls: HashMap<String, Poll>,
    faults: HashMap<Endpoint, VecDeque<Fault>>,
    latency: HashMap<Endpoint, Duration>,
    ok_polls_before_complete: u32,
    ack_omissions: usize,
    log: Vec<LoggedRequest>,
    policy: Option<PolicyData>,
    trust_requests: Vec<Sudi>,
    authorization_requests: Vec<AuthLicense>,
    authorization_returns: Vec<AuthLicense>,
    /// SLAC files per authorization poll id.
    authorization_polls: HashMap<String, Vec<AckEntry>>,
    /// Authorized counts per device (PID, serial).
    held: HashMap<(String, String), Vec<Holding>>,
}

struct Shared {
    accounts: Vec<SimAccount>,
    state_file: Option<std::path::PathBuf>,
    registration_token: Option<String>,
    signer: EcdsaSigner,
    signing_cert_pem: String,
    state: Mutex<State>,
}

impl Shared {
    fn new(config: SimConfig) -> anyhow::Result<Arc<Self>> {
        let signing = match config.signing {
            Some(signing) => signing,
            None => crypto::generate_signing_certificate("CSSM Simulator ACK signing")?,
        };
        let registrations = match &config.state_file {
            Some(path) if path.is_file() => {
                let text =
                    std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
                serde_json::from_str(&text)
                    .with_context(|| format!("reading {}", path.display()))?
            }
            _ => HashMap::new(),
        };
        Ok(Arc::new(Shared {
            accounts: config.accounts,
            state_file: config.state_file,
            registration_token: config.registration_token,
            signer: EcdsaSigner::from_pkcs8_pem(&signing.key_pem)?,
            signing_cert_pem: signing.cert_pem,
            state: Mutex::new(State {
                registrations,
                policy: config.policy,
                ..State::default()
            }),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers an on-prem instance for an SA/VA pair (online call or portal).
    fn create_registration(
        &self,
        smart_account: &str,
        virtual_account: &str,
    ) -> Result<RegistrationResponse, SimError> {
        let (i, j) = find_pair(self, smart_account, virtual_account)?;
        let client_id = format!("onprem-{}", crypto::random_alphanumeric(12));
        let registration = Registration {
            id: uuid::Uuid::new_v4().to_string(),
            client_secret: crypto::random_alphanumeric(32),
            account: i,
            virtual_account: j,
        };
        let response = RegistrationResponse {
            registration_id: registration.id.clone(),
            client_id: client_id.clone(),
            client_secret: registration.client_secret.clone(),
            smart_account_id: account_id(i),
            virtual_account_id: virtual_account_id(i, j),
        };
        let mut state = self.state();
        state.registrations.insert(client_id, registration);
        if let Some(path) = &self.state_file {
            // Kept so client credentials stay valid when the simulator restarts.
            let text = serde_json::to_string_pretty(&state.registrations)
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            std::fs::write(path, text)
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        }
        Ok(response)
    }

    /// Records received reports (duplicates flagged); returns the duplicates.
    fn record(
        &self,
        device: &Sudi,
        reports: &[(i64, String)],
        poll_id: &str,
        pair: (&str, &str),
    ) -> Vec<DuplicateReport> {
        let mut state = self.state();
        let mut duplicates = Vec::new();
        for (report_id, payload) in reports {
            let key = (
                device.udi_pid.clone(),
                device.udi_serial_number.clone(),
                *report_id,
            );
            let duplicate = state.seen.insert(key, ()).is_some();
            if duplicate {
                duplicates.push(DuplicateReport {
                    sudi: device.clone(),
                    report_id: *report_id,
                });
            }
            state.received.push(ReceivedReport {
                sudi: device.clone(),
                report_id: *report_id,
                payload: payload.clone(),
                duplicate,
                poll_id: poll_id.to_owned(),
                smart_account: pair.0.to_owned(),
                virtual_account: pair.1.to_owned(),
            });
        }
        duplicates
    }

    /// A signed ACK for reports of a device, with the configured policy and a trust code for
    /// each device in `trust_for`.
    fn ack_file(
        &self,
        device: &Sudi,
        report_ids: Vec<i64>,
        (smart_account, virtual_account): (&str, &str),
        policy: Option<&PolicyData>,
        trust_for: &[Sudi],
    ) -> Result<String, SimError> {
        let internal = |e: outpost_core::signed_file::SignedFileError| {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        };
        let mut codes = Vec::new();
        for member in trust_for {
            let (_, public_key_pem) = crypto::generate_key_pair()
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            let data = TrustCodeData {
                udi: String::new(),
                public_key_pem,
                issued: Utc::now().timestamp_millis(),
            };
            codes.push(build_trust_code(member, &data, &self.signer).map_err(internal)?);
        }
        let data = AckData {
            sudi: device.clone(),
            acked_report_ids: report_ids,
            smart_account: smart_account.to_owned(),
            virtual_account: virtual_account.to_owned(),
            timestamp: Utc::now().timestamp_millis(),
            nonce: crypto::random_alphanumeric(16),
        };
        build_ack(&data, policy, &codes, &self.signer).map_err(internal)
    }
}

/// A running simulator.
pub struct CssmSim {
    url: String,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl std::fmt::Debug for CssmSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CssmSim").field("url", &self.url).finish()
    }
}

/// Stable ids derived from names, so ids survive a simulator restart.
fn account_id(index: usize) -> String {
    format!("{}", 100_000 + index)
}

fn virtual_account_id(account: usize, va: usize) -> String {
    format!("{}", 200_000 + account * 100 + va)
}

impl CssmSim {
    /// Starts a simulator on the current tokio runtime.
    pub async fn start(config: SimConfig) -> anyhow::Result<Self> {
        let listen = config.listen;
        let tls = config.tls;
        let tls_ca = config.tls_ca.clone();
        let shared = Shared::new(config)?;
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(64 * 1024 * 1024))
                .route(TOKEN_PATH, web::post().to(token))
                .service(
                    web::scope(API_BASE)
                        .route("/v2/accounts/search", web::get().to(accounts_search))
                        .route("/v1/onprem/registrations", web::post().to(register))
                        .route(
                            "/v1/onprem/registrations/{id}/licenses",
                            web::get().to(licenses),
                        )
                        .route("/v2/devices/reportusage", web::post().to(report_usage))
                        .route("/v2/accounts/poll", web::post().to(poll))
                        .route("/v2/devices/authrequest", web::post().to(authrequest)),
                )
                .route(
                    "/sim/signing-certificate.pem",
                    web::get().to(signing_certificate),
                )
                .route("/sim/received", web::get().to(received))
                .route("/sim/faults", web::post().to(set_faults))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);

        let (server, url, ca_pem) = if tls {
            let ca = match tls_ca {
                Some(ca) => ca,
                None => crypto::generate_ca("CSSM Simulator CA")?,
            };
            let leaf =
                crypto::issue_server_certificate(&ca, &["localhost".into(), "127.0.0.1".into()])?;
            let tls = outpost_core::tls::server_config(&leaf.cert_pem, &leaf.key_pem)?;
            let server = server
                .bind_rustls_0_23(listen, tls)
                .context("binding the CSSM simulator")?;
            let addr = server.addrs()[0];
            (
                server,
                format!("https://{}", display_addr(addr)),
                Some(ca.cert_pem),
            )
        } else {
            let server = server.bind(listen).context("binding the CSSM simulator")?;
            let addr = server.addrs()[0];
            (server, format!("http://{}", display_addr(addr)), None)
        };
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            url,
            ca_pem,
            shared,
            handle,
        })
    }

    /// Base URL for both `cssm.api_url` and `cssm.token_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate that issued its TLS certificate (`cssm.ca_file`).
    pub fn ca_certificate_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The certificate of its ACK signing key (`cssm.signing_certificate_file`).
    pub fn signing_certificate_pem(&self) -> &str {
        &self.shared.signing_cert_pem
    }

    /// Every report received, duplicates included, in arrival order.
    pub fn received_reports(&self) -> Vec<ReceivedReport> {
        self.shared.state().received.clone()
    }

    /// Every request answered, in order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.state().log.clone()
    }

    /// Queues faults for the next requests of an endpoint.
    pub fn inject(&self, endpoint: Endpoint, faults: &[Fault]) {
        self.shared
            .state()
            .faults
            .entry(endpoint)
            .or_default()
            .extend(faults.iter().copied());
    }

    /// Adds latency to every request of an endpoint.
    pub fn set_latency(&self, endpoint: Endpoint, latency: Duration) {
        self.shared.state().latency.insert(endpoint, latency);
    }

    /// New polls answer `OK_POLL` this many times before `COMPLETE`.
    pub fn set_ok_polls(&self, count: u32) {
        self.shared.state().ok_polls_before_complete = count;
    }

    /// Forgets every poll id, as CSSM does when they expire.
    pub fn forget_polls(&self) {
        self.shared.state().polls.clear();
    }

    /// New ACKs leave out the last `count` report ids of each device (a partial answer).
    pub fn set_ack_omissions(&self, count: usize) {
        self.shared.state().ack_omissions = count;
    }

    /// The SLAC CSV CSSM's portal produces for an air-gapped site: one signed code per
    /// (device, entitlement, count), drawn from the pair's pool like an online request.
    pub fn slac_csv(
        &self,
        (smart_account, virtual_account): (&str, &str),
        codes: &[(Sudi, &str, u32)],
    ) -> anyhow::Result<String> {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut out =
            String::from("udi_pid,udi_serial_number,entitlement_tag,count,authorization_code\n");
        let mut state = self.shared.state();
        for (sudi, tag, count) in codes {
            let data = AuthorizationData {
                udi: String::new(),
                piid: String::new(),
                entitlements: vec![AuthorizedEntitlement {
                    tag: (*tag).to_owned(),
                    count: *count,
                    license_type: "PERPETUAL".into(),
                }],
                confirm_code: base58_code(12),
                timestamp: Utc::now().timestamp_millis(),
            };
            let file = build_authorization(sudi, &data, &self.shared.signer)?;
            state
                .held
                .entry((sudi.udi_pid.clone(), sudi.udi_serial_number.clone()))
                .or_default()
                .push((
                    smart_account.into(),
                    virtual_account.into(),
                    (*tag).into(),
                    *count,
                ));
            out.push_str(&format!(
                "{},{},{},{count},{}\n",
                quote(&sudi.udi_pid),
                quote(&sudi.udi_serial_number),
                quote(tag),
                quote(&file)
            ));
        }
        Ok(out)
    }

    /// Sets the policy sent with ACKs from now on (`None`: none).
    pub fn set_policy(&self, policy: Option<PolicyData>) {
        self.shared.state().policy = policy;
    }

    /// Every device a trust code was asked for, in arrival order.
    pub fn trust_requests(&self) -> Vec<Sudi> {
        self.shared.state().trust_requests.clone()
    }

    /// Every device authorization codes were issued for.
    pub fn authorization_requests(&self) -> Vec<AuthLicense> {
        self.shared.state().authorization_requests.clone()
    }

    /// Every authorization return received.
    pub fn authorization_returns(&self) -> Vec<AuthLicense> {
        self.shared.state().authorization_returns.clone()
    }

    /// Stops the server.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// The manual side of CSSM, as its web portal offers it: a usage bundle in, an ACK bundle out;
/// a registration request file in, a response file out. Nothing crosses a network.
#[derive(Clone)]
pub struct Portal {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Portal")
    }
}

impl CssmSim {
    /// The portal of this simulator (same accounts, keys and received reports).
    pub fn portal(&self) -> Portal {
        Portal {
            shared: self.shared.clone(),
        }
    }
}

impl Portal {
    /// A portal working from its keys alone, without a server (`cssm-sim portal-*`).
    pub fn offline(config: SimConfig) -> anyhow::Result<Self> {
        Ok(Self {
            shared: Shared::new(config)?,
        })
    }

    /// Ingests a usage bundle as "upload usage" does and returns the ACK bundle:
    /// (`ACK_<name>`, bytes). The reports are recorded like online ones.
    pub fn answer_usage_bundle(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(String, Vec<u8>), String> {
        let usage =
            outpost_core::bundle::read_usage_bundle(bytes, name).map_err(|e| e.to_string())?;
        let poll_id = format!("file:{}", usage.manifest.export_uuid);
        let mut answer = Vec::new();
        for section in &usage.manifest.sections {
            let smart_account = section
                .smart_account
                .as_ref()
                .map_or(&usage.manifest.smart_account, |(sa, _)| sa);
            find_pair(&self.shared, smart_account, &section.virtual_account)
                .map_err(|e| format!("{name}: {}", e.1))?;
            let mut acks = Vec::new();
            for file in usage
                .device_files
                .iter()
                .filter(|f| f.archive == section.file_name)
            {
                let parsed = outpost_core::offline_file::parse(&file.text)
                    .map_err(|e| format!("{}: {e}", file.name))?;
                let device = parsed
                    .device()
                    .ok_or_else(|| format!("{}: names no device", file.name))?;
                let mut reports = Vec::new();
                for envelope in &parsed.reports {
                    let facts = envelope
                        .facts()
                        .map_err(|e| format!("{}: {e}", file.name))?;
                    if !facts.instance.same_device(&device) {
                        return Err(format!("{}: a report names another device", file.name));
                    }
                    reports.push((facts.report_id, envelope.payload.clone()));
                }
                self.shared.record(
                    &device,
                    &reports,
                    &poll_id,
                    (smart_account, &section.virtual_account),
                );
                let ids = reports.iter().map(|(id, _)| *id).collect();
                let policy = self.shared.state().policy.clone();
                // The offline usage file carries no trust requests.
                let ack = self
                    .shared
                    .ack_file(
                        &device,
                        ids,
                        (smart_account, &section.virtual_account),
                        policy.as_ref(),
                        &[],
                    )
                    .map_err(|e| e.1)?;
                acks.push((file.device_id.clone(), ack));
            }
            let ts = section
                .file_name
                .trim_start_matches("UD_VA_")
                .trim_end_matches(".tar.gz")
                .to_owned();
            answer.push((ts, acks));
        }
        let bytes = outpost_core::bundle::write_ack_bundle(Vec::new(), &answer, Utc::now())
            .map_err(|e| e.to_string())?;
        Ok((format!("ACK_{name}"), bytes))
    }

    /// Turns a registration request file into a signed response file.
    pub fn answer_registration_request(&self, text: &str) -> Result<String, String> {
        use outpost_core::cssm::{
            REGISTRATION_REQUEST_FILE, REGISTRATION_RESPONSE_FILE, RegistrationRequestData,
            RegistrationResponseData, SignedFile,
        };
        // The request carries the key that signed it: proof the sender holds the instance key.
        let request: RegistrationRequestData = SignedFile::open(
            text,
            REGISTRATION_REQUEST_FILE,
            |data: &RegistrationRequestData, message, signature| {
                crypto::verify_with_public_key_pem(&data.request.public_key_pem, message, signature)
            },
        )
        .map_err(|e| e.to_string())?;
        let registration = self
            .shared
            .create_registration(
                &request.request.smart_account,
                &request.request.virtual_account,
            )
            .map_err(|e| e.1)?;
        let data = RegistrationResponseData {
            registration,
            name: request.request.name,
            request_nonce: request.nonce,
            timestamp: Utc::now().timestamp_millis(),
        };
        let file = SignedFile::sign(REGISTRATION_RESPONSE_FILE, &data, &self.shared.signer)
            .map_err(|e| e.to_string())?;
        serde_json::to_string_pretty(&file).map_err(|e| e.to_string())
    }
}

fn display_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// A refusal, answered with CSSM's error body.
#[derive(Debug)]
struct SimError(StatusCode, String);

impl SimError {
    fn response(&self) -> HttpResponse {
        HttpResponse::build(self.0).json(ErrorResponse {
            status: "ERROR".into(),
            message: self.1.clone(),
        })
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> SimError {
    SimError(status, message.into())
}

type Answer = Result<HttpResponse, SimError>;

/// Runs a handler body after the endpoint's latency and faults, and logs the answer.
async fn serve(shared: &Shared, endpoint: Endpoint, body: impl FnOnce() -> Answer) -> HttpResponse {
    let (latency, fault) = {
        let mut state = shared.state();
        let latency = state.latency.get(&endpoint).copied();
        let fault = state
            .faults
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front);
        (latency, fault)
    };
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    let answer = match fault {
        Some(Fault::Http500) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "injected failure")),
        Some(Fault::Hang(duration)) => {
            tokio::time::sleep(duration).await;
            body()
        }
        None => body(),
    };
    let response = answer.unwrap_or_else(|e| e.response());
    shared.state().log.push(LoggedRequest {
        endpoint,
        status: response.status().as_u16(),
    });
    response
}

/// The client id a bearer token was issued to.
fn authorised(shared: &Shared, req: &HttpRequest) -> Result<String, SimError> {
    let token = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "missing bearer token"))?;
    shared
        .state()
        .tokens
        .get(token)
        .cloned()
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "invalid or expired token"))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: String,
    client_secret: String,
}

async fn token(shared: web::Data<Shared>, form: web::Form<TokenForm>) -> HttpResponse {
    serve(&shared, Endpoint::Token, || {
        if form.grant_type != "client_credentials" {
            return Err(error(StatusCode::BAD_REQUEST, "unsupported grant_type"));
        }
        let mut state = shared.state();
        let valid = state
            .registrations
            .get(&form.client_id)
            .is_some_and(|r| r.client_secret == form.client_secret);
        if !valid {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid client credentials",
            ));
        }
        let token = crypto::random_alphanumeric(40);
        state.tokens.insert(token.clone(), form.client_id.clone());
        Ok(HttpResponse::Ok().json(TokenResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: 3600,
        }))
    })
    .await
}

async fn accounts_search(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    serve(&shared, Endpoint::AccountsSearch, || {
        authorised(&shared, &req)?;
        let accounts = shared
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| SmartAccount {
                account_id: account_id(i),
                domain: a.domain.clone(),
                name: a.name.clone(),
                virtual_accounts: a
                    .virtual_accounts
                    .iter()
                    .enumerate()
                    .map(|(j, va)| VirtualAccount {
                        virtual_account_id: virtual_account_id(i, j),
                        name: va.name.clone(),
                    })
                    .collect(),
            })
            .collect();
        Ok(HttpResponse::Ok().json(AccountsSearchResponse {
            status: "COMPLETE".into(),
            accounts,
        }))
    })
    .await
}

fn find_pair(
    shared: &Shared,
    smart_account: &str,
    virtual_account: &str,
) -> Result<(usize, usize), SimError> {
    let (i, account) = shared
        .accounts
        .iter()
        .enumerate()
        .find(|(_, a)| a.name == smart_account)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("Smart Account '{smart_account}' not found"),
            )
        })?;
    let j = account
        .virtual_accounts
        .iter()
        .position(|va| va.name == virtual_account)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("Virtual Account '{virtual_account}' not found in '{smart_account}'"),
            )
        })?;
    Ok((i, j))
}

async fn register(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Json<RegistrationRequest>,
) -> HttpResponse {
    serve(&shared, Endpoint::Register, || {
        if let Some(expected) = &shared.registration_token {
            let given = req
                .headers()
                .get("Authorization")
                .and_then(|v| v.to_str().ok());
            if given != Some(&format!("Bearer {expected}")) {
                return Err(error(
                    StatusCode::UNAUTHORIZED,
                    "a valid registration token is required",
                ));
            }
        }
        if !body.public_key_pem.contains("BEGIN PUBLIC KEY") {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "public_key_pem must be a PEM public key",
            ));
        }
        let response = shared.create_registration(&body.smart_account, &body.virtual_account)?;
        Ok(HttpResponse::Created().json(response))
    })
    .await
}

async fn licenses(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    serve(&shared, Endpoint::Licenses, || {
        let client_id = authorised(&shared, &req)?;
        let state = shared.state();
        match state.registrations.get(&client_id) {
            Some(r) if r.id == *path => {
                let va = &shared.accounts[r.account].virtual_accounts[r.virtual_account];
                Ok(HttpResponse::Ok().json(&va.licenses))
            }
            _ => Err(error(StatusCode::NOT_FOUND, "registration not found")),
        }
    })
    .await
}

/// The (SA, VA) names the CSW headers identify by id.
fn header_pair(shared: &Shared, req: &HttpRequest) -> Result<(String, String), SimError> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(sa), Some(va)) = (header(HEADER_SMART_ACCOUNT), header(HEADER_VIRTUAL_ACCOUNT))
    else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "X-CSW-SMART-ACCOUNT-ID and X-CSW-VIRTUAL-ACCOUNT-ID are required",
        ));
    };
    for (i, account) in shared.accounts.iter().enumerate() {
        for (j, virtual_account) in account.virtual_accounts.iter().enumerate() {
            if account_id(i) == sa && virtual_account_id(i, j) == va {
                return Ok((account.name.clone(), virtual_account.name.clone()));
            }
        }
    }
    Err(error(
        StatusCode::NOT_FOUND,
        format!("no Virtual Account {va} in Smart Account {sa}"),
    ))
}

async fn report_usage(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Json<ReportUsageRequest>,
) -> HttpResponse {
    serve(&shared, Endpoint::ReportUsage, || {
        authorised(&shared, &req)?;
        let (smart_account, virtual_account) = header_pair(&shared, &req)?;
        // Read every report first so a bad one rejects the call without recording any.
        let mut devices = Vec::new();
        let mut trust_requests = Vec::new();
        for device in &body.data.reports {
            let mut asked = Vec::new();
            for request in &device.trust_requests {
                let sudi: Sudi = serde_json::from_value(request["sudi"].clone()).map_err(|e| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("trust request of {}: {e}", device.sudi),
                    )
                })?;
                asked.push(sudi);
            }
            trust_requests.push(asked);
            let mut ids = Vec::new();
            for item in &device.usage {
                let facts = parse_payload(&item.payload).map_err(|e| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("report of {}: {e}", device.sudi),
                    )
                })?;
                if !facts.instance.same_device(&device.sudi) {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("a report of {} names another device", device.sudi),
                    ));
                }
                ids.push(facts.report_id);
            }
            devices.push((device.sudi.clone(), ids));
        }
        let poll_id = uuid::Uuid::new_v4().to_string();
        let mut duplicates = Vec::new();
        for (device, (sudi, ids)) in body.data.reports.iter().zip(&devices) {
            let reports: Vec<(i64, String)> = ids
                .iter()
                .copied()
                .zip(device.usage.iter().map(|item| item.payload.clone()))
                .collect();
            duplicates.extend(shared.record(
                sudi,
                &reports,
                &poll_id,
                (&smart_account, &virtual_account),
            ));
        }
        let mut state = shared.state();
        state
            .trust_requests
            .extend(trust_requests.iter().flatten().cloned());
        let pending_polls = state.ok_polls_before_complete;
        state.polls.insert(
            poll_id.clone(),
            Poll {
                smart_account,
                virtual_account,
                devices,
                trust_requests,
                pending_polls,
                acks: None,
            },
        );
        let count: usize = body.data.reports.iter().map(|d| d.usage.len()).sum();
        Ok(HttpResponse::Ok().json(ReportUsageResponse {
            status: STATUS_OK_POLL.into(),
            message: format!("{count} reports received"),
            poll_id,
            duplicates,
        }))
    })
    .await
}

async fn poll(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Json<PollRequest>,
) -> HttpResponse {
    serve(&shared, Endpoint::Poll, || {
        authorised(&shared, &req)?;
        let mut state = shared.state();
        match body.data.action.as_str() {
            "acknowledgements" => {}
            "authorizations" => {
                let codes = state
                    .authorization_polls
                    .get(&body.data.poll_id)
                    .cloned()
                    .ok_or_else(|| {
                        error(
                            StatusCode::NOT_FOUND,
                            format!("unknown poll_id {}", body.data.poll_id),
                        )
                    })?;
                return Ok(HttpResponse::Ok().json(PollResponse {
                    status: STATUS_COMPLETE.into(),
                    message: "authorization codes ready".into(),
                    data: PollResponseData {
                        acknowledgements: Vec::new(),
                        authorizations: codes,
                    },
                }));
            }
            other => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("unsupported action '{other}'"),
                ));
            }
        }
        let omissions = state.ack_omissions;
        let policy = state.policy.clone();
        let poll = state.polls.get_mut(&body.data.poll_id).ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("unknown poll_id {}", body.data.poll_id),
            )
        })?;
        if poll.pending_polls > 0 {
            poll.pending_polls -= 1;
            return Ok(HttpResponse::Ok().json(PollResponse {
                status: STATUS_OK_POLL.into(),
                message: "acknowledgements not ready".into(),
                data: PollResponseData::default(),
            }));
        }
        if poll.acks.is_none() {
            let mut acks = Vec::new();
            for ((sudi, ids), trust_for) in poll.devices.iter().zip(&poll.trust_requests) {
                let kept = ids.len().saturating_sub(omissions);
                let file = shared.ack_file(
                    sudi,
                    ids[..kept].to_vec(),
                    (&poll.smart_account, &poll.virtual_account),
                    policy.as_ref(),
                    trust_for,
                )?;
                acks.push(AckEntry {
                    sudi: sudi.clone(),
                    smart_license: STANDARD.encode(file),
                });
            }
            poll.acks = Some(acks);
        }
        Ok(HttpResponse::Ok().json(PollResponse {
            status: STATUS_COMPLETE.into(),
            message: "acknowledgements ready".into(),
            data: PollResponseData {
                acknowledgements: poll.acks.clone().unwrap_or_default(),
                authorizations: Vec::new(),
            },
        }))
    })
    .await
}

async fn signing_certificate(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(shared.signing_cert_pem.clone())
}

async fn received(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(&shared.state().received)
}

#[derive(Deserialize)]
struct FaultRequest {
    endpoint: Endpoint,
    #[serde(default)]
    http_500: u32,
    #[serde(default)]
    hang_secs: Option<u64>,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    ok_polls: Option<u32>,
}

/// `POST /sim/faults`: the same injection the in-process API offers, for the binary.
async fn set_faults(shared: web::Data<Shared>, body: web::Json<FaultRequest>) -> HttpResponse {
    let mut state = shared.state();
    let queue = state.faults.entry(body.endpoint).or_default();
    queue.extend(std::iter::repeat_n(Fault::Http500, body.http_500 as usize));
    if let Some(secs) = body.hang_secs {
        queue.push_back(Fault::Hang(Duration::from_secs(secs)));
    }
    if let Some(ms) = body.latency_ms {
        state
            .latency
            .insert(body.endpoint, Duration::from_millis(ms));
    }
    if let Some(count) = body.ok_polls {
        state.ok_polls_before_complete = count;
    }
    HttpResponse::NoContent().finish()
}

/// A base58 code (no 0, O, I, l), as CSSM's confirmation and return codes are.
pub fn base58_code(len: usize) -> String {
    std::iter::repeat_with(|| crypto::random_alphanumeric(len * 2))
        .flat_map(|s| s.chars().collect::<Vec<_>>())
        .filter(|c| !"0OIl".contains(*c))
        .take(len)
        .collect()
}

/// `POST v2/devices/authrequest`: authorization codes (one SLAC per device and entitlement,
/// fetched by polling with action `authorizations`), or, with no keys and a `remove_code`, a
/// return that frees what the device held.
async fn authrequest(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Json<AuthRequest>,
) -> HttpResponse {
    serve(&shared, Endpoint::AuthRequest, || {
        authorised(&shared, &req)?;
        let (sa, va) = header_pair(&shared, &req)?;
        let licenses = shared
            .accounts
            .iter()
            .filter(|a| a.name == sa)
            .flat_map(|a| &a.virtual_accounts)
            .find(|v| v.name == va)
            .map(|v| v.licenses.clone())
            .unwrap_or_default();
        let requests = &body.data.licenses;
        if requests.is_empty() {
            return Err(error(StatusCode::BAD_REQUEST, "no licenses in the request"));
        }
        let mut state = shared.state();
        if requests.iter().all(|l| l.keys.is_empty()) {
            for license in requests {
                if license.remove_code.as_deref().is_none_or(str::is_empty) {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("return for {} has no remove_code", license.sudi),
                    ));
                }
            }
            for license in requests {
                let key = (
                    license.sudi.udi_pid.clone(),
                    license.sudi.udi_serial_number.clone(),
                );
                state.held.remove(&key);
                state.authorization_returns.push(license.clone());
            }
            return Ok(HttpResponse::Ok().json(AuthRequestResponse {
                status: STATUS_COMPLETE.into(),
                message: format!("{} authorizations returned", requests.len()),
                poll_id: None,
            }));
        }
        // Check the whole request against the pool before issuing anything.
        let mut asked: HashMap<&str, u32> = HashMap::new();
        for license in requests {
            if license.keys.is_empty() {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("{} asks for no entitlement", license.sudi),
                ));
            }
            for key in &license.keys {
                let Some(entry) = licenses
                    .iter()
                    .find(|l| l.entitlement_tag == key.entitlement)
                else {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("Virtual Account {va} holds no {}", key.entitlement),
                    ));
                };
                if entry.enforcement == Enforcement::Unenforced {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("{} needs no authorization code", key.entitlement),
                    ));
                }
                *asked.entry(&key.entitlement).or_default() += key.count;
            }
        }
        for (tag, count) in &asked {
            let quantity = licenses
                .iter()
                .find(|l| l.entitlement_tag == *tag)
                .map_or(0, |l| l.quantity);
            // A device holds one code per entitlement: a new one replaces what it held.
            let held: u32 = state
                .held
                .iter()
                .filter(|(device, _)| {
                    !requests.iter().any(|l| {
                        l.sudi.udi_pid == device.0
                            && l.sudi.udi_serial_number == device.1
                            && l.keys.iter().any(|k| k.entitlement == **tag)
                    })
                })
                .flat_map(|(_, held)| held)
                .filter(|(s, v, t, _)| *s == sa && *v == va && t == tag)
                .map(|(_, _, _, c)| *c)
                .sum();
            if i64::from(held + count) > quantity {
                return Err(error(
                    StatusCode::CONFLICT,
                    format!("insufficient licenses: {tag} has {held} of {quantity} authorized, {count} more asked"),
                ));
            }
        }
        let mut codes = Vec::new();
        for license in requests {
            for key in &license.keys {
                let term = licenses
                    .iter()
                    .find(|l| l.entitlement_tag == key.entitlement)
                    .map(|l| l.term);
                let data = AuthorizationData {
                    udi: String::new(),
                    piid: String::new(),
                    entitlements: vec![AuthorizedEntitlement {
                        tag: key.entitlement.clone(),
                        count: key.count,
                        license_type: match term {
                            Some(Term::Subscription) => "SUBSCRIPTION".into(),
                            _ => "PERPETUAL".into(),
                        },
                    }],
                    confirm_code: base58_code(12),
                    timestamp: Utc::now().timestamp_millis(),
                };
                let file = build_authorization(&license.sudi, &data, &shared.signer)
                    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                codes.push(AckEntry {
                    sudi: license.sudi.clone(),
                    smart_license: STANDARD.encode(file),
                });
                let held = state
                    .held
                    .entry((
                        license.sudi.udi_pid.clone(),
                        license.sudi.udi_serial_number.clone(),
                    ))
                    .or_default();
                held.retain(|(_, _, tag, _)| *tag != key.entitlement);
                held.push((sa.clone(), va.clone(), key.entitlement.clone(), key.count));
            }
            state.authorization_requests.push(license.clone());
        }
        let poll_id = uuid::Uuid::new_v4().to_string();
        state.authorization_polls.insert(poll_id.clone(), codes);
        Ok(HttpResponse::Ok().json(AuthRequestResponse {
            status: STATUS_OK_POLL.into(),
            message: format!("{} authorization codes issued", asked.values().sum::<u32>()),
            poll_id: Some(poll_id),
        }))
    })
    .await
}
