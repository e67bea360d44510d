//! The RPCs Outpost sends a product instance it pulls from over RESTCONF or NETCONF
//! (`docs/protocol.md` section 4.2), from the public YANG module `cisco-smart-license` (revision
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
/// The NETCONF 1.0 end-of-message marker (RFC 6242 section 4.3) that closes every message.
pub const NETCONF_EOM: &str = "]]>]]>";
/// The base capability both sides announce. Outpost announces only 1.0, so every session uses
/// end-of-message framing (RFC 6242 section 4.1): every NETCONF server supports it.
pub const NETCONF_BASE_CAPABILITY: &str = "urn:ietf:params:netconf:base:1.0";
/// Largest NETCONF message either side accepts: Smart Licensing replies are a few hundred bytes,
/// but a device's hello lists every module it has, which can run to hundreds of KiB.
pub const MAX_NETCONF_MESSAGE: usize = 1 << 20;

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

    /// The RPC of the module with this name, carrying `file_path`.
    pub fn from_name(name: &str, file_path: String) -> Option<Self> {
        match name {
            "rum-save-usage-unreported" => Some(Rpc::RumSaveUsageUnreported { file_path }),
            "rum-save-usage-all" => Some(Rpc::RumSaveUsageAll { file_path }),
            "import-file" => Some(Rpc::ImportFile { file_path }),
            _ => None,
        }
    }

    /// Where the device writes or reads the file.
    pub fn file_path(&self) -> &str {
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

/// A `<hello>` (RFC 6241 section 8.1) announcing `capabilities`; a server adds its session id.
pub fn netconf_hello(capabilities: &[&str], session_id: Option<u32>) -> String {
    let capabilities: String = capabilities
        .iter()
        .map(|c| format!("<capability>{}</capability>", xml::escape(c)))
        .collect();
    let session = session_id
        .map(|id| format!("<session-id>{id}</session-id>"))
        .unwrap_or_default();
    format!(
        "<hello xmlns=\"{NETCONF_BASE}\"><capabilities>{capabilities}</capabilities>{session}</hello>"
    )
}

/// The capabilities a peer's `<hello>` announces.
pub fn netconf_capabilities(hello: &str) -> Result<Vec<String>, String> {
    let root = xml::parse(hello).map_err(|e| format!("the hello is not XML: {e}"))?;
    if root.name != "hello" {
        return Err(format!("expected <hello>, got <{}>", root.name));
    }
    Ok(root
        .child("capabilities")
        .map(|c| {
            c.children_named("capability")
                .map(|c| c.text.trim().to_owned())
                .collect()
        })
        .unwrap_or_default())
}

/// Whether announced capabilities include the `cisco-smart-license` module (RFC 6020 section
/// 5.6.4: the module's namespace, then `?module=<name>` and other parameters).
pub fn offers_smart_license(capabilities: &[String]) -> bool {
    capabilities.iter().any(|c| {
        c.split_once('?').is_some_and(|(namespace, query)| {
            namespace == NAMESPACE && query.split('&').any(|p| p == format!("module={MODULE}"))
        })
    })
}

/// The `message-id` of an `<rpc>` or `<rpc-reply>`.
pub fn netconf_message_id(message: &str) -> Option<String> {
    root_attribute(message, "message-id")
}

/// The `<session-id>` a server's `<hello>` carries (RFC 6241 section 8.1), if any.
pub fn netconf_session_id(hello: &str) -> Option<u32> {
    xml::parse(hello)
        .ok()?
        .child("session-id")?
        .text
        .trim()
        .parse()
        .ok()
}

/// `<close-session>` (RFC 6241 section 7.8), the polite end of a session.
pub fn netconf_close_session(message_id: u64) -> String {
    format!("<rpc message-id=\"{message_id}\" xmlns=\"{NETCONF_BASE}\"><close-session/></rpc>")
}

/// Reads an `<rpc-reply>`: `Ok` for `<ok/>` or a `return-code` of `success`; otherwise the
/// device's own words (`<error-message>`, else `<error-tag>`, else the return code).
pub fn netconf_reply_outcome(reply: &str) -> Result<(), String> {
    let root = xml::parse(reply).map_err(|e| format!("the reply is not XML: {e}"))?;
    if root.name != "rpc-reply" {
        return Err(format!("expected <rpc-reply>, got <{}>", root.name));
    }
    if let Some(error) = root.child("rpc-error") {
        let said = error
            .child("error-message")
            .or_else(|| error.child("error-tag"))
            .map(|e| e.text.trim().to_owned())
            .unwrap_or_default();
        return Err(format!("rpc-error: {said}"));
    }
    match root.child("return-code").map(|c| c.text.trim()) {
        None | Some("success") => Ok(()),
        Some(code) => Err(format!("return-code {code}")),
    }
}

/// An `<rpc-reply>` to the `<rpc>` with `message_id`, around `body` (XML, inserted as is).
pub fn netconf_reply(message_id: &str, body: &str) -> String {
    format!(
        "<rpc-reply message-id=\"{}\" xmlns=\"{NETCONF_BASE}\">{body}</rpc-reply>",
        xml::escape(message_id)
    )
}

/// The reply of a module RPC: its `return-code` output.
pub fn netconf_return_code(message_id: &str, code: &str) -> String {
    netconf_reply(
        message_id,
        &format!(
            "<return-code xmlns=\"{NAMESPACE}\">{}</return-code>",
            xml::escape(code)
        ),
    )
}

/// An `<rpc-error>` reply (RFC 6241 section 4.3) with its tag and message.
pub fn netconf_error(message_id: &str, tag: &str, message: &str) -> String {
    netconf_reply(
        message_id,
        &format!(
            "<rpc-error><error-type>protocol</error-type><error-tag>{}</error-tag><error-severity>error</error-severity><error-message>{}</error-message></rpc-error>",
            xml::escape(tag),
            xml::escape(message)
        ),
    )
}

/// Splits a NETCONF 1.0 byte stream into messages at each end-of-message marker.
#[derive(Debug, Default)]
pub struct NetconfFramer {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already searched for the marker: a device trickling a message in tiny
    /// packets must not make every search start over.
    scanned: usize,
}

impl NetconfFramer {
    /// Adds bytes read from the channel.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, if one has arrived; an error for a message over
    /// [`MAX_NETCONF_MESSAGE`] or not UTF-8.
    pub fn next_message(&mut self) -> Result<Option<String>, String> {
        let marker = NETCONF_EOM.as_bytes();
        // A marker may straddle what was searched and what arrived since.
        let from = self.scanned.saturating_sub(marker.len() - 1);
        let found = self.buffer[from..]
            .windows(marker.len())
            .position(|w| w == marker)
            .map(|at| from + at);
        let too_long = || format!("a message longer than {MAX_NETCONF_MESSAGE} bytes");
        let Some(end) = found else {
            // Up to a marker's length less one may be the start of the marker.
            if self.buffer.len() > MAX_NETCONF_MESSAGE + marker.len() - 1 {
                return Err(too_long());
            }
            self.scanned = self.buffer.len();
            return Ok(None);
        };
        if end > MAX_NETCONF_MESSAGE {
            return Err(too_long());
        }
        self.scanned = 0;
        let message: Vec<u8> = self.buffer.drain(..end + marker.len()).take(end).collect();
        String::from_utf8(message)
            .map(Some)
            .map_err(|_| "a message that is not UTF-8".to_owned())
    }
}

/// An `<rpc>` a device received: its `message-id` and the operation, when it is one of the
/// module's RPCs (the device side of [`Rpc::netconf_rpc`], for the simulator).
pub fn parse_netconf_rpc(message: &str) -> Result<(String, Option<Rpc>), String> {
    let message_id =
        netconf_message_id(message).ok_or_else(|| "the <rpc> has no message-id".to_owned())?;
    let root = xml::parse(message).map_err(|e| format!("not XML: {e}"))?;
    if root.name != "rpc" {
        return Err(format!("expected <rpc>, got <{}>", root.name));
    }
    let operation = root
        .children
        .first()
        .ok_or_else(|| "the <rpc> names no operation".to_owned())?;
    let rpc = operation
        .child("file-path")
        .and_then(|p| Rpc::from_name(&operation.name, p.text.trim().to_owned()));
    Ok((message_id, rpc))
}

/// The value of one attribute of a document's root element.
fn root_attribute(document: &str, name: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(document);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(start) | quick_xml::events::Event::Empty(start) => {
                let attribute = start.try_get_attribute(name).ok()??;
                return attribute
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
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

    #[test]
    fn netconf_messages_frame_and_read_both_ways() {
        let mut framer = NetconfFramer::default();
        let hello = netconf_hello(&[NETCONF_BASE_CAPABILITY], Some(7));
        framer.push(format!("{hello}{NETCONF_EOM}<rpc-re").as_bytes());
        let first = framer.next_message().unwrap().unwrap();
        assert_eq!(
            netconf_capabilities(&first).unwrap(),
            [NETCONF_BASE_CAPABILITY]
        );
        assert_eq!(framer.next_message().unwrap(), None, "half a message waits");
        framer.push(b"ply><ok/></rpc-reply>]]>]]>");
        let reply = framer.next_message().unwrap().unwrap();
        assert_eq!(netconf_reply_outcome(&reply), Ok(()));

        let rpc = Rpc::ImportFile {
            file_path: "https://o.example/pull-drop/t/ack.xml".into(),
        };
        let (id, parsed) = parse_netconf_rpc(&rpc.netconf_rpc(42).unwrap()).unwrap();
        assert_eq!((id.as_str(), parsed), ("42", Some(rpc)));
        let (_, close) = parse_netconf_rpc(&netconf_close_session(43)).unwrap();
        assert_eq!(close, None);

        assert_eq!(
            netconf_reply_outcome(&netconf_error("3", "access-denied", "no <privilege>")),
            Err("rpc-error: no <privilege>".into())
        );
        assert_eq!(
            netconf_reply_outcome(
                "<rpc-reply xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><rpc-error><error-tag>access-denied</error-tag></rpc-error></rpc-reply>"
            ),
            Err("rpc-error: access-denied".into())
        );
        assert_eq!(
            netconf_reply_outcome(&netconf_return_code("4", "commsend")),
            Err("return-code commsend".into())
        );
        assert_eq!(
            netconf_reply_outcome(&netconf_return_code("5", "success")),
            Ok(())
        );
        assert!(netconf_reply_outcome("<hello/>").is_err());
        assert!(offers_smart_license(&[format!(
            "{NAMESPACE}?module={MODULE}&revision=2021-03-01"
        )]));
        assert!(!offers_smart_license(&[NETCONF_BASE_CAPABILITY.to_owned()]));
        assert!(!offers_smart_license(&[format!(
            "{NAMESPACE}-foo?module={MODULE}-foo&revision=2021-03-01"
        )]));
        assert_eq!(netconf_session_id(&hello), Some(7));
        assert_eq!(
            netconf_message_id(&netconf_return_code("12", "success")).as_deref(),
            Some("12")
        );

        let mut flood = NetconfFramer::default();
        flood.push(&vec![b'x'; MAX_NETCONF_MESSAGE + NETCONF_EOM.len()]);
        assert!(flood.next_message().is_err());
        // A marker split across packets is found; a long message whose marker comes in its
        // last packet is still too long.
        let mut split = NetconfFramer::default();
        for piece in ["<ok/>]]", ">]", "]>"] {
            assert_eq!(split.next_message().unwrap(), None);
            split.push(piece.as_bytes());
        }
        assert_eq!(split.next_message().unwrap().as_deref(), Some("<ok/>"));
        split.push(b"x]]>]]");
        assert_eq!(split.next_message().unwrap(), None);
        split.push(b">");
        assert_eq!(split.next_message().unwrap().as_deref(), Some("x"));
        let mut late = NetconfFramer::default();
        late.push(&vec![b'x'; MAX_NETCONF_MESSAGE - 2]);
        assert_eq!(late.next_message().unwrap(), None);
        late.push(b"xxxxx]]>]]>");
        assert!(late.next_message().is_err());
    }
}
