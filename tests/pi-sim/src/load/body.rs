//! Request bodies for the load generator, written straight into a byte buffer. A report is a
//! pure function of (device, report number, run settings), so a duplicate or a retry is built
//! again byte for byte instead of being kept, and a million devices need no state at all.
//!
//! The payload has the shape [`crate::Device::next_report`] gives (version 2.0, the same tags,
//! `ha_udi`), with as many measurements as it takes to reach the wanted size, and is signed the
//! same way ([`crate::signature_value`]).

use std::fmt::Write as _;

use crate::{ENTITLEMENT_TAG, SOFTWARE_TAG, signature_value};

/// A day: one report closes one day of usage, as on a real switch.
const DAY: i64 = 86_400;

/// What every body of a run shares.
#[derive(Debug, Clone)]
pub struct Templates {
    /// PID of every simulated device.
    pub pid: String,
    /// Serial numbers are this and an 8-digit device number.
    pub serial_prefix: String,
    /// Report number `n` of a device has report id `report_id_base + n`.
    pub report_id_base: i64,
    /// Smallest payload, in bytes.
    pub min_bytes: usize,
    /// Largest payload, in bytes.
    pub max_bytes: usize,
    /// Reports in one `usage_report`.
    pub reports_per_request: u32,
    /// Varies sizes and counts between runs.
    pub seed: u64,
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser): cheap, and the same on every run.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number in [0, 1) from a hash.
pub fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

impl Templates {
    /// Serial number of device `device`.
    pub fn serial(&self, device: u32) -> String {
        format!("{}{device:08}", self.serial_prefix)
    }

    /// `PID:<pid>,SN:<serial>` of device `device`.
    pub fn udi(&self, device: u32) -> String {
        format!("PID:{},SN:{}", self.pid, self.serial(device))
    }

    /// Report ids carried by round `round` of a device (one `usage_report`).
    pub fn report_ids(&self, round: u64) -> std::ops::Range<i64> {
        let per = i64::from(self.reports_per_request);
        let first = self.report_id_base.saturating_add(
            i64::try_from(round)
                .unwrap_or(i64::MAX / 2)
                .saturating_mul(per),
        );
        first..first.saturating_add(per)
    }

    fn sudi_json(&self, out: &mut String, serial: &str) {
        let _ = write!(
            out,
            r#"{{"udi_pid":"{}","udi_serial_number":"{serial}"}}"#,
            self.pid
        );
    }

    /// The payload (signed JSON text) of report `report_id` of device `device`.
    pub fn payload(&self, device: u32, serial: &str, report_id: i64) -> String {
        let h = mix(self.seed ^ mix(u64::from(device) << 32 ^ report_id as u64));
        let span = self.max_bytes.saturating_sub(self.min_bytes) as u64 + 1;
        let target = self.min_bytes + (h % span) as usize;
        let mut out = String::with_capacity(target + 512);
        let _ = write!(
            out,
            r#"{{"asset_identification":{{"asset":{{"name":"{SOFTWARE_TAG}"}},"instance":{{"product_instance_identifier":"{}","sudi":"#,
            pi_identifier(device)
        );
        self.sudi_json(&mut out, serial);
        let _ = write!(
            out,
            r#"}},"report_id":{report_id}}},"meta":{{"entitlement_tag":"{ENTITLEMENT_TAG}","ha_udi":[{{"role":"Active","sudi":"#
        );
        self.sudi_json(&mut out, serial);
        out.push_str(
            r#"}],"software_version":"17.12.1","utility_enabled":false},"measurements":["#,
        );
        // Several measurements share the report's day; the count drifts as on a real switch.
        // Their number is what brings the payload to the wanted size: a real one is measured
        // (field widths vary by a few characters), not guessed.
        let tail = r#"],"signature":{"key":""#.len() + SOFTWARE_TAG.len() + 40;
        let start = 1_700_000_000 + (report_id % 100_000) * DAY;
        let base_count = 1 + (u64::from(device) % 48) as i64;
        let mut sample = String::new();
        write_measurement(&mut sample, start, start + 3600, 3600, base_count);
        // Rounded to the nearest count, so the mean size is the range's mean.
        let per = sample.len() + 1;
        let measurements = ((target.saturating_sub(out.len() + tail) + per / 2) / per).max(1);
        let step = DAY / measurements as i64;
        for i in 0..measurements {
            let from = start + i as i64 * step;
            if i > 0 {
                out.push(',');
            }
            let count = base_count + ((h >> (i % 60)) & 1) as i64;
            write_measurement(&mut out, from, from + step, step, count);
        }
        let _ = write!(
            out,
            r#"],"signature":{{"key":"{SOFTWARE_TAG}","signing_type":"builtin","value":""}},"version":"2.0"}}"#
        );
        out
    }

    /// Writes the part of a request's `data` every message type has.
    fn data_head(
        &self,
        out: &mut String,
        message_type: &str,
        device: u32,
        serial: &str,
        nonce: u64,
    ) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let _ = write!(
            out,
            r#"{{"message_type":"{message_type}","version":"1.0","data":{{"timestamp":{now_ms},"nonce":"{}","sudi":"#,
            nonce_text(nonce)
        );
        self.sudi_json(out, serial);
        let _ = write!(
            out,
            r#","product_instance_identifier":"{}","hostname":"sw-{}","software_version":"17.12.1","software_tag_identifier":"{SOFTWARE_TAG}""#,
            pi_identifier(device),
            serial.to_ascii_lowercase()
        );
    }

    /// The body of round `round` of device `device`: a `usage_report` with
    /// [`Templates::reports_per_request`] reports. Returns the bytes of payload it carries.
    pub fn usage_body(&self, out: &mut String, device: u32, round: u64, nonce: u64) -> usize {
        let serial = self.serial(device);
        self.data_head(out, "usage_report", device, &serial, nonce);
        out.push_str(r#","usage":["#);
        let mut payload_bytes = 0;
        for (i, report_id) in self.report_ids(round).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let payload = self.payload(device, &serial, report_id);
            payload_bytes += payload.len();
            out.push_str(r#"{"payload":""#);
            // The payload holds no backslash or control character (the serial prefix is
            // checked to be alphanumeric): escaping it as a JSON string only quotes quotes.
            for (i, part) in payload.split('"').enumerate() {
                if i > 0 {
                    out.push_str("\\\"");
                }
                out.push_str(part);
            }
            out.push_str(r#"","header":{"type":"rum"},"signature":{"sudi":"#);
            self.sudi_json(out, &serial);
            let _ = write!(
                out,
                r#","signing_type":"builtin","key":"{SOFTWARE_TAG}","value":"{}"}}}}"#,
                signature_value(&payload)
            );
        }
        out.push_str("]}}");
        payload_bytes
    }

    /// The body of a `result_poll` of device `device` for `poll_id`.
    pub fn poll_body(&self, out: &mut String, device: u32, poll_id: &str, nonce: u64) {
        let serial = self.serial(device);
        self.data_head(out, "result_poll", device, &serial, nonce);
        // Poll ids are UUIDs: nothing to escape.
        let _ = write!(out, r#","poll_id":"{poll_id}"}}}}"#);
    }
}

/// One entitlement measurement from `from` to `to`.
fn write_measurement(out: &mut String, from: i64, to: i64, step: i64, count: i64) {
    let _ = write!(
        out,
        r#"{{"end_time":{to},"log_time":{to},"meta":{{"added_sudi_list":[],"removed_sudi_list":[]}},"metric_name":"ENTITLEMENT","num_samples":{},"sample_interval":{step},"start_time":{from},"value":{{"type":"COUNT","value":"{count}"}}}}"#,
        step / 900
    );
}

/// The nonce text of request number `n`: 16 alphanumeric characters, unique within a run.
pub fn nonce_text(n: u64) -> String {
    format!("{:016x}", mix(n))
}

/// The product instance UUID of device `device` (stable, so a device keeps its identity).
fn pi_identifier(device: u32) -> String {
    format!("0000a11d-0000-4000-8000-{device:012x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::device::{DeviceRequest, MessageType};

    fn templates(min: usize, max: usize, per: u32) -> Templates {
        Templates {
            pid: "C9300-24UX".into(),
            serial_prefix: "LOAD".into(),
            report_id_base: 1_000_000,
            min_bytes: min,
            max_bytes: max,
            reports_per_request: per,
            seed: 7,
        }
    }

    #[test]
    fn a_usage_body_is_a_valid_request_of_valid_reports() {
        let t = templates(1000, 8000, 3);
        let mut body = String::new();
        let bytes = t.usage_body(&mut body, 42, 5, 9);
        let request = DeviceRequest::from_json(body.as_bytes()).expect("a protocol request");
        assert_eq!(request.message_type, MessageType::UsageReport);
        let sender = request.data.sudi.clone().expect("sudi");
        assert_eq!(sender.udi_serial_number, "LOAD00000042");
        assert_eq!(request.data.usage.len(), 3);
        let mut total = 0;
        for (envelope, id) in request.data.usage.iter().zip(t.report_ids(5)) {
            let facts = envelope.facts().expect("a readable report");
            assert_eq!(facts.report_id, id);
            assert!(facts.instance.same_device(&sender));
            assert!(!facts.measurements.is_empty());
            assert_eq!(
                envelope.signature["value"].as_str(),
                Some(signature_value(&envelope.payload).as_str())
            );
            total += envelope.payload.len();
        }
        assert_eq!(total, bytes);
        // The same round is the same bytes (a duplicate is a true duplicate).
        let mut again = String::new();
        t.usage_body(&mut again, 42, 5, 9);
        let again = DeviceRequest::from_json(again.as_bytes()).expect("request");
        assert_eq!(again.data.usage, request.data.usage);
    }

    #[test]
    fn payload_sizes_stay_near_the_range() {
        for (min, max) in [(1000, 1000), (1600, 1600), (1000, 8000), (8000, 8000)] {
            let t = templates(min, max, 1);
            for id in 0..200 {
                let len = t.payload(3, "LOAD00000003", id).len();
                // Within half a measurement (about 110 bytes) of the wanted size, or one
                // measurement when less is wanted (about 1,000 bytes).
                assert!(
                    len + 125 >= min && len <= max.max(1000) + 125,
                    "{len} for {min}-{max}"
                );
            }
        }
    }

    #[test]
    fn a_poll_body_is_a_valid_request() {
        let t = templates(1000, 1000, 1);
        let mut body = String::new();
        t.poll_body(&mut body, 1, "5b0c6f0e-0000-4000-8000-000000000001", 2);
        let request = DeviceRequest::from_json(body.as_bytes()).expect("request");
        assert_eq!(request.message_type, MessageType::ResultPoll);
        assert_eq!(
            request.data.poll_id.as_deref(),
            Some("5b0c6f0e-0000-4000-8000-000000000001")
        );
    }
}
