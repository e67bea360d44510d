//! Reading a device's request body: the protocol's JSON, or an offline RUM file (XML) taken as
//! a `usage_report` of the device it names.

use outpost_core::device::DeviceRequest;
use outpost_core::offline_file;
use outpost_db::enums::ReportSource;

use crate::error::{AppError, AppResult};

/// Parses a request body. The parser is chosen by `content_type` when it says JSON or XML,
/// else by the first non-blank byte (devices and proxies are not always careful with the
/// header). The refusal (`bad_request`) names the problem.
pub fn parse(content_type: &str, body: &[u8]) -> AppResult<(DeviceRequest, ReportSource)> {
    let content_type = content_type.to_ascii_lowercase();
    let xml = if content_type.contains("xml") {
        true
    } else if content_type.contains("json") {
        false
    } else {
        body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
    };
    if !xml {
        return DeviceRequest::from_json(body)
            .map(|r| (r, ReportSource::Push))
            .map_err(|e| AppError::malformed(e.0));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| AppError::malformed("the XML body is not UTF-8"))?;
    let file = offline_file::parse(text)
        .map_err(|e| AppError::malformed(format!("the RUM file is not valid: {e}")))?;
    DeviceRequest::from_offline_file(file)
        .map(|r| (r, ReportSource::PushXml))
        .map_err(|e| AppError::malformed(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_or_the_first_byte_picks_the_parser() {
        let cases: [(&str, &[u8], &str); 4] = [
            ("application/json", b"<x/>", "body is not a valid request"),
            ("text/xml", b"{}", "the RUM file is not valid"),
            ("", b"  <smartLicense/>", "the RUM file is not valid"),
            ("text/plain", b"{", "body is not a valid request"),
        ];
        for (content_type, body, expected) in cases {
            let refused = parse(content_type, body).unwrap_err().to_string();
            assert!(refused.starts_with(expected), "{content_type}: {refused}");
        }
    }
}
