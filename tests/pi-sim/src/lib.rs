//! A product-instance simulator: behaves like a Catalyst switch configured with
//! `license smart transport cslu` and `license smart url cslu <url>`. It generates realistic
//! RUM reports (`docs/protocol.md` section 2: version 2.0 payloads, HA `ha_udi`, measurements over
//! time), pushes them over HTTPS, polls for the result, keeps the ACKs it receives, and can
//! replay a RUM file written by a real device.

use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use outpost_core::Sudi;
pub mod load;
pub mod server;
pub mod sink;

use outpost_core::device::{
    AuthorizationMode, AuthorizationScope, Confirmation, DeviceRequest, DeviceResponse, LicenseKey,
    LicenseRequest, MessageType, RequestData, Return, Status,
};
use outpost_core::offline_file::{self, SystemInfo};
use outpost_core::rum::RumEnvelope;
use outpost_core::udi::{HaMember, HaRole};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Software tag of the simulated platform (Catalyst 9300).
pub const SOFTWARE_TAG: &str =
    "regid.2017-05.com.cisco.C9300,v1_727af1d9-6c39-4444-b301-863f81445b72";
/// Entitlement the simulated devices consume (Network Advantage).
pub const ENTITLEMENT_TAG: &str =
    "regid.2017-03.com.cisco.advantagek9,1.0_bd1da96e-ec1d-412b-a50e-53846b347d53";

/// A simulated device and everything it remembers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    /// Its UDI.
    pub sudi: Sudi,
    /// Its hostname.
    pub hostname: String,
    /// IOS-XE version.
    pub software_version: String,
    /// Product instance UUID.
    pub product_instance_identifier: String,
    /// Standby and members of its HA set (the device itself is the active).
    pub ha_members: Vec<Sudi>,
    /// Next report id (report ids are unique per UDI).
    pub next_report_id: i64,
    /// Device clock for measurements, seconds since the epoch.
    pub clock: i64,
    /// Licenses in use now.
    pub license_count: i64,
    /// The entitlement it reports.
    #[serde(default = "default_entitlement")]
    pub entitlement_tag: String,
    /// Poll ids of reports not yet acknowledged.
    pub pending_polls: Vec<String>,
    /// ACK files received (decoded), in arrival order.
    pub acks: Vec<String>,
    /// Ask for trust codes (for itself and its HA set) with the next usage reports.
    #[serde(default)]
    pub request_trust: bool,
    /// Trust code files received (decoded).
    #[serde(default)]
    pub trust_codes: Vec<String>,
    /// The latest policy file received (decoded).
    #[serde(default)]
    pub policy: Option<String>,
    /// Authorization code (SLAC) files received (decoded), with the device each is for.
    #[serde(default)]
    pub authorizations: Vec<(Sudi, String)>,
}

impl Device {
    /// A device with a fresh identity.
    pub fn new(pid: &str, serial: &str) -> Self {
        Self {
            sudi: Sudi::new(pid, serial),
            hostname: format!("sw-{}", serial.to_ascii_lowercase()),
            software_version: "17.12.1".into(),
            product_instance_identifier: uuid::Uuid::new_v4().to_string(),
            ha_members: Vec::new(),
            next_report_id: 1_732_000_000,
            clock: 1_732_000_000,
            license_count: 1,
            entitlement_tag: ENTITLEMENT_TAG.into(),
            pending_polls: Vec::new(),
            acks: Vec::new(),
            request_trust: false,
            trust_codes: Vec::new(),
            policy: None,
            authorizations: Vec::new(),
        }
    }

    /// Adds a stack member (after the standby, if any) to its HA set.
    pub fn with_member(mut self, serial: &str) -> Self {
        self.ha_members
            .push(Sudi::new(self.sudi.udi_pid.clone(), serial));
        self
    }

    /// Every UDI of its set, itself first.
    pub fn set_udis(&self) -> Vec<Sudi> {
        std::iter::once(self.sudi.clone())
            .chain(self.ha_members.iter().cloned())
            .collect()
    }

    /// A switchover: the standby becomes the active and this device its standby. Report ids
    /// and the clock carry on; usage is the set's.
    pub fn switch_over(&mut self) {
        if self.ha_members.is_empty() {
            return;
        }
        let standby = self.ha_members.remove(0);
        let old = std::mem::replace(&mut self.sudi, standby);
        self.ha_members.insert(0, old);
        self.hostname = format!("sw-{}", self.sudi.udi_serial_number.to_ascii_lowercase());
    }

    /// Makes this device the active of a set with a standby.
    pub fn with_standby(mut self, serial: &str) -> Self {
        self.ha_members
            .push(Sudi::new(self.sudi.udi_pid.clone(), serial));
        self
    }

    fn ha_udi(&self) -> Vec<HaMember> {
        let mut set = vec![HaMember {
            role: HaRole::Active,
            sudi: self.sudi.clone(),
        }];
        set.extend(self.ha_members.iter().enumerate().map(|(i, s)| HaMember {
            role: if i == 0 {
                HaRole::Standby
            } else {
                HaRole::Member
            },
            sudi: s.clone(),
        }));
        set
    }

    /// Closes the current measurement period into a signed RUM report: one day of usage at the
    /// current license count, which then drifts by one now and then, as on a real switch.
    pub fn next_report(&mut self) -> RumEnvelope {
        let report_id = self.next_report_id;
        self.next_report_id += 1;
        let start = self.clock;
        let end = start + 86_400;
        self.clock = end;
        let payload = json!({
            "version": "2.0",
            "asset_identification": {
                "report_id": report_id,
                "asset": { "name": SOFTWARE_TAG },
                "instance": { "sudi": self.sudi, "product_instance_identifier": self.product_instance_identifier },
            },
            "signature": { "signing_type": "builtin", "key": SOFTWARE_TAG, "value": "" },
            "meta": {
                "entitlement_tag": self.entitlement_tag,
                "utility_enabled": false,
                "software_version": self.software_version,
                "ha_udi": self.ha_udi(),
            },
            "measurements": [{
                "log_time": end,
                "metric_name": "ENTITLEMENT",
                "start_time": start,
                "end_time": end,
                "sample_interval": 86_400,
                "num_samples": 96,
                "meta": { "removed_sudi_list": [], "added_sudi_list": [] },
                "value": { "type": "COUNT", "value": self.license_count.to_string() },
            }],
        })
        .to_string();
        if report_id % 3 == 0 {
            self.license_count += 1;
        }
        let value = signature_value(&payload);
        RumEnvelope {
            payload,
            header: Some(json!({ "type": "rum" })),
            signature: json!({ "sudi": self.sudi, "signing_type": "builtin", "key": SOFTWARE_TAG, "value": value }),
        }
    }

    fn request(&self, message_type: MessageType) -> DeviceRequest {
        DeviceRequest {
            message_type,
            version: Some("1.0".into()),
            data: RequestData {
                timestamp: Some(chrono::Utc::now().timestamp_millis()),
                nonce: Some(outpost_core::crypto::random_alphanumeric(16)),
                sudi: Some(self.sudi.clone()),
                product_instance_identifier: Some(self.product_instance_identifier.clone()),
                hostname: Some(self.hostname.clone()),
                software_version: Some(self.software_version.clone()),
                software_tag_identifier: Some(SOFTWARE_TAG.into()),
                ha_udi: if self.ha_members.is_empty() {
                    Vec::new()
                } else {
                    self.ha_udi()
                },
                ..RequestData::default()
            },
        }
    }

    /// A `usage_report` carrying `reports` (and trust requests when asked to).
    pub fn usage_request(&self, reports: Vec<RumEnvelope>) -> DeviceRequest {
        let mut request = self.request(MessageType::UsageReport);
        request.data.usage = reports;
        if self.request_trust {
            request.data.trust_requests = self
                .set_udis()
                .into_iter()
                .map(|sudi| serde_json::json!({ "sudi": sudi }))
                .collect();
        }
        request
    }

    /// A `trust_sync`: the device installed the trust codes it received.
    pub fn trust_sync_request(&self) -> DeviceRequest {
        self.request(MessageType::TrustSync)
    }

    /// An `authorization_request` for `keys` (entitlement, count) on this device, with `all`
    /// covering its whole HA set.
    pub fn authorization_request(
        &self,
        keys: &[(&str, u32)],
        mode: AuthorizationMode,
        scope: AuthorizationScope,
    ) -> DeviceRequest {
        let mut request = self.request(MessageType::AuthorizationRequest);
        request.data.licenses = vec![LicenseRequest {
            sudi: self.sudi.clone(),
            keys: keys
                .iter()
                .map(|(entitlement, count)| LicenseKey {
                    entitlement: (*entitlement).to_owned(),
                    count: *count,
                })
                .collect(),
        }];
        request.data.mode = Some(mode);
        request.data.scope = Some(scope);
        request
    }

    /// An `authorization_confirmation` with the confirmation code of every SLAC received.
    pub fn confirmation_request(&self) -> DeviceRequest {
        let mut request = self.request(MessageType::AuthorizationConfirmation);
        request.data.confirmations = self
            .authorizations
            .iter()
            .filter_map(|(sudi, file)| {
                Some(Confirmation {
                    sudi: sudi.clone(),
                    confirm_code: data_of(file)?["confirm_code"].as_str()?.to_owned(),
                })
            })
            .collect();
        request
    }

    /// An `authorization_return` of what `member` holds, with a fresh return code; the device
    /// forgets those codes.
    pub fn return_request(&mut self, member: &Sudi) -> DeviceRequest {
        self.authorizations
            .retain(|(sudi, _)| !sudi.same_device(member));
        let mut request = self.request(MessageType::AuthorizationReturn);
        request.data.returns = vec![Return {
            sudi: member.clone(),
            return_code: outpost_core::crypto::random_alphanumeric(16),
        }];
        request
    }

    /// A `result_poll` for `poll_id`.
    pub fn poll_request(&self, poll_id: &str) -> DeviceRequest {
        let mut request = self.request(MessageType::ResultPoll);
        request.data.poll_id = Some(poll_id.to_owned());
        request
    }

    /// A `hello`.
    pub fn hello_request(&self) -> DeviceRequest {
        self.request(MessageType::Hello)
    }

    /// The offline RUM file `license smart save usage` would write for `reports`.
    pub fn offline_file(&self, reports: &[RumEnvelope]) -> String {
        let info = SystemInfo {
            sudi: Some(self.sudi.clone()),
            timestamp: Some(chrono::Utc::now().timestamp_millis()),
            nonce: Some(outpost_core::crypto::random_alphanumeric(16)),
            hostname: Some(self.hostname.clone()),
            software_tag_identifier: Some(SOFTWARE_TAG.into()),
        };
        offline_file::write(Some(&info), reports)
    }

    /// Keeps what an answer delivers: ACKs, the policy, trust codes, authorization codes,
    /// and the poll id of an `OK_POLL`.
    pub fn absorb(&mut self, response: &DeviceResponse) -> anyhow::Result<()> {
        let decode = |text: &str, what: &str| -> anyhow::Result<String> {
            let bytes = STANDARD
                .decode(text)
                .with_context(|| format!("{what} is not base64"))?;
            String::from_utf8(bytes).with_context(|| format!("{what} is not UTF-8"))
        };
        for ack in &response.data.acknowledgements {
            let file = decode(&ack.smart_license, "an ACK")?;
            if !self.acks.contains(&file) {
                self.acks.push(file);
            }
        }
        if let Some(policy) = &response.data.policy {
            self.policy = Some(decode(policy, "the policy")?);
        }
        for code in &response.data.trust_codes {
            let file = decode(&code.smart_license, "a trust code")?;
            if !self.trust_codes.contains(&file) {
                self.trust_codes.push(file);
            }
        }
        for code in &response.data.authorizations {
            let file = decode(&code.smart_license, "an authorization code")?;
            let sudi = code.sudi.clone().unwrap_or_else(|| self.sudi.clone());
            if !self.authorizations.iter().any(|(_, f)| *f == file) {
                self.authorizations.push((sudi, file));
            }
        }
        if let Some(poll_id) = response
            .poll_id
            .as_ref()
            .filter(|_| response.status == Status::OkPoll)
            && !self.pending_polls.contains(poll_id)
        {
            self.pending_polls.push(poll_id.clone());
        }
        Ok(())
    }

    /// Pushes reports and keeps the answer's poll id and ACKs.
    pub async fn push(
        &mut self,
        client: &PiClient,
        reports: Vec<RumEnvelope>,
    ) -> anyhow::Result<DeviceResponse> {
        let request = self.usage_request(reports);
        let (_, response) = client.exchange(&request).await?;
        self.absorb(&response)?;
        Ok(response)
    }

    /// Polls every pending poll id once; returns how many completed.
    pub async fn poll(&mut self, client: &PiClient) -> anyhow::Result<usize> {
        let mut completed = 0;
        for poll_id in self.pending_polls.clone() {
            let request = self.poll_request(&poll_id);
            let (_, response) = client.exchange(&request).await?;
            self.absorb(&response)?;
            if response.status == Status::Ok {
                self.pending_polls.retain(|p| *p != poll_id);
                completed += 1;
            }
        }
        Ok(completed)
    }

    /// Report ids acknowledged in the ACKs received (read from the ACK data, unverified: a
    /// device cannot check CSSM's signature either).
    pub fn acknowledged_report_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .acks
            .iter()
            .filter_map(|file| {
                let data = data_of(file)?;
                Some(
                    data["acked_report_ids"]
                        .as_array()?
                        .iter()
                        .filter_map(serde_json::Value::as_i64)
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The `value` of a simulated report's signature over `payload`: base64 of its SHA-256, a
/// stand-in for the device's own signature, which only Cisco can check. [`Device::next_report`]
/// and the load generator sign the same way.
pub fn signature_value(payload: &str) -> String {
    STANDARD.encode(Sha256::digest(payload.as_bytes()))
}

fn default_entitlement() -> String {
    ENTITLEMENT_TAG.into()
}

/// The JSON inside a signed file's `<data>` (unverified: a device cannot check CSSM's
/// signature either).
pub fn data_of(file: &str) -> Option<serde_json::Value> {
    let start = file.find("<data>")? + "<data>".len();
    let end = file[start..].find("</data>")? + start;
    serde_json::from_str(&quick_unescape(&file[start..end])).ok()
}

/// Undoes the XML escaping of `<data>` text (`&lt;`, `&gt;`, `&amp;`, `&quot;`, `&apos;`).
fn quick_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// An HTTP client bound to one transport URL.
#[derive(Debug, Clone)]
pub struct PiClient {
    http: reqwest::Client,
    url: String,
}

impl PiClient {
    /// A client for `url` (the tenant transport URL) trusting `ca_pem` besides the system roots.
    pub fn new(url: &str, ca_pem: Option<&str>) -> anyhow::Result<Self> {
        let roots: Vec<String> = ca_pem.map(str::to_owned).into_iter().collect();
        let tls = outpost_core::tls::client_config(&roots, true)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            url: url.to_owned(),
        })
    }

    /// Sends a JSON request; returns the HTTP status and the parsed answer, checking the nonce
    /// is echoed as the protocol requires.
    pub async fn exchange(&self, request: &DeviceRequest) -> anyhow::Result<(u16, DeviceResponse)> {
        let body = serde_json::to_vec(request)?;
        let (status, response) = self.post_raw("application/json", body).await?;
        let response: DeviceResponse = serde_json::from_slice(&response).with_context(|| {
            format!(
                "answer ({status}) is not a protocol response: {}",
                String::from_utf8_lossy(&response)
            )
        })?;
        if response.nonce != request.data.nonce && response.status != Status::Failed {
            bail!("the answer did not echo the nonce");
        }
        Ok((status, response))
    }

    /// Posts any body with any content type; returns the status and raw answer.
    pub async fn post_raw(
        &self,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("posting to {}", self.url))?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?.to_vec()))
    }
}
