//! The bodies of Outpost's fuzz targets, one plain function per parser of untrusted input.
//!
//! `fuzz/` (outside the workspace, built by `cargo fuzz` with libFuzzer) calls each of them on
//! every input it generates; `tests/replay.rs` calls them on every file of the committed corpus
//! and regressions, so an ordinary `cargo test` re-checks what the fuzzer found without a
//! fuzzer. A target must never panic: every input is either refused with an error or read, and
//! where a second reading is possible (a round trip, a reference model) it must agree with the
//! first, which the targets assert.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeZone, Utc};
use outpost_core::bundle::{self, Limits};
use outpost_core::crypto::{EcdsaSigner, SignatureVerifier, verify_with_public_key_pem};
use outpost_core::cssm::{
    REGISTRATION_REQUEST_FILE, REGISTRATION_RESPONSE_FILE, RegistrationRequestData,
    RegistrationResponseData, SignedFile,
};
use outpost_core::device::DeviceRequest;
use outpost_core::device_rpc::{MAX_NETCONF_MESSAGE, NETCONF_EOM, NetconfFramer};
use outpost_core::rum::{self, RumEnvelope};
use outpost_core::{offline_file, signed_file};

/// A target: takes any bytes, must not panic.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/<name>.rs` and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("rum_report", rum_report),
    ("device_request_json", device_request_json),
    ("device_request_xml", device_request_xml),
    ("signed_file", signed_file),
    ("ack_bundle", ack_bundle),
    ("usage_bundle", usage_bundle),
    ("netconf_framer", netconf_framer),
];

/// The private key of the fixed test certificate: not a secret, it signs nothing but test files.
pub const TEST_KEY_PEM: &str = include_str!("test-key.pem");
/// The fixed test certificate the signed-file targets verify with (valid 2026 to 2126).
pub const TEST_CERT_PEM: &str = include_str!("test-cert.pem");

/// The time every verification runs at, inside the test certificate's validity.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The signer and verifier of the test certificate, made once per process.
pub fn test_keys() -> &'static (EcdsaSigner, SignatureVerifier) {
    static KEYS: OnceLock<(EcdsaSigner, SignatureVerifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = EcdsaSigner::from_pkcs8_pem(TEST_KEY_PEM);
        let verifier = SignatureVerifier::from_certificate_pem(TEST_CERT_PEM);
        match (signer, verifier) {
            (Ok(signer), Ok(verifier)) => (signer, verifier),
            // The files are committed beside this one; a broken one is a broken checkout.
            (signer, verifier) => unreachable!(
                "the test key does not load: {:?} {:?}",
                signer.err(),
                verifier.err()
            ),
        }
    })
}

/// Limits small enough that the fuzzer reaches them with inputs of a few KiB, so the paths
/// that refuse are explored as well as those that read.
pub const FUZZ_LIMITS: Limits = Limits {
    max_decompressed_bytes: 4 * 1024 * 1024,
    max_member_bytes: 512 * 1024,
    max_members: 200,
};

/// A RUM report: the envelope (JSON) and its payload, whose facts Outpost reads.
pub fn rum_report(data: &[u8]) {
    if let Ok(envelope) = serde_json::from_slice::<RumEnvelope>(data) {
        let _facts = envelope.facts();
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(facts) = rum::parse_payload(text)
    {
        assert!(facts.report_id >= 0, "a negative report id was accepted");
        assert!(
            facts.measurements.iter().all(|m| m.count >= 0),
            "a negative count was accepted"
        );
        assert!(facts.instance.validate().is_ok());
    }
}

/// A device request body in JSON. What is accepted survives a round trip unchanged.
pub fn device_request_json(data: &[u8]) {
    let Ok(request) = DeviceRequest::from_json(data) else {
        return;
    };
    let written = serde_json::to_vec(&request).unwrap_or_default();
    let again = DeviceRequest::from_json(&written);
    assert_eq!(
        again.as_ref().ok(),
        Some(&request),
        "an accepted request does not read back the same: {again:?}"
    );
}

/// A device request in XML: the offline RUM file, as the device listener and uploads read it.
/// A file that is read writes back to one that reads the same.
pub fn device_request_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _empty = offline_file::holds_no_reports(text);
    let Ok(file) = offline_file::parse(text) else {
        return;
    };
    let written = offline_file::write(file.system_info.as_ref(), &file.reports);
    match offline_file::parse(&written) {
        Ok(again) => assert_eq!(again.reports, file.reports, "reports changed on re-reading"),
        Err(e) => panic_with(&format!("a file that was read does not read back: {e}")),
    }
    let _request = DeviceRequest::from_offline_file(file);
}

/// The signed files: ACK (with policy and trust codes), policy, trust code, authorization code,
/// and the offline registration files. An input that starts with `<` is verified as a file as
/// it is (with the test certificate, so files of the corpus signed by the test key get past
/// their signatures); any other input is taken as the `<data>` JSON of each kind, signed with
/// the test key, so the readers behind the signature check run on it too.
pub fn signed_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (signer, verifier) = test_keys();
    let now = now();
    if text.starts_with('<') {
        let _ack = signed_file::verify_ack(text, verifier, now);
        let _policy = signed_file::verify_policy(text, verifier, now);
        let _trust = signed_file::verify_trust_code(text, verifier, now);
        let _slac = signed_file::verify_authorization(text, verifier, now);
        let _udi = signed_file::parse_udi(text);
        return;
    }
    let _request = SignedFile::open(
        text,
        REGISTRATION_REQUEST_FILE,
        |d: &RegistrationRequestData, message, signature| {
            verify_with_public_key_pem(&d.request.public_key_pem, message, signature)
        },
    );
    let _response = SignedFile::open(
        text,
        REGISTRATION_RESPONSE_FILE,
        |_: &RegistrationResponseData, message, signature| verifier.verify(message, signature, now),
    );

    let Ok(signature) = signer.sign(text.as_bytes()) else {
        return;
    };
    let signature = STANDARD.encode(signature);
    let section = |name: &str, udi: Option<&str>| {
        let udi = udi.map(|u| format!("<udi>{u}</udi>")).unwrap_or_default();
        format!(
            "<{name}>{udi}<data>{}</data><signature>{signature}</signature></{name}>",
            escape(text)
        )
    };
    let ack = format!(
        "<smartLicense>{}{}{}</smartLicense>",
        section(signed_file::ACK_SECTION, None),
        section(signed_file::POLICY_SECTION, None),
        section(
            signed_file::TRUST_CODE_SECTION,
            Some("PID:C9300-24UX,SN:FCW1")
        ),
    );
    let _ack = signed_file::verify_ack(&ack, verifier, now);
    let _policy =
        signed_file::verify_policy(&section(signed_file::POLICY_SECTION, None), verifier, now);
    let udi = Some("PID:C9300-24UX,SN:FCW1");
    let _trust = signed_file::verify_trust_code(
        &section(signed_file::TRUST_CODE_SECTION, udi),
        verifier,
        now,
    );
    let _slac = signed_file::verify_authorization(
        &section(signed_file::AUTHORIZATION_ROOT, udi),
        verifier,
        now,
    );
    for kind in [REGISTRATION_REQUEST_FILE, REGISTRATION_RESPONSE_FILE] {
        let file = SignedFile {
            kind: kind.to_owned(),
            data: text.to_owned(),
            signature: signature.clone(),
        };
        let file = serde_json::to_string(&file).unwrap_or_default();
        let _response = SignedFile::open(
            &file,
            REGISTRATION_RESPONSE_FILE,
            |_: &RegistrationResponseData, message, signature| {
                verifier.verify(message, signature, now)
            },
        );
    }
}

/// The ACK bundle Outpost imports, within [`FUZZ_LIMITS`]; every ACK file read is verified as
/// the import does. An input that is not gzip is taken as the outer tar and compressed first,
/// so the fuzzer can shape tar headers directly.
pub fn ack_bundle(data: &[u8]) {
    let data = gzipped(data);
    match bundle::read_ack_bundle_within(data.as_slice(), "fuzz.tar.gz", FUZZ_LIMITS) {
        Ok(members) => {
            assert!(
                !members.is_empty(),
                "an ACK bundle without ACKs was accepted"
            );
            let (_, verifier) = test_keys();
            for member in &members {
                assert!(!member.device_id.is_empty() && !member.name.contains('/'));
                let _ack = signed_file::verify_ack(&member.text, verifier, now());
            }
        }
        Err(e) => {
            let _message = e.to_string();
        }
    }
}

/// The usage bundle (read by the CSSM simulator and the export benchmark), within
/// [`FUZZ_LIMITS`]; every device file read is parsed as the simulator does.
pub fn usage_bundle(data: &[u8]) {
    let data = gzipped(data);
    if let Ok(read) = bundle::read_usage_bundle_within(data.as_slice(), "fuzz.tar.gz", FUZZ_LIMITS)
    {
        let _manifest = read.manifest.render();
        for file in &read.device_files {
            assert!(!file.device_id.is_empty() && !file.name.contains('/'));
            let _parsed = offline_file::parse(&file.text);
        }
    }
}

/// The NETCONF 1.0 framer fed the input as chunks, checked against a reference: the stream cut
/// at each end-of-message marker. Each step is a length byte and that many bytes; a length
/// byte from 0xF0 instead pushes (n - 0xEF) x 128 KiB of the following byte, so messages around
/// the 1 MiB limit are reachable from small inputs.
pub fn netconf_framer(data: &[u8]) {
    let mut framer = NetconfFramer::default();
    let mut stream: Vec<u8> = Vec::new();
    let mut delivered: Vec<String> = Vec::new();
    let mut rest = data;
    // A few steps of 2 MiB each are enough to cross the limit; more would only fill memory.
    while let Some((&op, tail)) = rest.split_first()
        && stream.len() < 2 * MAX_NETCONF_MESSAGE
    {
        let chunk: Vec<u8> = if op >= 0xF0 {
            let Some((&fill, tail)) = tail.split_first() else {
                break;
            };
            rest = tail;
            vec![fill; usize::from(op - 0xEF) * 128 * 1024]
        } else {
            let take = usize::from(op).min(tail.len());
            rest = &tail[take..];
            tail[..take].to_vec()
        };
        framer.push(&chunk);
        stream.extend_from_slice(&chunk);
        loop {
            match framer.next_message() {
                Ok(Some(message)) => {
                    assert!(message.len() <= MAX_NETCONF_MESSAGE, "an oversized message");
                    delivered.push(message);
                }
                Ok(None) => break,
                Err(error) => {
                    check_framer_error(&stream, &delivered, &error);
                    return;
                }
            }
        }
    }
    let expected = reference_messages(&stream);
    let complete: Vec<&[u8]> = expected.iter().map(Vec::as_slice).collect();
    let got: Vec<&[u8]> = delivered.iter().map(String::as_bytes).collect();
    assert_eq!(got, complete, "the framer and the reference disagree");
}

/// The complete messages of a stream: the text before each end-of-message marker.
fn reference_messages(stream: &[u8]) -> Vec<Vec<u8>> {
    let marker = NETCONF_EOM.as_bytes();
    let mut messages = Vec::new();
    let mut start = 0;
    while let Some(at) = stream[start..]
        .windows(marker.len())
        .position(|w| w == marker)
    {
        messages.push(stream[start..start + at].to_vec());
        start += at + marker.len();
    }
    messages
}

/// An error of the framer is right only for the first message it has not delivered, and only
/// when that message is too long (or can no longer be short enough) or not UTF-8.
fn check_framer_error(stream: &[u8], delivered: &[String], error: &str) {
    let expected = reference_messages(stream);
    let got: Vec<&[u8]> = delivered.iter().map(String::as_bytes).collect();
    let before: Vec<&[u8]> = expected
        .iter()
        .take(delivered.len())
        .map(Vec::as_slice)
        .collect();
    assert_eq!(
        got, before,
        "the framer delivered other messages before failing"
    );
    let consumed: usize = expected
        .iter()
        .take(delivered.len())
        .map(|m| m.len() + NETCONF_EOM.len())
        .sum();
    let pending = &stream[consumed..];
    let right = match expected.get(delivered.len()) {
        Some(next) if error.contains("not UTF-8") => std::str::from_utf8(next).is_err(),
        Some(next) => next.len() > MAX_NETCONF_MESSAGE,
        // No marker yet: the message will be at least what is pending less a partial marker.
        None => pending.len() > MAX_NETCONF_MESSAGE + NETCONF_EOM.len() - 1,
    };
    assert!(right, "the framer failed without cause: {error}");
}

/// The input itself when it is gzip, else the input compressed.
fn gzipped(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    if data.starts_with(&[0x1f, 0x8b]) {
        return data.to_vec();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if gz.write_all(data).is_err() {
        return Vec::new();
    }
    gz.finish().unwrap_or_default()
}

/// Element content escaping (`&`, `<`, `>`), as CSSM writes `<data>`.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Fails the target: what the fuzzer reports as a crash.
fn panic_with(message: &str) -> ! {
    unreachable!("{message}")
}
