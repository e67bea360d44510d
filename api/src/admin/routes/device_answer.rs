//! The schema of `outpost_core::device::DeviceResponse`, the answer of `POST
//! /accounts/{id}/usage-files`. `outpost_core` stays free of documentation and web crates, so
//! these types only describe that answer in the OpenAPI document; the handler sends the core
//! type itself. A test reads real answers into them field for field, so the two cannot drift.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// An answer as a device would receive it.
#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(test, derive(serde::Deserialize), serde(deny_unknown_fields))]
pub struct DeviceAnswer {
    /// The status word.
    #[schema(schema_with = status_schema)]
    pub status: String,
    /// The request's nonce, echoed.
    pub nonce: Option<String>,
    /// Human-readable text.
    pub message: String,
    /// Machine-readable reason in SCREAMING_SNAKE_CASE, e.g. `USAGE_ACCEPTED`.
    pub message_code: String,
    /// With `OK_POLL`: what to poll with.
    pub poll_id: Option<String>,
    /// With `OK_TRY_AGAIN`: seconds to wait.
    pub retry_after: Option<u64>,
    /// Payloads for the device.
    pub data: DeviceAnswerData,
}

/// The schema of the status word: one of four.
fn status_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["OK", "OK_POLL", "OK_TRY_AGAIN", "FAILED"]))
        .description(Some(
            "`OK`: done, `data` may carry payloads; `OK_POLL`: accepted, poll with `poll_id`; \
             `OK_TRY_AGAIN`: retry after `retry_after` seconds; `FAILED`: `message_code` says why.",
        ))
        .build()
}

/// Payloads delivered with an answer; each key is left out when it has nothing.
#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(test, derive(serde::Deserialize), serde(deny_unknown_fields))]
pub struct DeviceAnswerData {
    /// RUM ACKs (each may embed a policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledgements: Vec<SignedFile>,
    /// A policy file on its own, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Authorization codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorizations: Vec<SignedFile>,
    /// Trust codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_codes: Vec<SignedFile>,
    /// The account the device reports into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_info: Option<DeviceAccountInfo>,
}

/// A signed file for the device.
#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(test, derive(serde::Deserialize), serde(deny_unknown_fields))]
pub struct SignedFile {
    /// The device the file is for (`udi_pid`, `udi_serial_number`, and any other keys the
    /// device sent), when the message carries several devices' files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub sudi: Option<serde_json::Value>,
    /// base64 of the file, exactly as CSSM signed it.
    pub smart_license: String,
}

/// Which account the device reports into.
#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(test, derive(serde::Deserialize), serde(deny_unknown_fields))]
pub struct DeviceAccountInfo {
    /// CSSM Smart Account.
    pub smart_account: String,
    /// CSSM Virtual Account.
    pub virtual_account: String,
    /// Outpost local account.
    pub local_account: String,
    /// Milliseconds since the epoch.
    pub as_of: i64,
}

#[cfg(test)]
mod tests {
    use outpost_core::device::{
        AccountInfo, DeviceResponse, MessageCode, ResponseData, SmartLicenseFile, Status,
    };
    use outpost_core::udi::Sudi;

    use super::*;

    /// Every answer of the core type reads into the schema types without a field left over
    /// or missing, and writes back the same JSON.
    #[test]
    fn the_schema_types_mirror_the_core_answer() {
        let file = |sudi: Option<Sudi>| SmartLicenseFile {
            sudi,
            smart_license: "PHNtYXJ0TGljZW5zZT4=".into(),
        };
        let sudi = Sudi {
            udi_pid: "C9300-24UX".into(),
            udi_serial_number: "FCW2134L00C".into(),
            extra: serde_json::Map::from_iter([("mac".to_owned(), "00:11:22".into())]),
        };
        let full = DeviceResponse {
            status: Status::Ok,
            nonce: Some("n1".into()),
            message: "done".into(),
            message_code: MessageCode::PollComplete,
            poll_id: Some("p1".into()),
            retry_after: Some(5),
            data: ResponseData {
                acknowledgements: vec![file(None)],
                policy: Some("cG9saWN5".into()),
                authorizations: vec![file(Some(sudi.clone()))],
                trust_codes: vec![file(Some(sudi))],
                account_info: Some(AccountInfo {
                    smart_account: "Acme".into(),
                    virtual_account: "Campus".into(),
                    local_account: "Acme Campus".into(),
                    as_of: 1_700_000_000_000,
                }),
            },
        };
        let answers = [
            full,
            DeviceResponse::failed(None, MessageCode::MalformedRequest, "bad"),
            DeviceResponse::try_again(Some("n2".into()), 30, "busy"),
            DeviceResponse {
                status: Status::OkPoll,
                ..DeviceResponse::failed(None, MessageCode::UsageAccepted, "stored")
            },
        ];
        for answer in answers {
            let json = serde_json::to_value(&answer).unwrap();
            let mirrored: DeviceAnswer =
                serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(serde_json::to_value(&mirrored).unwrap(), json);
        }
    }
}
