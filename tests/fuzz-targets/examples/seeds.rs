//! Writes the seed inputs of every fuzz target into `fuzz/corpus/<target>/seed-*`: the real
//! device's RUM file, device requests of every message type, signed files (signed with the
//! fixed test key), and bundles made by the writers of `outpost_core::bundle`.
//!
//!     cargo run -p outpost_fuzz_targets --example seeds

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a generator run by hand: it stops at the first failure and says what it wrote"
)]

use std::io::Read;
use std::path::Path;

use chrono::{TimeZone, Utc};
use outpost_core::Sudi;
use outpost_core::bundle::{UsageBundleWriter, write_ack_bundle};
use outpost_core::crypto::public_key_pem_of;
use outpost_core::cssm::{
    REGISTRATION_REQUEST_FILE, REGISTRATION_RESPONSE_FILE, RegistrationRequest,
    RegistrationRequestData, RegistrationResponse, RegistrationResponseData, SignedFile,
};
use outpost_core::device_rpc::{NETCONF_BASE_CAPABILITY, NETCONF_EOM, netconf_hello};
use outpost_core::offline_file::{self, SystemInfo};
use outpost_core::rum::RumEnvelope;
use outpost_core::signed_file::{
    AckData, AuthorizationData, AuthorizedEntitlement, PolicyData, TrustCodeData, build_ack,
    build_authorization, build_policy, build_trust_code, verify_ack,
};
use outpost_fuzz_targets::{TEST_KEY_PEM, test_keys};

const SAMPLE: &str = include_str!("../../fixtures/c9800-cl-rum-report-1671840750.xml");

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    println!("fuzz/corpus/{target}/seed-{name}: {} bytes", data.len());
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn main() {
    let sample = offline_file::parse(SAMPLE).unwrap();
    let real = sample.reports[0].clone();
    let device = Sudi::new("C9300-24UX", "FCW2134L00C");

    // RUM reports: the real envelope and payload, an older payload and a telemetry one.
    write(
        "rum_report",
        "real-envelope.json",
        serde_json::to_string(&real).unwrap().as_bytes(),
    );
    write("rum_report", "real-payload.json", real.payload.as_bytes());
    let older = r#"{"asset_identification":{"instance":{"sudi":{"udi_pid":"C9300-24UX","udi_serial_number":"FCW1"}}},"meta":{"report_id":"42","entitlement_tag":"regid.2017-03.com.cisco.advantagek9,1.0_bd1da96e","ha_udi":[{"role":"Active","sudi":{"udi_pid":"C9300-24UX","udi_serial_number":"FCW1"}},{"role":"Standby","sudi":{"udi_pid":"C9300-24UX","udi_serial_number":"FCW2"}}]},"measurements":[{"metric_name":"ENTITLEMENT","end_time":"1671966644","value":{"type":"COUNT","value":"2"}}]}"#;
    write("rum_report", "older-payload.json", older.as_bytes());
    let telemetry = r#"{"version":"2.0","asset_identification":{"report_id":7,"instance":{"sudi":{"udi_pid":"C9300-24UX","udi_serial_number":"FCW1"},"product_instance_identifier":"360b8a0f-7713-4f20-846f-03281350f9d3"}},"meta":{"report_type":"telemetry"}}"#;
    write("rum_report", "telemetry-payload.json", telemetry.as_bytes());
    let older_envelope = RumEnvelope {
        payload: older.to_owned(),
        header: None,
        signature: serde_json::json!({"sudi": device, "signing_type": "builtin", "key": "regid.2017-05.com.cisco.C9300,v1_727af1d9", "value": "AAAA"}),
    };
    write(
        "rum_report",
        "older-envelope.json",
        serde_json::to_string(&older_envelope).unwrap().as_bytes(),
    );

    // Device requests of every message type.
    let data = |extra: serde_json::Value| {
        let mut d = serde_json::json!({"timestamp": 1732700000000_i64, "nonce": "k3J9sd8fQ2lZp0aB", "sudi": device, "hostname": "sw-core-1", "software_version": "17.12.1", "software_tag_identifier": "regid.2017-05.com.cisco.C9300,v1_727af1d9"});
        if let (Some(d), serde_json::Value::Object(extra)) = (d.as_object_mut(), extra) {
            d.extend(extra);
        }
        d
    };
    let requests = [
        (
            "hello",
            serde_json::json!({"message_type": "hello", "version": "1.0", "data": data(serde_json::json!({}))}),
        ),
        (
            "usage",
            serde_json::json!({"message_type": "usage_report", "version": "1.0", "data": data(serde_json::json!({
            "product_instance_identifier": "360b8a0f-7713-4f20-846f-03281350f9d3",
            "ha_udi": [{"role": "Active", "sudi": device}, {"role": "Standby", "sudi": {"udi_pid": "C9300-24UX", "udi_serial_number": "FCW2134L00D"}}],
            "usage": [real, older_envelope], "trust_requests": [{"sudi": device}]}))}),
        ),
        (
            "poll",
            serde_json::json!({"message_type": "result_poll", "data": data(serde_json::json!({"poll_id": "5b0c0e7e"}))}),
        ),
        (
            "authorization",
            serde_json::json!({"message_type": "authorization_request", "data": data(serde_json::json!({
            "licenses": [{"sudi": device, "keys": [{"entitlement": "regid.2019-03.com.cisco.HSECK9,1.0_a9f6ad7c", "count": 1}]}], "mode": "add", "scope": "all"}))}),
        ),
        (
            "confirmation",
            serde_json::json!({"message_type": "authorization_confirmation", "data": data(serde_json::json!({"confirmations": [{"sudi": device, "confirm_code": "5Hq2Zk"}]}))}),
        ),
        (
            "return",
            serde_json::json!({"message_type": "authorization_return", "data": data(serde_json::json!({"returns": [{"sudi": device, "return_code": "7Tr9Yx"}]}))}),
        ),
        (
            "trust-sync",
            serde_json::json!({"message_type": "trust_sync", "data": data(serde_json::json!({}))}),
        ),
    ];
    for (name, request) in requests {
        write(
            "device_request_json",
            &format!("{name}.json"),
            request.to_string().as_bytes(),
        );
    }

    // Offline RUM files: the real one, one written with system info and two reports, a lone
    // report, and one without reports.
    write("device_request_xml", "real.xml", SAMPLE.as_bytes());
    let info = SystemInfo {
        sudi: Some(device.clone()),
        timestamp: Some(1732700000000),
        nonce: Some("n0nce".into()),
        hostname: Some("sw-core-1".into()),
        software_tag_identifier: Some("regid.2017-05.com.cisco.C9300,v1_727af1d9".into()),
    };
    let written = offline_file::write(
        Some(&info),
        &[sample.reports[0].clone(), older_envelope.clone()],
    );
    write("device_request_xml", "written.xml", written.as_bytes());
    let lone = format!(
        "<RUMReport><![CDATA[{}]]></RUMReport>",
        serde_json::to_string(&older_envelope).unwrap()
    );
    write("device_request_xml", "lone.xml", lone.as_bytes());
    let no_info = offline_file::write(None, &[older_envelope.clone(), sample.reports[0].clone()]);
    write("device_request_xml", "no-info.xml", no_info.as_bytes());
    write(
        "device_request_xml",
        "empty.xml",
        b"<?xml version=\"1.0\"?><smartLicense>\n</smartLicense>",
    );

    // Signed files, signed with the test key, and the JSON of each kind's data.
    let (signer, _) = test_keys();
    let ack = AckData {
        sudi: device.clone(),
        acked_report_ids: vec![1671840750, 42],
        smart_account: "Acme & Co <EMEA>".into(),
        virtual_account: "Campus".into(),
        timestamp: 1732700000000,
        nonce: "abc".into(),
    };
    let policy = PolicyData::cisco_default();
    let trust = TrustCodeData {
        udi: String::new(),
        public_key_pem: public_key_pem_of(TEST_KEY_PEM).unwrap(),
        issued: 1732700000000,
    };
    let codes = [build_trust_code(&device, &trust, signer).unwrap()];
    let authorization = AuthorizationData {
        udi: String::new(),
        piid: "360b8a0f-7713-4f20-846f-03281350f9d3".into(),
        entitlements: vec![AuthorizedEntitlement {
            tag: "regid.2019-03.com.cisco.DNA_HSEC,1.0_509c41ab".into(),
            count: 1,
            license_type: "PERPETUAL".into(),
        }],
        confirm_code: "5Hq2Zk".into(),
        timestamp: 1732700000000,
    };
    let ack_file = build_ack(&ack, Some(&policy), &codes, signer).unwrap();
    // Signed with the key the targets verify with, so their readers get past the signatures.
    let verified = verify_ack(&ack_file, &test_keys().1, outpost_fuzz_targets::now()).unwrap();
    assert_eq!(verified.trust_codes.len(), 1);
    write("signed_file", "ack.xml", ack_file.as_bytes());
    write(
        "signed_file",
        "ack-plain.xml",
        build_ack(&ack, None, &[], signer).unwrap().as_bytes(),
    );
    write(
        "signed_file",
        "policy.xml",
        build_policy(&policy, signer).unwrap().as_bytes(),
    );
    write("signed_file", "trust-code.xml", codes[0].as_bytes());
    write(
        "signed_file",
        "authorization.xml",
        build_authorization(&device, &authorization, signer)
            .unwrap()
            .as_bytes(),
    );
    write(
        "signed_file",
        "ack-data.json",
        serde_json::to_string(&ack).unwrap().as_bytes(),
    );
    write(
        "signed_file",
        "policy-data.json",
        serde_json::to_string(&policy).unwrap().as_bytes(),
    );
    let bound = TrustCodeData {
        udi: device.to_string(),
        ..trust
    };
    write(
        "signed_file",
        "trust-data.json",
        serde_json::to_string(&bound).unwrap().as_bytes(),
    );
    let bound = AuthorizationData {
        udi: device.to_string(),
        ..authorization
    };
    write(
        "signed_file",
        "authorization-data.json",
        serde_json::to_string(&bound).unwrap().as_bytes(),
    );
    let request = RegistrationRequestData {
        request: RegistrationRequest {
            name: "Acme".into(),
            smart_account: "Acme Corp".into(),
            virtual_account: "Campus".into(),
            public_key_pem: public_key_pem_of(TEST_KEY_PEM).unwrap(),
        },
        timestamp: 1732700000000,
        nonce: "n".into(),
    };
    let file = SignedFile::sign(REGISTRATION_REQUEST_FILE, &request, signer).unwrap();
    write(
        "signed_file",
        "registration-request.json",
        serde_json::to_string(&file).unwrap().as_bytes(),
    );
    let response = RegistrationResponseData {
        registration: RegistrationResponse {
            registration_id: "r1".into(),
            client_id: "c1".into(),
            client_secret: "s1".into(),
            smart_account_id: "100000".into(),
            virtual_account_id: "200000".into(),
        },
        name: "Acme".into(),
        request_nonce: "n".into(),
        timestamp: 1732700000000,
    };
    let file = SignedFile::sign(REGISTRATION_RESPONSE_FILE, &response, signer).unwrap();
    write(
        "signed_file",
        "registration-response.json",
        serde_json::to_string(&file).unwrap().as_bytes(),
    );

    // Bundles from the writers, compressed and as the bare outer tar (which the targets
    // compress themselves, so the fuzzer can shape its headers).
    let at = Utc
        .with_ymd_and_hms(2026, 11, 27, 22, 45, 10)
        .single()
        .unwrap();
    let acks = write_ack_bundle(
        Vec::new(),
        &[
            (
                String::new(),
                vec![
                    ("pi1".into(), ack_file.clone()),
                    ("pi2".into(), build_ack(&ack, None, &[], signer).unwrap()),
                ],
            ),
            (
                "26Nov27_22_45_10_999".into(),
                vec![("pi3".into(), "<smartLicense/>".into())],
            ),
        ],
        at,
    )
    .unwrap();
    write("ack_bundle", "two-vas.tar.gz", &acks);
    write("ack_bundle", "two-vas.tar", &gunzip(&acks));
    let one = write_ack_bundle(
        Vec::new(),
        &[(String::new(), vec![("pi1".into(), ack_file)])],
        at,
    )
    .unwrap();
    write("ack_bundle", "one.tar.gz", &one);
    write("ack_bundle", "one.tar", &gunzip(&one));
    write(
        "ack_bundle",
        "empty.tar.gz",
        &write_ack_bundle(Vec::new(), &[], at).unwrap(),
    );

    let mut usage = UsageBundleWriter::new(Vec::new(), ("Acme Corp", "100000"), "e-1", at);
    let campus = usage
        .virtual_account(("Acme Corp", "100000"), ("Campus", "200000"))
        .unwrap();
    let lab = usage
        .virtual_account(("Other SA", "100001"), ("Lab", ""))
        .unwrap();
    usage.add_device_file(campus, "pi1", SAMPLE).unwrap();
    usage.add_device_file(lab, "pi2", &written).unwrap();
    let usage = usage.finish().unwrap();
    write("usage_bundle", "two-vas.tar.gz", &usage);
    write("usage_bundle", "two-vas.tar", &gunzip(&usage));
    let mut small = UsageBundleWriter::new(Vec::new(), ("Acme Corp", "100000"), "e-2", at);
    let va = small
        .virtual_account(("Acme Corp", "100000"), ("Campus", "200000"))
        .unwrap();
    small.add_device_file(va, "pi9", &lone).unwrap();
    let small = small.finish().unwrap();
    write("usage_bundle", "one.tar.gz", &small);
    write("usage_bundle", "one.tar", &gunzip(&small));
    let bare = UsageBundleWriter::new(Vec::new(), ("Acme Corp", "100000"), "e-3", at)
        .finish()
        .unwrap();
    write("usage_bundle", "manifest-only.tar", &gunzip(&bare));

    // NETCONF streams: length-prefixed chunks of hellos and replies, split in several ways,
    // and one that approaches the 1 MiB limit with fill steps.
    let hello = netconf_hello(
        &[
            NETCONF_BASE_CAPABILITY,
            "http://cisco.com/ns/yang/cisco-smart-license?module=cisco-smart-license&revision=2021-03-01",
        ],
        Some(7),
    );
    let reply = "<rpc-reply message-id=\"1\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><ok/></rpc-reply>";
    let stream = format!("{hello}{NETCONF_EOM}{reply}{NETCONF_EOM}{reply}");
    for (name, size) in [("whole", 200), ("by-7", 7), ("by-1", 1), ("by-64", 64)] {
        let mut encoded = Vec::new();
        for chunk in stream.as_bytes().chunks(size) {
            encoded.push(u8::try_from(chunk.len()).unwrap());
            encoded.extend_from_slice(chunk);
        }
        write("netconf_framer", &format!("{name}.bin"), &encoded);
    }
    let mut near = vec![0xF7, b'x'];
    near.extend([8, b']', b']', b'>', b']', b']', b'>', b'<', b'a']);
    near.extend([0xF7, b'y', 3, b']', b']', b'>', 3, b']', b']', b'>']);
    write("netconf_framer", "near-limit.bin", &near);
}
