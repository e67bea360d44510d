//! Talking NETCONF (RFC 6241) over SSH (RFC 6242, port 830) to a device Outpost pulls from,
//! with the same `cisco-smart-license` RPCs as RESTCONF (`docs/protocol.md` section 4.2).
//!
//! Devices carry self-generated host keys, so, as `ssh` does with `known_hosts`, the key's
//! SHA-256 fingerprint is recorded on first contact and must match on every later one. The
//! check runs in the first key exchange, before the password is sent (russh does not check the
//! key again when it rekeys, which it can only do with the key already verified).
//!
//! Outpost announces only `base:1.0`, so the session uses end-of-message framing, which every
//! NETCONF server speaks; chunked framing (base:1.1) buys nothing for RPCs and replies of a few
//! hundred bytes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use outpost_core::device_rpc::{self, NetconfFramer, Rpc};
use outpost_core::secrets::Credentials;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};

use super::PullError;

/// The IANA port of NETCONF over SSH.
pub const NETCONF_PORT: u16 = 830;

/// Accepts the host key seen on first contact, and only that one afterwards.
struct HostKeyCheck {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let trusted = self.expected.as_ref().is_none_or(|e| *e == fingerprint);
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(fingerprint);
        Ok(trusted)
    }
}

/// A NETCONF session with one device.
pub struct NetconfDevice {
    session: Handle<HostKeyCheck>,
    channel: russh::Channel<client::Msg>,
    framer: NetconfFramer,
    next_id: u64,
    fingerprint: Option<String>,
}

impl std::fmt::Debug for NetconfDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetconfDevice")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn ssh_failure(error: &russh::Error) -> PullError {
    match error {
        russh::Error::InactivityTimeout
        | russh::Error::ConnectionTimeout
        | russh::Error::KeepaliveTimeout => PullError::Unreachable(format!("SSH: {error}")),
        _ => PullError::BadResponse(format!("SSH: {error}")),
    }
}

impl NetconfDevice {
    /// Connects to `host:port` (830 when `None`), checks the host key against `pinned`, logs in
    /// with the password, starts the `netconf` subsystem and exchanges hellos. The device must
    /// offer the `cisco-smart-license` module.
    pub async fn connect(
        host: &str,
        port: Option<i32>,
        credentials: &Credentials,
        pinned: Option<String>,
        timeout: Duration,
    ) -> Result<Self, PullError> {
        let (mut session, fingerprint) = Self::ssh(host, port, pinned, timeout).await?;
        let auth = session
            .authenticate_password(&credentials.username, &credentials.password)
            .await
            .map_err(|e| ssh_failure(&e))?;
        if !auth.success() {
            return Err(PullError::AuthFailed(
                "the device refused the SSH password login".into(),
            ));
        }
        let channel = session
            .channel_open_session()
            .await
            .map_err(|e| ssh_failure(&e))?;
        channel
            .request_subsystem(true, "netconf")
            .await
            .map_err(|e| ssh_failure(&e))?;
        let mut device = Self {
            session,
            channel,
            framer: NetconfFramer::default(),
            next_id: 1,
            fingerprint,
        };
        device.hello().await?;
        Ok(device)
    }

    /// The TCP connection and the SSH key exchange, in which the host key is checked before
    /// anything else is sent: (the session, the host key's fingerprint).
    async fn ssh(
        host: &str,
        port: Option<i32>,
        pinned: Option<String>,
        timeout: Duration,
    ) -> Result<(Handle<HostKeyCheck>, Option<String>), PullError> {
        let port = match port {
            None => NETCONF_PORT,
            Some(p) => u16::try_from(p)
                .map_err(|_| PullError::NotConfigured(format!("port {p} is not a TCP port")))?,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let connect_timeout = timeout.min(Duration::from_secs(10));
        let tcp = tokio::time::timeout(
            connect_timeout,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| {
            PullError::Unreachable(format!(
                "no connection within {} s",
                connect_timeout.as_secs()
            ))
        })?
        .map_err(|e| PullError::Unreachable(e.to_string()))?;
        // The caller's per-device timeout bounds the pull; this one, a little longer, only
        // ends russh's background session with a device that went silent, so that a hung device
        // is reported the same way ("no complete answer within N s") every time.
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(timeout + Duration::from_secs(5)),
            ..Default::default()
        });
        let seen = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            expected: pinned.clone(),
            seen: seen.clone(),
        };
        let connected = client::connect_stream(config, tcp, check).await;
        let fingerprint = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match connected {
            Ok(session) => Ok((session, fingerprint)),
            Err(error) => Err(match (&pinned, &fingerprint) {
                (Some(expected), Some(got)) if expected != got => {
                    PullError::HostKeyChanged(format!(
                        "the device presented host key {got}, not {expected} seen on first contact"
                    ))
                }
                _ => ssh_failure(&error),
            }),
        }
    }

    /// Exchanges hellos: Outpost offers base:1.0 only; the device must speak it, give a
    /// session id and offer the `cisco-smart-license` module.
    async fn hello(&mut self) -> Result<(), PullError> {
        let ours = device_rpc::netconf_hello(&[device_rpc::NETCONF_BASE_CAPABILITY], None);
        self.send(&ours).await?;
        let hello = self.receive().await?;
        let capabilities =
            device_rpc::netconf_capabilities(&hello).map_err(PullError::BadResponse)?;
        if device_rpc::netconf_session_id(&hello).is_none() {
            return Err(PullError::BadResponse(
                "the device's hello has no session-id".into(),
            ));
        }
        if !capabilities
            .iter()
            .any(|c| c == device_rpc::NETCONF_BASE_CAPABILITY)
        {
            return Err(PullError::BadResponse(
                "the device does not speak NETCONF base:1.0".into(),
            ));
        }
        if !device_rpc::offers_smart_license(&capabilities) {
            return Err(PullError::BadResponse(
                "the device's NETCONF server does not offer the cisco-smart-license module".into(),
            ));
        }
        Ok(())
    }

    /// The SHA-256 fingerprint of the device's host key (`SHA256:...`, as `ssh-keygen -l`
    /// prints it).
    pub fn fingerprint(&self) -> Option<String> {
        self.fingerprint.clone()
    }

    async fn send(&self, message: &str) -> Result<(), PullError> {
        let framed = format!("{message}{}", device_rpc::NETCONF_EOM);
        self.channel
            .data(framed.as_bytes())
            .await
            .map_err(|e| ssh_failure(&e))
    }

    async fn receive(&mut self) -> Result<String, PullError> {
        loop {
            if let Some(message) = self.framer.next_message().map_err(PullError::BadResponse)? {
                return Ok(message);
            }
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => self.framer.push(&data),
                Some(ChannelMsg::Failure) => {
                    return Err(PullError::BadResponse(
                        "the device refused the netconf SSH subsystem".into(),
                    ));
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return Err(PullError::BadResponse(
                        "the device closed the NETCONF session".into(),
                    ));
                }
                Some(_) => {}
            }
        }
    }

    /// Calls a `cisco-smart-license` RPC; the reply must be `<ok/>` or a `return-code` of
    /// success.
    pub async fn rpc(&mut self, rpc: &Rpc) -> Result<(), PullError> {
        let id = self.next_id;
        self.next_id += 1;
        let message = rpc
            .netconf_rpc(id)
            .map_err(|e| PullError::NotConfigured(e.to_string()))?;
        self.send(&message).await?;
        let reply = self.receive().await?;
        let outcome = device_rpc::netconf_reply_outcome(&reply)
            .map_err(|e| PullError::BadResponse(format!("{} answered {e}", rpc.name())));
        // RFC 6241 section 4.2: the reply names the request it answers (an error about a
        // message the device could not read may name none; its text is what matters then).
        let answers = device_rpc::netconf_message_id(&reply);
        match answers {
            None if outcome.is_err() => outcome,
            Some(answers) if answers == id.to_string() => outcome,
            _ => Err(PullError::BadResponse(format!(
                "{} was answered with message-id {}, not {id}",
                rpc.name(),
                answers.as_deref().unwrap_or("(none)")
            ))),
        }
    }

    /// Ends the session politely (`<close-session>`); a device that does not answer is left.
    pub async fn close(mut self) {
        let id = self.next_id;
        if self
            .send(&device_rpc::netconf_close_session(id))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.receive()).await;
        }
        let _ = self
            .session
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}
