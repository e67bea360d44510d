//! The RPCs Outpost sends a product instance it pulls from over RESTCONF or NETCONF
//! (`PROTOCOL.md` section 4.2), from the public YANG module `cisco-smart-license` (revision
//! 2021-03-01, copied in `tests/yang/`; a test validates every message built here against it
//! with `yanglint`).
//!
//! The device writes its RUM file to, or reads a file from, the URL in `file-path`. The model
//! limits `file-path` to 127 characters, so the one-time Outpost URLs must be short.

use serde_json::{Value, json};

use crate::xml;

/// The module's name, the prefix of RESTCONF operation paths and JSON members.
pub const MODULE: &str = "cisco-smart-license";
/// The module's XML namespace.
pub const NAMESPACE: &str = "http://cisco.com/ns/yang/cisco-smart-license";
/// The NETCONF base namespace.
pub const NETCONF_BASE: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";
/// Longest `file-path` the model accepts.
pub const MAX_FILE_PATH: usize = 127;

/// One RPC of the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rpc {
    /// `rum-save-usage-unreported`: the device writes its unreported RUM reports to the URL.
    RumSaveUsageUnreported {
        /// Where the device uploads the file.
        file_path: String,
    },
    /// `rum-save-usage-all`: every RUM report, reported or not.
    RumSaveUsageAll {
        /// Where the device uploads the file.
        file_path: String,
    },
    /// `import-file`: the device reads an ACK, policy, SLAC or trust code from the URL.
    ImportFile {
        /// Where the device downloads the file.
        file_path: String,
    },
}

/// Why an RPC cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The path is empty or longer than the model allows.
    #[error("file-path '{0}' must be 1 to 127 characters (cisco-smart-license limits it)")]
    FilePath(String),
}

impl Rpc {
    /// The RPC's name in the module.
    pub fn name(&self) -> &'static str {
        match self {
            Rpc::RumSaveUsageUnreported { .. } => "rum-save-usage-unreported",
            Rpc::RumSaveUsageAll { .. } => "rum-save-usage-all",
            Rpc::ImportFile { .. } => "import-file",
        }
    }

    fn file_path(&self) -> &str {
        match self {
            Rpc::RumSaveUsageUnreported { file_path }
            | Rpc::RumSaveUsageAll { file_path }
            | Rpc::ImportFile { file_path } => file_path,
        }
    }

    /// Checks the input against the model's restrictions.
    pub fn check(&self) -> Result<(), RpcError> {
        let path = self.file_path();
        if path.is_empty() || path.chars().count() > MAX_FILE_PATH {
            return Err(RpcError::FilePath(path.to_owned()));
        }
        Ok(())
    }

    /// The RESTCONF operation resource (RFC 8040 section 3.6), relative to the RESTCONF root.
    pub fn restconf_path(&self) -> String {
        format!("/restconf/operations/{MODULE}:{}", self.name())
    }

    /// The RESTCONF request body: the input, named `<module>:input` as RFC 8040 section 3.6.1
    /// encodes operation input in JSON.
    pub fn restconf_body(&self) -> Result<Value, RpcError> {
        self.check()?;
        Ok(json!({ format!("{MODULE}:input"): { "file-path": self.file_path() } }))
    }

    /// The NETCONF `<rpc>` element (RFC 6241) carrying the operation.
    pub fn netconf_rpc(&self, message_id: u64) -> Result<String, RpcError> {
        self.check()?;
        Ok(format!(
            "<rpc message-id=\"{message_id}\" xmlns=\"{NETCONF_BASE}\"><{name} xmlns=\"{NAMESPACE}\"><file-path>{path}</file-path></{name}></rpc>",
            name = self.name(),
            path = xml::escape(self.file_path()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_path_and_refuse_what_the_model_refuses() {
        let rpc = Rpc::RumSaveUsageUnreported {
            file_path: "https://outpost.example/pull-drop/Ab3/rum.xml?a=1&b=2".into(),
        };
        assert_eq!(
            rpc.restconf_path(),
            "/restconf/operations/cisco-smart-license:rum-save-usage-unreported"
        );
        assert_eq!(
            rpc.restconf_body().unwrap(),
            json!({ "cisco-smart-license:input": { "file-path": "https://outpost.example/pull-drop/Ab3/rum.xml?a=1&b=2" } })
        );
        assert!(rpc.netconf_rpc(7).unwrap().contains(
            "<file-path>https://outpost.example/pull-drop/Ab3/rum.xml?a=1&amp;b=2</file-path>"
        ));
        let long = Rpc::ImportFile {
            file_path: format!("https://outpost.example/{}", "x".repeat(120)),
        };
        assert!(matches!(long.restconf_body(), Err(RpcError::FilePath(_))));
        assert!(long.netconf_rpc(1).is_err());
        let empty = Rpc::RumSaveUsageAll {
            file_path: String::new(),
        };
        assert!(empty.check().is_err());
    }
}
