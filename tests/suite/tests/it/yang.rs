//! The RPCs Outpost sends devices over RESTCONF and NETCONF are valid instances of the real
//! YANG module `cisco-smart-license` (tests/yang, from YangModels/yang): libyang's `yanglint`
//! checks every message `outpost_core::device_rpc` builds, and agrees with its length limit.

use std::path::PathBuf;
use std::process::Command;

use outpost_core::device_rpc::{self, MAX_FILE_PATH, MODULE, Rpc};
use serde_json::{Value, json};

fn yang_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../yang"))
}

/// Runs yanglint on one instance; returns (accepted, what it said).
fn yanglint(kind: &str, name: &str, instance: &str) -> (bool, String) {
    yanglint_reply(kind, name, instance, None)
}

/// As [`yanglint`]; a `nc-reply` also needs the `<rpc>` it answers.
fn yanglint_reply(kind: &str, name: &str, instance: &str, request: Option<&str>) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, instance).unwrap();
    let mut command = Command::new("yanglint");
    if let Some(request) = request {
        let rpc = dir.path().join("request.xml");
        std::fs::write(&rpc, request).unwrap();
        command.arg("-R").arg(rpc);
    }
    let output = command
        .args(["-t", kind, "-p"])
        .arg(yang_dir())
        .arg(yang_dir().join("cisco-smart-license.yang"))
        .arg(&file)
        .output()
        .expect("yanglint (Debian package libyang2-tools; scripts/test installs it)");
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), said)
}

fn rpcs(file_path: &str) -> Vec<Rpc> {
    vec![
        Rpc::RumSaveUsageUnreported {
            file_path: file_path.into(),
        },
        Rpc::RumSaveUsageAll {
            file_path: file_path.into(),
        },
        Rpc::ImportFile {
            file_path: file_path.into(),
        },
    ]
}

#[test]
fn every_rpc_outpost_sends_is_valid_against_the_cisco_smart_license_model() {
    // As long as the model allows, with characters XML and JSON must escape.
    let base = "https://outpost.example.com/pull-drop/Zq81xYt0aPf3kLm9/rum.xml?x=1&y=<2>";
    let path = format!("{base}{}", "a".repeat(MAX_FILE_PATH - base.len()));
    assert_eq!(path.len(), MAX_FILE_PATH);
    for rpc in rpcs(&path) {
        let netconf = rpc.netconf_rpc(42).unwrap();
        let (ok, said) = yanglint("nc-rpc", "rpc.xml", &netconf);
        assert!(
            ok,
            "{} over NETCONF refused:\n{netconf}\n{said}",
            rpc.name()
        );

        // RESTCONF carries the input as `<module>:input` at the operation's URL; yanglint
        // takes the same input under the operation's name.
        let body = rpc.restconf_body().unwrap();
        let input = body[format!("{MODULE}:input")].clone();
        assert_ne!(input, Value::Null, "{body}");
        let instance = json!({ format!("{MODULE}:{}", rpc.name()): input }).to_string();
        let (ok, said) = yanglint("rpc", "rpc.json", &instance);
        assert!(
            ok,
            "{} over RESTCONF refused:\n{instance}\n{said}",
            rpc.name()
        );
        assert!(
            rpc.restconf_path()
                .ends_with(&format!("/restconf/operations/{MODULE}:{}", rpc.name()))
        );
    }
}

/// The simulated devices answer as the model says, so Outpost is tested against real replies.
#[test]
fn the_replies_the_simulated_devices_send_are_valid_too() {
    for rpc in rpcs("https://outpost.example.com/pull-drop/Zq81xYt0aPf3kLm9/rum.xml") {
        let request = rpc.netconf_rpc(42).unwrap();
        for code in ["success", "commsend", "storagefailtoretrieve"] {
            let reply = device_rpc::netconf_return_code("42", code);
            let (ok, said) = yanglint_reply("nc-reply", "reply.xml", &reply, Some(&request));
            assert!(ok, "{} reply refused:\n{reply}\n{said}", rpc.name());
        }
        let made_up = device_rpc::netconf_return_code("42", "fine");
        let (ok, _) = yanglint_reply("nc-reply", "reply.xml", &made_up, Some(&request));
        assert!(!ok, "a return code outside error-enum was taken");
    }
}

#[test]
fn the_length_limit_is_the_models() {
    let too_long = format!("https://outpost.example.com/{}", "b".repeat(MAX_FILE_PATH));
    for rpc in rpcs(&too_long) {
        assert!(
            rpc.netconf_rpc(1).is_err(),
            "{} built with a path too long",
            rpc.name()
        );
        // The model refuses it too: the limit Outpost checks is not made up.
        let by_hand = format!(
            "<rpc message-id=\"1\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><{0} xmlns=\"http://cisco.com/ns/yang/cisco-smart-license\"><file-path>{too_long}</file-path></{0}></rpc>",
            rpc.name()
        );
        let (ok, said) = yanglint("nc-rpc", "long.xml", &by_hand);
        assert!(!ok, "yanglint took a {}-character path", too_long.len());
        assert!(said.contains("length"), "{said}");
        // And a misspelt input is refused, so the test above can fail.
        let (ok, _) = yanglint(
            "nc-rpc",
            "typo.xml",
            &by_hand.replace("file-path>", "filepath>"),
        );
        assert!(!ok);
    }
}
