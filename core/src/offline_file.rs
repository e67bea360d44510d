//! The offline RUM file a device writes with `license smart save usage` (`docs/protocol.md`
//! section 2): `<smartLicense>` holding optional `<smartLicenseSystemInfo>` and any number of
//! `<RUMReport>` elements, or a lone `<RUMReport>`.

use serde::{Deserialize, Serialize};

use crate::device::MAX_REPORTS;
use crate::json;
use crate::rum::{RumEnvelope, RumError};
use crate::udi::Sudi;
use crate::xml::{self, XmlError};

/// Why a file was refused; the message says where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfflineFileError {
    /// The XML itself was refused.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// Well-formed XML that is not a RUM file.
    #[error("{0}")]
    Structure(String),
    /// One report could not be read.
    #[error("RUMReport {index}: {message}")]
    Report {
        /// 1-based position in the file.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// `smartLicenseSystemInfo/data`: who wrote the file. Every field is optional in practice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// The device's UDI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudi: Option<Sudi>,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// The device's nonce for this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The device's hostname, unless privacy settings hide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The device's software tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_tag_identifier: Option<String>,
}

/// A parsed offline RUM file.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineRumFile {
    /// Present in files written by `license smart save usage`; absent from a lone report.
    pub system_info: Option<SystemInfo>,
    /// The reports, in file order.
    pub reports: Vec<RumEnvelope>,
}

impl OfflineRumFile {
    /// The device the file belongs to: the system info's UDI, else the first report's.
    pub fn device(&self) -> Option<Sudi> {
        if let Some(sudi) = self.system_info.as_ref().and_then(|info| info.sudi.clone()) {
            return Some(sudi);
        }
        self.reports
            .first()
            .and_then(|r| r.facts().ok())
            .map(|facts| facts.instance)
    }
}

/// Whether `input` is a well-formed `<smartLicense>` file without any `<RUMReport>`: what a
/// device with nothing unreported writes when asked to save its usage.
pub fn holds_no_reports(input: &str) -> bool {
    xml::parse(input).is_ok_and(|root| {
        root.name == "smartLicense" && root.children_named("RUMReport").next().is_none()
    })
}

/// Parses an offline RUM file. Every report's envelope must be JSON with a string payload.
/// The XML is bounded by the reader's caps, and the JSON of the system info and of every
/// envelope together by [`crate::json::MAX_VALUES`], so a file cannot grow past a few tens of
/// MiB in memory whatever it holds.
pub fn parse(input: &str) -> Result<OfflineRumFile, OfflineFileError> {
    let root = xml::parse(input)?;
    let report_elements: Vec<&xml::Element> = match root.name.as_str() {
        "RUMReport" => vec![&root],
        "smartLicense" => root.children_named("RUMReport").collect(),
        other => {
            return Err(OfflineFileError::Structure(format!(
                "root element is <{other}>, expected <smartLicense> or <RUMReport>"
            )));
        }
    };
    if report_elements.is_empty() {
        return Err(OfflineFileError::Structure(
            "the file holds no <RUMReport>".into(),
        ));
    }
    if report_elements.len() > MAX_REPORTS {
        return Err(OfflineFileError::Structure(format!(
            "the file holds more than {MAX_REPORTS} reports"
        )));
    }
    let mut census = json::Census::default();

    let system_info = match root.child("smartLicenseSystemInfo") {
        None => None,
        Some(info) => {
            let data = info.child("data").map(|d| d.text.trim()).unwrap_or("");
            census.check(data.as_bytes()).map_err(|e| {
                OfflineFileError::Structure(format!("smartLicenseSystemInfo data holds {e}"))
            })?;
            let parsed = serde_json::from_str(data).map_err(|e| {
                OfflineFileError::Structure(format!(
                    "smartLicenseSystemInfo data is not valid: {e}"
                ))
            })?;
            Some(parsed)
        }
    };

    let reports = report_elements
        .into_iter()
        .enumerate()
        .map(|(i, element)| {
            let index = i + 1;
            census
                .check(element.text.trim().as_bytes())
                .map_err(|e| OfflineFileError::Report {
                    index,
                    message: format!("the file's reports hold {e}"),
                })?;
            let envelope: RumEnvelope = serde_json::from_str(element.text.trim()).map_err(|e| {
                OfflineFileError::Report {
                    index,
                    message: e.to_string(),
                }
            })?;
            envelope
                .facts()
                .map_err(|e: RumError| OfflineFileError::Report {
                    index,
                    message: e.to_string(),
                })?;
            Ok(envelope)
        })
        .collect::<Result<Vec<_>, OfflineFileError>>()?;
    Ok(OfflineRumFile {
        system_info,
        reports,
    })
}

/// Writes an offline RUM file; payloads keep their exact text.
pub fn write(system_info: Option<&SystemInfo>, reports: &[RumEnvelope]) -> String {
    let mut out = String::from("<smartLicense>");
    if let Some(info) = system_info {
        // Serialising plain strings and numbers cannot fail.
        let data = serde_json::to_string(info).unwrap_or_default();
        out.push_str("<smartLicenseSystemInfo><data>");
        out.push_str(&xml::escape(&data));
        out.push_str("</data></smartLicenseSystemInfo>");
    }
    for report in reports {
        let json = serde_json::to_string(report).unwrap_or_default();
        out.push_str("<RUMReport>");
        out.push_str(&xml::cdata(&json));
        out.push_str("</RUMReport>");
    }
    out.push_str("</smartLicense>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_reports_is_told_apart_from_a_broken_one() {
        assert!(holds_no_reports("<smartLicense></smartLicense>"));
        assert!(!holds_no_reports(
            "<smartLicense><RUMReport>x</RUMReport></smartLicense>"
        ));
        assert!(!holds_no_reports("<smartLicense>"));
        assert!(!holds_no_reports("<other/>"));
    }
    use serde_json::json;

    fn envelope(report_id: u64) -> RumEnvelope {
        let payload = json!({
            "version": "2.0",
            "asset_identification": {"report_id": report_id, "instance": {"sudi": {"udi_pid": "C9300-24UX", "udi_serial_number": "FCW1"}}},
            "meta": {"entitlement_tag": "regid.2017-03.com.cisco.advantagek9,1.0_x"},
            "measurements": []
        });
        RumEnvelope {
            payload: payload.to_string(),
            header: Some(json!({"type": "rum"})),
            signature: json!({"signing_type": "builtin", "value": "AAAA"}),
        }
    }

    #[test]
    fn round_trips_a_written_file() {
        let info = SystemInfo {
            sudi: Some(Sudi::new("C9300-24UX", "FCW1")),
            hostname: Some("sw1".into()),
            ..Default::default()
        };
        let reports = vec![envelope(1), envelope(2)];
        let text = write(Some(&info), &reports);
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.reports, reports);
        assert_eq!(parsed.device(), Some(Sudi::new("C9300-24UX", "FCW1")));
        assert_eq!(parsed.system_info.unwrap().hostname.as_deref(), Some("sw1"));
    }

    #[test]
    fn accepts_the_real_c9800_sample_unchanged() {
        // A copy of shared/samples/real/, kept in the repo so every checkout tests it.
        let text = include_str!("../../tests/fixtures/c9800-cl-rum-report-1671840750.xml");
        let file = parse(text).unwrap();
        assert_eq!(file.reports.len(), 1);
        let facts = file.reports[0].facts().unwrap();
        assert_eq!(facts.report_id, 1671840750);
        assert_eq!(file.device(), Some(Sudi::new("C9800-CL-K9", "9NTUEA8FIIH")));
        // The payload is the exact decoded string of the file, starting as the device wrote it.
        assert!(
            file.reports[0]
                .payload
                .starts_with("{\"version\":\"2.0\",\"asset_identification\"")
        );
    }

    #[test]
    fn the_reports_of_a_file_share_one_json_allowance() {
        // Each envelope alone is under the cap; together they are not.
        let mut wide = envelope(1);
        wide.header = Some(serde_json::Value::Array(vec![
            0.into();
            json::MAX_VALUES / 2
        ]));
        let half = serde_json::to_string(&wide).unwrap();
        let text = format!(
            "<smartLicense><RUMReport>{0}</RUMReport><RUMReport>{0}</RUMReport></smartLicense>",
            xml::cdata(&half)
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "RUMReport 2: the file's reports hold more than 200000 JSON values"
        );
        let many = format!(
            "<smartLicense>{}</smartLicense>",
            "<RUMReport>{}</RUMReport>".repeat(MAX_REPORTS + 1)
        );
        assert_eq!(
            parse(&many).unwrap_err().to_string(),
            "the file holds more than 10000 reports"
        );
    }

    #[test]
    fn says_which_report_is_bad() {
        let text = format!(
            "<smartLicense><RUMReport>{}</RUMReport><RUMReport>{{}}</RUMReport></smartLicense>",
            xml::cdata(&serde_json::to_string(&envelope(1)).unwrap())
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("RUMReport 2: missing field `payload`"),
            "{err}"
        );
        assert!(matches!(
            parse("<smartLicense/>"),
            Err(OfflineFileError::Structure(_))
        ));
        assert!(matches!(
            parse("<html/>"),
            Err(OfflineFileError::Structure(_))
        ));
    }
}
