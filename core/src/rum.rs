//! RUM (usage) reports: the signed envelope and the facts Outpost reads from its payload
//! (`docs/protocol.md` section 2).
//!
//! The `payload` is a JSON document serialised as a string and signed by the device. Outpost
//! keeps that string exactly as decoded from the envelope and never re-serialises it: the
//! signature CSSM checks covers those bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::udi::{HaMember, HaRole, MAX_HA_MEMBERS, Sudi};

/// Longest text field read from a payload (tags, versions, identifiers).
pub const MAX_TEXT_LEN: usize = 512;
/// Latest measurement end accepted: 9999-12-31 (PostgreSQL and people agree on that range).
const MAX_EPOCH_SECONDS: i64 = 253_402_300_799;

/// True when any string (or object key) inside holds a NUL character, which PostgreSQL cannot
/// store in `text` or `jsonb` and no real device sends.
pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// A signed RUM report as it travels on the wire and in files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RumEnvelope {
    /// The signed JSON text, byte for byte as the device wrote it.
    pub payload: String,
    /// `{"type": "rum"}`; absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Value>,
    /// The device's signature over `payload` (`sudi`, `signing_type`, `key`, `value`).
    pub signature: Value,
}

/// Why a report was refused; the message names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RumError {
    /// The payload string is not JSON.
    #[error("payload is not valid JSON: {0}")]
    PayloadNotJson(String),
    /// A required field is missing or has the wrong type.
    #[error("payload field {field} {problem}")]
    Field {
        /// Dotted path of the field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The envelope itself is unusable.
    #[error("{0}")]
    Envelope(&'static str),
    /// The payload is wider than any real one ([`crate::json::MAX_VALUES`]).
    #[error("payload holds {0}")]
    PayloadTooLarge(#[from] crate::json::TooManyValues),
}

/// One entitlement measurement of a report, reduced to what usage tracking needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// End of the measured interval, seconds since the epoch.
    pub end_time: i64,
    /// The license count in use during the interval.
    pub count: i64,
}

/// What Outpost reads from a payload. The payload itself stays the source of truth.
#[derive(Debug, Clone, PartialEq)]
pub struct RumFacts {
    /// `version` (`"2.0"` on IOS-XE 17.9+; absent before).
    pub version: Option<String>,
    /// Unique per device; the idempotency key together with the UDI.
    pub report_id: i64,
    /// The device that wrote the report.
    pub instance: Sudi,
    /// `asset_identification.instance.product_instance_identifier`, when present.
    pub product_instance_identifier: Option<String>,
    /// The software tag (`asset_identification.asset.name`).
    pub software_tag: Option<String>,
    /// The entitlement measured (`meta.entitlement_tag`); telemetry reports have none.
    pub entitlement_tag: Option<String>,
    /// `meta.software_version`.
    pub software_version: Option<String>,
    /// Members of the device's HA set (`meta.ha_udi`).
    pub ha_udi: Vec<HaMember>,
    /// `meta.report_type == "telemetry"`: stored and forwarded, never counted as usage.
    pub telemetry: bool,
    /// Entitlement counts over time.
    pub measurements: Vec<Measurement>,
}

impl RumFacts {
    /// The latest measurement, which gives the current count (`docs/protocol.md` section 2).
    pub fn latest_measurement(&self) -> Option<&Measurement> {
        self.measurements.iter().max_by_key(|m| m.end_time)
    }
}

impl RumEnvelope {
    /// Checks the envelope and reads the payload's facts.
    pub fn facts(&self) -> Result<RumFacts, RumError> {
        if self.payload.is_empty() {
            return Err(RumError::Envelope("payload is empty"));
        }
        // PostgreSQL text cannot hold NUL; no real payload contains one.
        if self.payload.contains('\0') {
            return Err(RumError::Envelope("payload contains a NUL character"));
        }
        if !self.signature.is_object() {
            return Err(RumError::Envelope("signature is not an object"));
        }
        if contains_nul(&self.signature) || self.header.as_ref().is_some_and(contains_nul) {
            return Err(RumError::Envelope(
                "signature or header contains a NUL character",
            ));
        }
        parse_payload(&self.payload)
    }
}

/// Reads the facts of a payload string, accepting version 2.0 and older layouts.
pub fn parse_payload(payload: &str) -> Result<RumFacts, RumError> {
    crate::json::check(payload.as_bytes())?;
    let doc: Value =
        serde_json::from_str(payload).map_err(|e| RumError::PayloadNotJson(e.to_string()))?;
    if !doc.is_object() {
        return Err(RumError::PayloadNotJson("not a JSON object".into()));
    }
    if contains_nul(&doc) {
        return Err(RumError::Envelope("payload contains a NUL character"));
    }
    let asset_id = &doc["asset_identification"];
    let meta = &doc["meta"];

    // Version 2.0 carries report_id in asset_identification, 17.3-17.8 in meta.
    let report_id = match (&asset_id["report_id"], &meta["report_id"]) {
        (v, _) if !v.is_null() => integer(v, "asset_identification.report_id")?,
        (_, v) if !v.is_null() => integer(v, "meta.report_id")?,
        _ => {
            return Err(RumError::Field {
                field: "asset_identification.report_id",
                problem: "is missing",
            });
        }
    };
    if report_id < 0 {
        return Err(RumError::Field {
            field: "report_id",
            problem: "is negative",
        });
    }

    let instance_value = &asset_id["instance"]["sudi"];
    if instance_value.is_null() {
        return Err(RumError::Field {
            field: "asset_identification.instance.sudi",
            problem: "is missing",
        });
    }
    let instance: Sudi =
        serde_json::from_value(instance_value.clone()).map_err(|_| RumError::Field {
            field: "asset_identification.instance.sudi",
            problem: "is not a sudi object",
        })?;
    instance.validate().map_err(|_| RumError::Field {
        field: "asset_identification.instance.sudi",
        problem: "has an unusable PID or serial number",
    })?;

    let measurements = match &doc["measurements"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .filter_map(measurement)
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(RumError::Field {
                field: "measurements",
                problem: "is not an array",
            });
        }
    };

    Ok(RumFacts {
        version: doc["version"].as_str().map(str::to_owned),
        report_id,
        instance,
        product_instance_identifier: text(
            &asset_id["instance"]["product_instance_identifier"],
            "asset_identification.instance.product_instance_identifier",
        )?,
        software_tag: text(
            &asset_id["asset"]["name"],
            "asset_identification.asset.name",
        )?,
        entitlement_tag: text(&meta["entitlement_tag"], "meta.entitlement_tag")?,
        software_version: text(&meta["software_version"], "meta.software_version")?,
        ha_udi: ha_members(&meta["ha_udi"])?,
        telemetry: meta["report_type"].as_str() == Some("telemetry"),
        measurements,
    })
}

/// An optional text field, refused when longer than any real one.
fn text(v: &Value, field: &'static str) -> Result<Option<String>, RumError> {
    match v.as_str().filter(|s| !s.is_empty()) {
        Some(s) if s.chars().count() > MAX_TEXT_LEN => Err(RumError::Field {
            field,
            problem: "is longer than 512 characters",
        }),
        other => Ok(other.map(str::to_owned)),
    }
}

/// Report ids and counts arrive as numbers or decimal strings depending on the release.
fn integer(v: &Value, field: &'static str) -> Result<i64, RumError> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or(RumError::Field {
        field,
        problem: "is not an integer in range",
    })
}

/// Entitlement COUNT measurements only; other metric kinds are kept in the payload but not read.
fn measurement(m: &Value) -> Option<Result<Measurement, RumError>> {
    let metric = m["metric_name"].as_str().unwrap_or("ENTITLEMENT");
    let kind = m["value"]["type"].as_str().unwrap_or("COUNT");
    if metric != "ENTITLEMENT" || kind != "COUNT" {
        return None;
    }
    Some((|| {
        let end_time = integer(&m["end_time"], "measurements[].end_time")?;
        if !(0..=MAX_EPOCH_SECONDS).contains(&end_time) {
            return Err(RumError::Field {
                field: "measurements[].end_time",
                problem: "is out of range",
            });
        }
        let count = integer(&m["value"]["value"], "measurements[].value.value")?;
        if count < 0 {
            return Err(RumError::Field {
                field: "measurements[].value.value",
                problem: "is negative",
            });
        }
        Ok(Measurement { end_time, count })
    })())
}

fn ha_members(v: &Value) -> Result<Vec<HaMember>, RumError> {
    let Some(items) = v.as_array() else {
        return Ok(Vec::new());
    };
    if items.len() > MAX_HA_MEMBERS {
        return Err(RumError::Field {
            field: "meta.ha_udi",
            problem: "has more members than any HA set",
        });
    }
    items
        .iter()
        .map(|item| {
            let sudi: Sudi =
                serde_json::from_value(item["sudi"].clone()).map_err(|_| RumError::Field {
                    field: "meta.ha_udi[].sudi",
                    problem: "is not a sudi object",
                })?;
            Ok(HaMember {
                role: parse_role(item["role"].as_str().unwrap_or("")),
                sudi,
            })
        })
        .collect()
}

/// Devices spell roles `Active`/`Standby`; anything else in a stack is a member.
pub fn parse_role(role: &str) -> HaRole {
    if role.eq_ignore_ascii_case("active") {
        HaRole::Active
    } else if role.eq_ignore_ascii_case("standby") {
        HaRole::Standby
    } else {
        HaRole::Member
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"{"version":"2.0","asset_identification":{"report_id":1671840750,"asset":{"name":"regid.2018-05.com.cisco.WLC_9500C,1.0_85665885"},"instance":{"sudi":{"udi_pid":"C9800-CL-K9","udi_serial_number":"9NTUEA8FIIH"}}},"meta":{"entitlement_tag":"regid.2018-06.com.cisco.DNA_NWStack,1.0_e7244e71","software_version":"17.09.02","ha_udi":[{"role":"Active","sudi":{"udi_pid":"C9800-CL-K9","udi_serial_number":"9NTUEA8FIIH"}}]},"measurements":[{"metric_name":"ENTITLEMENT","end_time":1671966644,"value":{"type":"COUNT","value":"2"}},{"metric_name":"ENTITLEMENT","end_time":1673790212,"value":{"type":"COUNT","value":"3"}}]}"#;

    #[test]
    fn reads_version_2_payload() {
        let facts = parse_payload(V2).unwrap();
        assert_eq!(facts.report_id, 1671840750);
        assert_eq!(facts.instance, Sudi::new("C9800-CL-K9", "9NTUEA8FIIH"));
        assert_eq!(facts.ha_udi.len(), 1);
        assert_eq!(facts.latest_measurement().unwrap().count, 3);
        assert!(!facts.telemetry);
    }

    #[test]
    fn reads_older_payload_with_report_id_in_meta() {
        let p = r#"{"asset_identification":{"instance":{"sudi":{"udi_pid":"C9300-24UX","udi_serial_number":"FCW1"}}},"meta":{"report_id":"42","report_type":"telemetry"}}"#;
        let facts = parse_payload(p).unwrap();
        assert_eq!(facts.report_id, 42);
        assert!(facts.telemetry);
        assert!(facts.measurements.is_empty());
    }

    #[test]
    fn refuses_what_storage_cannot_hold() {
        let nul = V2.replace("17.09.02", "17.09\\u0000");
        assert_eq!(
            parse_payload(&nul).unwrap_err(),
            RumError::Envelope("payload contains a NUL character")
        );
        let long = V2.replace("17.09.02", &"9".repeat(600));
        assert!(
            parse_payload(&long)
                .unwrap_err()
                .to_string()
                .contains("meta.software_version is longer")
        );
        let ancient = V2.replace("1671966644", "-99999999999999");
        assert!(
            parse_payload(&ancient)
                .unwrap_err()
                .to_string()
                .contains("end_time is out of range")
        );
        let negative = V2.replace("\"value\":\"2\"", "\"value\":\"-2\"");
        assert!(
            parse_payload(&negative)
                .unwrap_err()
                .to_string()
                .contains("is negative")
        );
    }

    #[test]
    fn a_wide_payload_is_refused_before_it_is_built() {
        let wide = V2.replace(
            "\"measurements\":[",
            &format!("\"measurements\":[{}", "0,".repeat(crate::json::MAX_VALUES)),
        );
        assert_eq!(
            parse_payload(&wide).unwrap_err().to_string(),
            "payload holds more than 200000 JSON values"
        );
    }

    #[test]
    fn names_the_missing_field() {
        let err = parse_payload(r#"{"asset_identification":{}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload field asset_identification.report_id is missing"
        );
        let err = parse_payload("not json").unwrap_err();
        assert!(err.to_string().starts_with("payload is not valid JSON"));
    }
}
