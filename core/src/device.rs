//! The device-facing push protocol (`docs/protocol.md` section 3): what a product instance posts to
//! `/cslu/v1/pi/{tenant}` and what Outpost answers. Shared by the API tier and the
//! product-instance simulator.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::offline_file::OfflineRumFile;
use crate::rum::RumEnvelope;
use crate::udi::{HaMember, Sudi};

/// Longest nonce echoed back; device nonces are 16 characters.
pub const MAX_NONCE_LEN: usize = 128;
/// Longest hostname (DNS limit).
pub const MAX_HOSTNAME_LEN: usize = 255;
/// Longest free-text identifier (software version, tags, PI identifier).
pub const MAX_FIELD_LEN: usize = crate::rum::MAX_TEXT_LEN;
/// Most reports one `usage_report` (or one RUM file) may carry. A device sends what it holds
/// since its last report, a few to a few hundred; the cap keeps one request's transaction sane.
pub const MAX_REPORTS: usize = 10_000;

/// The exchanges a device makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// Liveness and pending-payload pickup.
    Hello,
    /// Trust code synchronisation.
    TrustSync,
    /// Usage (RUM) reports.
    UsageReport,
    /// Asks whether the ACK for an earlier report is ready.
    ResultPoll,
    /// Requests authorization codes (SLAC).
    AuthorizationRequest,
    /// Confirms installed authorization codes.
    AuthorizationConfirmation,
    /// Returns authorization codes.
    AuthorizationReturn,
}

impl MessageType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Hello => "hello",
            MessageType::TrustSync => "trust_sync",
            MessageType::UsageReport => "usage_report",
            MessageType::ResultPoll => "result_poll",
            MessageType::AuthorizationRequest => "authorization_request",
            MessageType::AuthorizationConfirmation => "authorization_confirmation",
            MessageType::AuthorizationReturn => "authorization_return",
        }
    }
}

/// A device request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRequest {
    /// What the device asks for.
    pub message_type: MessageType,
    /// Protocol version, `"1.0"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The message body.
    pub data: RequestData,
}

/// The `data` of a device request; which fields matter depends on the message type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestData {
    /// Milliseconds since the epoch, device clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The device's UDI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudi: Option<Sudi>,
    /// The device's product instance UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_instance_identifier: Option<String>,
    /// Absent when the device's privacy settings hide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Absent when the device's privacy settings hide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// The device's software tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_tag_identifier: Option<String>,
    /// Members of the device's HA set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ha_udi: Vec<HaMember>,
    /// `usage_report`: the signed reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<RumEnvelope>,
    /// `usage_report`: trust code requests, forwarded to CSSM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_requests: Vec<Value>,
    /// `result_poll`: the poll id of an earlier `OK_POLL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_id: Option<String>,
    /// `authorization_request`: what each device asks to be authorized for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseRequest>,
    /// `authorization_request`: add to what the devices hold, or replace it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AuthorizationMode>,
    /// `authorization_request` [ours]: `all` asks for every UDI of the HA set, `local` only for
    /// the devices listed (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<AuthorizationScope>,
    /// `authorization_confirmation`: the codes of installed SLACs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmations: Vec<Confirmation>,
    /// `authorization_return`: the devices giving their authorization back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returns: Vec<Return>,
}

/// Entitlements one device asks to be authorized for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseRequest {
    /// The device.
    pub sudi: Sudi,
    /// What it asks for.
    pub keys: Vec<LicenseKey>,
}

/// One entitlement and count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseKey {
    /// Entitlement tag.
    pub entitlement: String,
    /// How many, at least 1.
    pub count: u32,
}

/// How an authorization request treats what the devices already hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationMode {
    /// Adds to the codes held.
    Add,
    /// The new codes supersede those held, which go back to the pool.
    Replace,
}

/// Which devices of an HA set an authorization request covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationScope {
    /// Every UDI of the sender's HA set.
    All,
    /// Only the devices listed.
    Local,
}

/// A confirmation code of an installed SLAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The device.
    pub sudi: Sudi,
    /// The code from the SLAC.
    pub confirm_code: String,
}

/// A device returning its authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    /// The device.
    pub sudi: Sudi,
    /// The return code the device generated.
    pub return_code: String,
}

/// Why a request body was refused before anything was stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

impl DeviceRequest {
    /// Parses a JSON body; the error names the offending field and position. A body wider
    /// than [`crate::json::MAX_VALUES`] is refused before anything is built from it.
    pub fn from_json(body: &[u8]) -> Result<Self, InvalidRequest> {
        crate::json::check(body).map_err(|e| InvalidRequest(format!("the body holds {e}")))?;
        let mut de = serde_json::Deserializer::from_slice(body);
        let request: DeviceRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path == "?" || path.is_empty() {
                InvalidRequest(format!("body is not a valid request: {inner}"))
            } else {
                InvalidRequest(format!("{path}: {inner}"))
            }
        })?;
        de.end()
            .map_err(|e| InvalidRequest(format!("trailing data after the request: {e}")))?;
        request.validate()?;
        Ok(request)
    }

    /// The `usage_report` an offline RUM file amounts to, for the device named in it.
    pub fn from_offline_file(file: OfflineRumFile) -> Result<Self, InvalidRequest> {
        let sudi = file.device().ok_or_else(|| {
            InvalidRequest(
                "the RUM file names no device (no system info and no readable report)".into(),
            )
        })?;
        let info = file.system_info.unwrap_or_default();
        let request = DeviceRequest {
            message_type: MessageType::UsageReport,
            version: Some("1.0".into()),
            data: RequestData {
                timestamp: info.timestamp,
                nonce: info.nonce,
                sudi: Some(sudi),
                hostname: info.hostname,
                software_tag_identifier: info.software_tag_identifier,
                usage: file.reports,
                ..RequestData::default()
            },
        };
        request.validate()?;
        Ok(request)
    }

    /// Checks sizes and identifiers so nothing unusable reaches storage.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        let d = &self.data;
        let too_long = |field: &str, value: &Option<String>, max: usize| match value {
            Some(v) if v.chars().count() > max => Err(InvalidRequest(format!(
                "data.{field} is longer than {max} characters"
            ))),
            Some(v) if v.contains('\0') => Err(InvalidRequest(format!(
                "data.{field} contains a NUL character"
            ))),
            _ => Ok(()),
        };
        too_long("nonce", &d.nonce, MAX_NONCE_LEN)?;
        too_long("hostname", &d.hostname, MAX_HOSTNAME_LEN)?;
        too_long("software_version", &d.software_version, MAX_FIELD_LEN)?;
        too_long(
            "software_tag_identifier",
            &d.software_tag_identifier,
            MAX_FIELD_LEN,
        )?;
        too_long(
            "product_instance_identifier",
            &d.product_instance_identifier,
            MAX_FIELD_LEN,
        )?;
        too_long("poll_id", &d.poll_id, MAX_FIELD_LEN)?;
        if let Some(sudi) = &d.sudi {
            sudi.validate()
                .map_err(|e| InvalidRequest(format!("data.sudi: {e}")))?;
        }
        if d.usage.len() > MAX_REPORTS {
            return Err(InvalidRequest(format!(
                "data.usage has {} reports; a request carries at most {MAX_REPORTS}",
                d.usage.len()
            )));
        }
        if d.ha_udi.len() > crate::udi::MAX_HA_MEMBERS {
            return Err(InvalidRequest(format!(
                "data.ha_udi has {} members; an HA set has at most {}",
                d.ha_udi.len(),
                crate::udi::MAX_HA_MEMBERS
            )));
        }
        if d.trust_requests.iter().any(crate::rum::contains_nul) {
            return Err(InvalidRequest(
                "data.trust_requests contains a NUL character".into(),
            ));
        }
        for (i, member) in d.ha_udi.iter().enumerate() {
            member
                .sudi
                .validate()
                .map_err(|e| InvalidRequest(format!("data.ha_udi[{i}].sudi: {e}")))?;
        }
        let code = |field: String, value: &str| {
            if value.is_empty()
                || value.len() > MAX_FIELD_LEN
                || !value.chars().all(|c| c.is_ascii_alphanumeric())
            {
                Err(InvalidRequest(format!(
                    "{field} must be 1 to {MAX_FIELD_LEN} letters and digits"
                )))
            } else {
                Ok(())
            }
        };
        for (i, license) in d.licenses.iter().enumerate() {
            license
                .sudi
                .validate()
                .map_err(|e| InvalidRequest(format!("data.licenses[{i}].sudi: {e}")))?;
            if license.keys.is_empty() {
                return Err(InvalidRequest(format!("data.licenses[{i}].keys is empty")));
            }
            for (j, key) in license.keys.iter().enumerate() {
                if key.entitlement.is_empty()
                    || key.entitlement.len() > MAX_FIELD_LEN
                    || key.entitlement.contains('\0')
                {
                    return Err(InvalidRequest(format!(
                        "data.licenses[{i}].keys[{j}].entitlement must be 1 to {MAX_FIELD_LEN} characters"
                    )));
                }
                if key.count == 0 || key.count > 10_000 {
                    return Err(InvalidRequest(format!(
                        "data.licenses[{i}].keys[{j}].count must be between 1 and 10000"
                    )));
                }
            }
        }
        for (i, c) in d.confirmations.iter().enumerate() {
            c.sudi
                .validate()
                .map_err(|e| InvalidRequest(format!("data.confirmations[{i}].sudi: {e}")))?;
            code(
                format!("data.confirmations[{i}].confirm_code"),
                &c.confirm_code,
            )?;
        }
        for (i, r) in d.returns.iter().enumerate() {
            r.sudi
                .validate()
                .map_err(|e| InvalidRequest(format!("data.returns[{i}].sudi: {e}")))?;
            code(format!("data.returns[{i}].return_code"), &r.return_code)?;
        }
        Ok(())
    }
}

/// The status word of every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Done; `data` may carry payloads.
    #[serde(rename = "OK")]
    Ok,
    /// Accepted; poll later with `poll_id`.
    #[serde(rename = "OK_POLL")]
    OkPoll,
    /// Not accepted now; retry after `retry_after` seconds.
    #[serde(rename = "OK_TRY_AGAIN")]
    OkTryAgain,
    /// Rejected; `message_code` says why.
    #[serde(rename = "FAILED")]
    Failed,
}

/// Machine-readable reason of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageCode {
    /// `hello` answered.
    HelloOk,
    /// Reports stored; ACK to follow.
    UsageAccepted,
    /// A `usage_report` with no reports.
    NoReports,
    /// The ACK for a poll is not ready yet.
    PollPending,
    /// The ACK for a poll is in `data`.
    PollComplete,
    /// The body could not be read.
    MalformedRequest,
    /// The body is larger than the configured limit.
    BodyTooLarge,
    /// The body did not arrive in time.
    RequestTimeout,
    /// No tenant has that id.
    UnknownTenant,
    /// The tenant is deactivated.
    TenantInactive,
    /// Device validation is on and the UDI is not in the tenant's inventory.
    DeviceNotAllowed,
    /// `result_poll` names a poll this device never received.
    UnknownPollId,
    /// A message type this Outpost does not handle yet.
    NotSupported,
    /// Overloaded or the database is unavailable; retry later.
    TryAgain,
    /// An unexpected server fault (details in Outpost's log).
    InternalError,
    /// `trust_sync` answered; installed trust codes recorded.
    TrustSynced,
    /// Authorization codes asked of CSSM; poll for them.
    AuthorizationPending,
    /// Authorization codes are in `data.authorizations`.
    AuthorizationIssued,
    /// Confirmation codes recorded.
    AuthorizationConfirmed,
    /// Authorization returned; the licenses are back in the pool.
    AuthorizationReturned,
    /// The pool holds fewer licenses than asked for.
    InsufficientLicenses,
    /// The entitlement needs no authorization code, or is unknown to the account.
    NotAuthorizable,
    /// No authorization matches the device and code.
    UnknownAuthorization,
    /// CSSM refused to issue the codes; `message` says why.
    AuthorizationFailed,
    /// An earlier authorization request for the same device and entitlement still waits.
    RequestPending,
}

/// An answer to a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceResponse {
    /// The status word.
    pub status: Status,
    /// The request's nonce, echoed.
    pub nonce: Option<String>,
    /// Human-readable text.
    pub message: String,
    /// Machine-readable reason.
    pub message_code: MessageCode,
    /// With `OK_POLL`: what to poll with.
    pub poll_id: Option<String>,
    /// With `OK_TRY_AGAIN`: seconds to wait.
    pub retry_after: Option<u64>,
    /// Payloads for the device.
    #[serde(default)]
    pub data: ResponseData,
}

impl DeviceResponse {
    /// A `FAILED` answer.
    pub fn failed(nonce: Option<String>, code: MessageCode, message: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            nonce,
            message: message.into(),
            message_code: code,
            poll_id: None,
            retry_after: None,
            data: ResponseData::default(),
        }
    }

    /// An `OK_TRY_AGAIN` answer.
    pub fn try_again(nonce: Option<String>, retry_after: u64, message: impl Into<String>) -> Self {
        Self {
            status: Status::OkTryAgain,
            retry_after: Some(retry_after),
            ..Self::failed(nonce, MessageCode::TryAgain, message)
        }
    }
}

/// A signed file for the device, base64 in `smart_license`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartLicenseFile {
    /// The device the file is for, when the message carries several devices' files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudi: Option<Sudi>,
    /// base64 of the file, exactly as CSSM signed it.
    pub smart_license: String,
}

/// Which account the device reports into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// CSSM Smart Account.
    pub smart_account: String,
    /// CSSM Virtual Account.
    pub virtual_account: String,
    /// Outpost local account.
    pub local_account: String,
    /// Milliseconds since the epoch.
    pub as_of: i64,
}

/// Payloads delivered to the device with an answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseData {
    /// RUM ACKs (each may embed a policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledgements: Vec<SmartLicenseFile>,
    /// A policy file on its own, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Authorization codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorizations: Vec<SmartLicenseFile>,
    /// Trust codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_codes: Vec<SmartLicenseFile>,
    /// The account the device reports into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_info: Option<AccountInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_the_field() {
        let body = br#"{"message_type":"usage_report","data":{"sudi":{"udi_pid":"A"}}}"#;
        let err = DeviceRequest::from_json(body).unwrap_err();
        assert!(
            err.0
                .starts_with("data.sudi: missing field `udi_serial_number`"),
            "{}",
            err.0
        );

        let err = DeviceRequest::from_json(br#"{"message_type":"bogus","data":{}}"#).unwrap_err();
        assert!(
            err.0.starts_with("message_type: unknown variant `bogus`"),
            "{}",
            err.0
        );

        let err = DeviceRequest::from_json(b"{").unwrap_err();
        assert!(
            err.0.starts_with("body is not a valid request"),
            "{}",
            err.0
        );
    }

    #[test]
    fn a_wide_body_or_too_many_reports_is_refused() {
        // Values in a field Outpost keeps as JSON: `[0,0,...]` would cost ~32 bytes a value.
        let wide = format!(
            r#"{{"message_type":"usage_report","data":{{"trust_requests":[{}0]}}}}"#,
            "0,".repeat(crate::json::MAX_VALUES)
        );
        let err = DeviceRequest::from_json(wide.as_bytes()).unwrap_err();
        assert_eq!(err.0, "the body holds more than 200000 JSON values");

        let report = r#"{"payload":"x","signature":{}}"#;
        let reports = vec![report; MAX_REPORTS + 1].join(",");
        let body = format!(r#"{{"message_type":"usage_report","data":{{"usage":[{reports}]}}}}"#);
        let err = DeviceRequest::from_json(body.as_bytes()).unwrap_err();
        assert_eq!(
            err.0,
            "data.usage has 10001 reports; a request carries at most 10000"
        );
    }

    #[test]
    fn answers_serialise_with_spec_words() {
        let r = DeviceResponse::try_again(Some("n".into()), 30, "busy");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "OK_TRY_AGAIN");
        assert_eq!(v["message_code"], "TRY_AGAIN");
        assert_eq!(v["retry_after"], 30);
        assert_eq!(v["nonce"], "n");
    }
}
