//! Files CSSM issues and Outpost relays unchanged: the RUM acknowledgement (ACK) and the
//! policy inside it (`PROTOCOL.md` section 6).
//!
//! Each signed section is `<data>JSON</data><signature>base64 DER</signature>`. The signature is
//! ECDSA P-256 / SHA-256 over the exact bytes of the `<data>` text (after XML unescaping), made
//! with the CSSM signing key. Outpost verifies every section before it stores or relays a file.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, EcdsaSigner, SignatureVerifier};
use crate::udi::Sudi;
use crate::xml::{self, Element, XmlError};

/// Root of every CSSM file that carries ACKs.
pub const ROOT: &str = "smartLicense";
/// The ACK section.
pub const ACK_SECTION: &str = "smartLicenseRumAck";
/// The policy section (also a root element when a policy travels alone).
pub const POLICY_SECTION: &str = "smartLicensePolicy";

/// Why a signed file was refused; the message names the section.
#[derive(Debug, thiserror::Error)]
pub enum SignedFileError {
    /// The XML was refused.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// A required element is missing.
    #[error("<{0}> is missing")]
    Missing(&'static str),
    /// The signature text is not base64.
    #[error("<{0}> signature is not base64")]
    SignatureEncoding(&'static str),
    /// The signature does not verify.
    #[error("<{section}> signature check failed: {source}")]
    Signature {
        /// The section whose signature failed.
        section: &'static str,
        /// Why.
        source: CryptoError,
    },
    /// The signed data is not the expected JSON.
    #[error("<{section}> data is not valid: {message}")]
    Data {
        /// The section.
        section: &'static str,
        /// The JSON error.
        message: String,
    },
    /// Signing failed (simulator side).
    #[error("signing failed: {0}")]
    Signing(CryptoError),
}

/// What an ACK acknowledges [ours: the inner content of `<data>` is not public].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckData {
    /// The device the ACK is for.
    pub sudi: Sudi,
    /// The report ids it acknowledges.
    pub acked_report_ids: Vec<i64>,
    /// Smart Account name.
    pub smart_account: String,
    /// Virtual Account name.
    pub virtual_account: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// CSSM's nonce for this ACK.
    pub nonce: String,
}

/// Reporting days for one license kind: first report, ongoing frequency, after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTerms {
    /// Days until the first report is due (0: no requirement).
    pub first_report: u32,
    /// Days between ongoing reports (0: none required).
    pub ongoing: u32,
    /// Days to report after a usage change (0: none required).
    pub on_change: u32,
}

/// A reporting policy, field set after the YANG `policy-attributes-grouping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyData {
    /// Display name.
    pub name: String,
    /// `cisco-default` or `custom`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the device needs an ACK for its reports.
    pub ack_required: bool,
    /// Unenforced perpetual licenses.
    pub perpetual: PolicyTerms,
    /// Unenforced subscription licenses.
    pub subscription: PolicyTerms,
    /// Enforced licenses.
    pub enforced: PolicyTerms,
    /// Export-controlled licenses.
    pub export: PolicyTerms,
}

impl PolicyData {
    /// Cisco's default policy: perpetual 365/0/90, subscription 90/90/90, enforced and
    /// export-controlled 0/0/0, ACK required.
    pub fn cisco_default() -> Self {
        let zero = PolicyTerms {
            first_report: 0,
            ongoing: 0,
            on_change: 0,
        };
        Self {
            name: "Cisco default".into(),
            kind: "cisco-default".into(),
            ack_required: true,
            perpetual: PolicyTerms {
                first_report: 365,
                ongoing: 0,
                on_change: 90,
            },
            subscription: PolicyTerms {
                first_report: 90,
                ongoing: 90,
                on_change: 90,
            },
            enforced: zero,
            export: zero,
        }
    }
}

/// An ACK whose signatures verified, with its parsed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAck {
    /// The acknowledgement.
    pub ack: AckData,
    /// The policy CSSM sent with it, if any.
    pub policy: Option<PolicyData>,
}

fn signed_section<T: Serialize>(
    element: &str,
    data: &T,
    signer: &EcdsaSigner,
) -> Result<String, SignedFileError> {
    let json = serde_json::to_string(data)
        .map_err(|e| SignedFileError::Signing(CryptoError::Generate(e.to_string())))?;
    let signature = signer
        .sign(json.as_bytes())
        .map_err(SignedFileError::Signing)?;
    Ok(format!(
        "<{element}><data>{}</data><signature>{}</signature></{element}>",
        xml::escape(&json),
        STANDARD.encode(signature)
    ))
}

/// Builds a signed ACK file, with a policy section when given (CSSM simulator side).
pub fn build_ack(
    ack: &AckData,
    policy: Option<&PolicyData>,
    signer: &EcdsaSigner,
) -> Result<String, SignedFileError> {
    let mut out = format!("<{ROOT}>");
    out.push_str(&signed_section(ACK_SECTION, ack, signer)?);
    if let Some(policy) = policy {
        out.push_str(&signed_section(POLICY_SECTION, policy, signer)?);
    }
    out.push_str(&format!("</{ROOT}>"));
    Ok(out)
}

/// Builds a stand-alone signed policy file.
pub fn build_policy(policy: &PolicyData, signer: &EcdsaSigner) -> Result<String, SignedFileError> {
    signed_section(POLICY_SECTION, policy, signer)
}

/// Verifies one section and parses its data.
fn verify_section<T: for<'de> Deserialize<'de>>(
    section: &Element,
    name: &'static str,
    verifier: &SignatureVerifier,
    now: DateTime<Utc>,
) -> Result<T, SignedFileError> {
    let data = section
        .child("data")
        .ok_or(SignedFileError::Missing("data"))?;
    let signature = section
        .child("signature")
        .ok_or(SignedFileError::Missing("signature"))?;
    let signature: String = signature
        .text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let signature = STANDARD
        .decode(signature)
        .map_err(|_| SignedFileError::SignatureEncoding(name))?;
    verifier
        .verify(data.text.as_bytes(), &signature, now)
        .map_err(|source| SignedFileError::Signature {
            section: name,
            source,
        })?;
    serde_json::from_str(&data.text).map_err(|e| SignedFileError::Data {
        section: name,
        message: e.to_string(),
    })
}

/// Checks every signature of an ACK file and returns its content.
pub fn verify_ack(
    file: &str,
    verifier: &SignatureVerifier,
    now: DateTime<Utc>,
) -> Result<VerifiedAck, SignedFileError> {
    let root = xml::parse(file)?;
    if root.name != ROOT {
        return Err(SignedFileError::Missing(ROOT));
    }
    let ack_section = root
        .child(ACK_SECTION)
        .ok_or(SignedFileError::Missing(ACK_SECTION))?;
    let ack = verify_section(ack_section, ACK_SECTION, verifier, now)?;
    let policy = match root.child(POLICY_SECTION) {
        Some(section) => Some(verify_section(section, POLICY_SECTION, verifier, now)?),
        None => None,
    };
    Ok(VerifiedAck { ack, policy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::generate_signing_certificate;

    fn sample_ack() -> AckData {
        AckData {
            sudi: Sudi::new("C9300-24UX", "FCW1"),
            acked_report_ids: vec![1, 2, 3],
            smart_account: "Acme & Co <EMEA>".into(),
            virtual_account: "Campus".into(),
            timestamp: 1_732_700_000_000,
            nonce: "abc".into(),
        }
    }

    #[test]
    fn ack_with_policy_round_trips_and_verifies() {
        let pair = generate_signing_certificate("CSSM").unwrap();
        let signer = EcdsaSigner::from_pkcs8_pem(&pair.key_pem).unwrap();
        let verifier = SignatureVerifier::from_certificate_pem(&pair.cert_pem).unwrap();
        let policy = PolicyData::cisco_default();
        let file = build_ack(&sample_ack(), Some(&policy), &signer).unwrap();
        let verified = verify_ack(&file, &verifier, Utc::now()).unwrap();
        assert_eq!(verified.ack, sample_ack());
        assert_eq!(verified.policy, Some(policy));
    }

    #[test]
    fn tampered_data_or_wrong_key_is_refused() {
        let pair = generate_signing_certificate("CSSM").unwrap();
        let signer = EcdsaSigner::from_pkcs8_pem(&pair.key_pem).unwrap();
        let verifier = SignatureVerifier::from_certificate_pem(&pair.cert_pem).unwrap();
        let file = build_ack(&sample_ack(), None, &signer).unwrap();
        let tampered = file.replace("[1,2,3]", "[1,2,3,4]");
        let err = verify_ack(&tampered, &verifier, Utc::now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "<smartLicenseRumAck> signature check failed: signature does not verify"
        );

        let other = generate_signing_certificate("other").unwrap();
        let other = SignatureVerifier::from_certificate_pem(&other.cert_pem).unwrap();
        assert!(matches!(
            verify_ack(&file, &other, Utc::now()),
            Err(SignedFileError::Signature { .. })
        ));
        assert!(matches!(
            verify_ack("<smartLicense/>", &verifier, Utc::now()),
            Err(SignedFileError::Missing(ACK_SECTION))
        ));
    }
}
