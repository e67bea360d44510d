//! Outpost <-> CSSM online API shapes (`docs/protocol.md` section 5), shared by the worker's CSSM
//! client and the CSSM simulator so both always agree.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::{CryptoError, EcdsaSigner};
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
    /// With action `authorizations`: one SLAC file per device and entitlement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorizations: Vec<AckEntry>,
}

/// One entitlement asked for in `devices/authrequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthKey {
    /// Entitlement tag.
    pub entitlement: String,
    /// How many.
    pub count: u32,
}

/// One device of `devices/authrequest`: keys to authorize, or none plus `remove_code` to return
/// what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthLicense {
    /// The device.
    pub sudi: Sudi,
    /// Hostname, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// What to authorize; empty for a return.
    pub keys: Vec<AuthKey>,
    /// The device's return code, for a return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_code: Option<String>,
}

/// `data` of `POST v2/devices/authrequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequestData {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// 16 alphanumeric characters.
    pub nonce: String,
    /// The devices.
    pub licenses: Vec<AuthLicense>,
}

/// `POST v2/devices/authrequest` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The request.
    pub data: AuthRequestData,
}

/// `POST v2/devices/authrequest` answer: `OK_POLL` with a poll id for codes (poll with action
/// `authorizations`), `COMPLETE` for a return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequestResponse {
    /// `OK_POLL` or `COMPLETE`.
    pub status: String,
    /// Human text.
    #[serde(default)]
    pub message: String,
    /// Poll id for the codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_id: Option<String>,
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

/// `type` of an offline registration request file [ours].
pub const REGISTRATION_REQUEST_FILE: &str = "outpost-registration-request";
/// `type` of an offline registration response file [ours].
pub const REGISTRATION_RESPONSE_FILE: &str = "outpost-registration-response";

/// A file carried by hand between Outpost and CSSM [ours]: `data` is JSON text and
/// `signature` the base64 DER ECDSA P-256 / SHA-256 signature of its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedFile {
    /// What the file is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The signed JSON text.
    pub data: String,
    /// base64 of the signature.
    pub signature: String,
}

/// Why a signed file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignedFileError {
    /// Not a signed file, or another kind.
    #[error("not an {expected} file: {message}")]
    Format {
        /// The kind expected.
        expected: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The signature does not verify.
    #[error("the signature does not verify: {0}")]
    Signature(CryptoError),
}

impl SignedFile {
    /// Signs `data` as a file of `kind`.
    pub fn sign<T: Serialize>(
        kind: &str,
        data: &T,
        signer: &EcdsaSigner,
    ) -> Result<Self, CryptoError> {
        let data = serde_json::to_string(data).map_err(|e| CryptoError::Generate(e.to_string()))?;
        let signature = STANDARD.encode(signer.sign(data.as_bytes())?);
        Ok(Self {
            kind: kind.to_owned(),
            data,
            signature,
        })
    }

    /// Reads a file of kind `expected` and checks its signature with `verify(message, sig)`.
    pub fn open<T: DeserializeOwned>(
        text: &str,
        expected: &'static str,
        verify: impl FnOnce(&T, &[u8], &[u8]) -> Result<(), CryptoError>,
    ) -> Result<T, SignedFileError> {
        let format = |message: String| SignedFileError::Format { expected, message };
        // The data is read before its signature can be checked (a request carries its own key),
        // and `flatten` buffers unknown fields whole: bound both documents first.
        let mut census = crate::json::Census::default();
        census
            .check(text.as_bytes())
            .map_err(|e| format(format!("the file holds {e}")))?;
        let file: SignedFile = serde_json::from_str(text).map_err(|e| format(e.to_string()))?;
        if file.kind != expected {
            return Err(format(format!("its type is '{}'", file.kind)));
        }
        census
            .check(file.data.as_bytes())
            .map_err(|e| format(format!("data holds {e}")))?;
        let data: T = serde_json::from_str(&file.data).map_err(|e| format(format!("data: {e}")))?;
        let signature = STANDARD
            .decode(&file.signature)
            .map_err(|_| format("signature is not base64".into()))?;
        verify(&data, file.data.as_bytes(), &signature).map_err(SignedFileError::Signature)?;
        Ok(data)
    }
}

/// What an offline registration request says, signed with the Outpost instance key [ours].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRequestData {
    /// The request proper, as sent online.
    #[serde(flatten)]
    pub request: RegistrationRequest,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Echoed by the response, so a response answers exactly this request.
    pub nonce: String,
}

/// What an offline registration response says, signed with the CSSM key [ours].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationResponseData {
    /// The registration, as returned online.
    #[serde(flatten)]
    pub registration: RegistrationResponse,
    /// The local account's name from the request.
    pub name: String,
    /// The request's nonce.
    pub request_nonce: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{generate_key_pair, verify_with_public_key_pem};

    #[test]
    fn a_registration_request_carries_its_own_key() {
        let (private, public) = generate_key_pair().unwrap();
        let signer = EcdsaSigner::from_pkcs8_pem(&private).unwrap();
        let data = RegistrationRequestData {
            request: RegistrationRequest {
                name: "Acme".into(),
                smart_account: "Acme Corp".into(),
                virtual_account: "Campus".into(),
                public_key_pem: public,
            },
            timestamp: 1,
            nonce: "n".into(),
        };
        let file = serde_json::to_string(
            &SignedFile::sign(REGISTRATION_REQUEST_FILE, &data, &signer).unwrap(),
        )
        .unwrap();
        let check = |d: &RegistrationRequestData, msg: &[u8], sig: &[u8]| {
            verify_with_public_key_pem(&d.request.public_key_pem, msg, sig)
        };
        assert_eq!(
            SignedFile::open(&file, REGISTRATION_REQUEST_FILE, check).unwrap(),
            data
        );

        let tampered = file.replace("Campus", "DC");
        assert!(matches!(
            SignedFile::open(&tampered, REGISTRATION_REQUEST_FILE, check),
            Err(SignedFileError::Signature(_))
        ));
        let err = SignedFile::open(
            &file,
            REGISTRATION_RESPONSE_FILE,
            |_: &RegistrationResponseData, _: &[u8], _: &[u8]| Ok(()),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("its type is 'outpost-registration-request'"),
            "{err}"
        );
    }
}
