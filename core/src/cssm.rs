//! Outpost <-> CSSM online API shapes (`PROTOCOL.md` section 5), shared by the worker's CSSM
//! client and the CSSM simulator so both always agree.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::udi::Sudi;

/// Base path of the Smart Accounts and Licensing API.
pub const API_BASE: &str = "/services/api/smart-accounts-and-licensing";
/// OAuth token path (client credentials).
pub const TOKEN_PATH: &str = "/as/token.oauth2";
/// Header naming the Smart Account on device-scoped calls.
pub const HEADER_SMART_ACCOUNT: &str = "X-CSW-SMART-ACCOUNT-ID";
/// Header naming the Virtual Account on device-scoped calls.
pub const HEADER_VIRTUAL_ACCOUNT: &str = "X-CSW-VIRTUAL-ACCOUNT-ID";
/// Header naming the system making the call (the Outpost instance).
pub const HEADER_REQUESTING_SYSTEM: &str = "X-CSW-REQUESTING-SYSTEM";

/// `POST /as/token.oauth2` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// A Virtual Account of a Smart Account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualAccount {
    /// CSSM id.
    pub virtual_account_id: String,
    /// Name.
    pub name: String,
}

/// A Smart Account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartAccount {
    /// CSSM id.
    pub account_id: String,
    /// Domain, e.g. `acme.example`.
    pub domain: String,
    /// Name.
    pub name: String,
    /// Its Virtual Accounts.
    pub virtual_accounts: Vec<VirtualAccount>,
}

/// `GET v2/accounts/search` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountsSearchResponse {
    /// `COMPLETE`.
    pub status: String,
    /// Accounts visible to the caller.
    pub accounts: Vec<SmartAccount>,
}

/// One signed report as uploaded: the exact payload string and the device's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageItem {
    /// The payload, byte for byte as the device signed it.
    pub payload: String,
    /// The device's signature object.
    pub signature: Value,
}

/// Reports of one device in a `reportusage` call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceUsage {
    /// The device.
    pub sudi: Sudi,
    /// Its hostname, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Its software tag, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_tag_identifier: Option<String>,
    /// Trust code requests the device made.
    #[serde(default)]
    pub trust_requests: Vec<Value>,
    /// The reports.
    pub usage: Vec<UsageItem>,
}

/// `data` of `POST v2/devices/reportusage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportUsageData {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// 16 alphanumeric characters.
    pub nonce: String,
    /// Reports grouped by device.
    pub reports: Vec<DeviceUsage>,
}

/// `POST v2/devices/reportusage` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportUsageRequest {
    /// The batch.
    pub data: ReportUsageData,
}

/// A report CSSM had already received (same UDI and report id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateReport {
    /// The device.
    pub sudi: Sudi,
    /// The report id.
    pub report_id: i64,
}

/// `POST v2/devices/reportusage` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportUsageResponse {
    /// `OK_POLL`.
    pub status: String,
    /// Human text.
    #[serde(default)]
    pub message: String,
    /// Poll with this for the ACKs.
    pub poll_id: String,
    /// Reports CSSM already had; not an error for the batch.
    #[serde(default)]
    pub duplicates: Vec<DuplicateReport>,
}

/// `data` of `POST v2/accounts/poll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollData {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// 16 alphanumeric characters.
    pub nonce: String,
    /// From `reportusage`.
    pub poll_id: String,
    /// `acknowledgements` or `authorizations`.
    pub action: String,
}

/// `POST v2/accounts/poll` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRequest {
    /// The poll.
    pub data: PollData,
}

/// One ACK file for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckEntry {
    /// The device.
    pub sudi: Sudi,
    /// base64 of the signed ACK file.
    pub smart_license: String,
}

/// `data` of a poll answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollResponseData {
    /// With action `acknowledgements`.
    #[serde(default)]
    pub acknowledgements: Vec<AckEntry>,
}

/// `POST v2/accounts/poll` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollResponse {
    /// `OK_POLL` (not ready) or `COMPLETE`.
    pub status: String,
    /// Human text.
    #[serde(default)]
    pub message: String,
    /// The ACKs when `COMPLETE`.
    #[serde(default)]
    pub data: PollResponseData,
}

/// Poll answer status: not ready yet.
pub const STATUS_OK_POLL: &str = "OK_POLL";
/// Poll answer status: done.
pub const STATUS_COMPLETE: &str = "COMPLETE";

/// `POST v1/onprem/registrations` body [ours].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRequest {
    /// The local account's name.
    pub name: String,
    /// Smart Account name.
    pub smart_account: String,
    /// Virtual Account name.
    pub virtual_account: String,
    /// The Outpost instance's public key (SPKI PEM).
    pub public_key_pem: String,
}

/// `POST v1/onprem/registrations` answer [ours].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationResponse {
    /// CSSM's id of this registration.
    pub registration_id: String,
    /// OAuth client id for later calls.
    pub client_id: String,
    /// OAuth client secret for later calls.
    pub client_secret: String,
    /// Smart Account id.
    pub smart_account_id: String,
    /// Virtual Account id.
    pub virtual_account_id: String,
}

/// Enforcement type of a license.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Used freely, reported later.
    Unenforced,
    /// Needs an authorization code before use.
    Enforced,
    /// Export-controlled (e.g. HSECK9); needs an authorization code.
    ExportControlled,
}

impl Enforcement {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Unenforced => "unenforced",
            Enforcement::Enforced => "enforced",
            Enforcement::ExportControlled => "export_controlled",
        }
    }
}

/// Term of a license.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    /// Never expires.
    Perpetual,
    /// Ends on `end_date`.
    Subscription,
}

impl Term {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Term::Perpetual => "perpetual",
            Term::Subscription => "subscription",
        }
    }
}

/// `GET v1/onprem/registrations/{id}/licenses` entry [ours].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseEntry {
    /// Entitlement tag.
    pub entitlement_tag: String,
    /// Display name.
    pub name: String,
    /// Quantity purchased.
    pub quantity: i64,
    /// Enforcement type.
    pub enforcement: Enforcement,
    /// Term.
    pub term: Term,
    /// `YYYY-MM-DD` for subscriptions.
    #[serde(default)]
    pub end_date: Option<String>,
}

/// Error body of the CSSM API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// `ERROR`.
    pub status: String,
    /// Human text.
    pub message: String,
}
