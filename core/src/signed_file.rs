//! Files CSSM issues and Outpost relays unchanged: the RUM acknowledgement (ACK) with the
//! policy and trust codes inside it, and authorization codes (SLAC) (`docs/protocol.md` section 6).
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
/// A trust code: a root element, and a section of the ACK that answers a trust request [ours].
pub const TRUST_CODE_SECTION: &str = "smartLicenseTrustCode";
/// An authorization code (SLAC).
pub const AUTHORIZATION_ROOT: &str = "smartLicenseAuthorization";

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
    /// The `<udi>` of a UDI-bound file is not `P[ID]:<pid>,SN:<serial>`.
    #[error("<{section}> names no valid device: '{udi}'")]
    Udi {
        /// The section.
        section: &'static str,
        /// The text found.
        udi: String,
    },
    /// The `<udi>` names another device than the signed data: the file was edited.
    #[error(
        "<{section}> is labelled for {udi} but its signed data names {signed}: it was moved to another device"
    )]
    UdiMismatch {
        /// The section.
        section: &'static str,
        /// The `<udi>` text.
        udi: String,
        /// The device the signed data names.
        signed: String,
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

/// What a trust code carries [ours]: the key the device signs its reports with from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustCodeData {
    /// The device it is for (`PID:..,SN:..`), inside the signed data so the code cannot be
    /// moved to another device by editing `<udi>`; set by [`build_trust_code`].
    #[serde(default)]
    pub udi: String,
    /// The device's trust key.
    pub public_key_pem: String,
    /// Milliseconds since the epoch.
    pub issued: i64,
}

/// One entitlement an authorization code allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizedEntitlement {
    /// Entitlement tag.
    pub tag: String,
    /// How many.
    pub count: u32,
    /// `PERPETUAL` or `SUBSCRIPTION`.
    pub license_type: String,
}

/// What an authorization code (SLAC) carries [ours: the inner content is not public].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationData {
    /// The device it is for (`PID:..,SN:..`), inside the signed data so the code cannot be
    /// moved to another device by editing `<udi>`; set by [`build_authorization`].
    #[serde(default)]
    pub udi: String,
    /// The product instance UUID, when known.
    pub piid: String,
    /// What it authorizes.
    pub entitlements: Vec<AuthorizedEntitlement>,
    /// The base58 code the device sends back once it installed the SLAC.
    pub confirm_code: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

/// Signed data bound to one device.
pub trait DeviceBound {
    /// The device the signed data names.
    fn udi(&self) -> &str;
    /// The same data naming `sudi`.
    #[must_use]
    fn bound_to(&self, sudi: &Sudi) -> Self;
}

impl DeviceBound for TrustCodeData {
    fn udi(&self) -> &str {
        &self.udi
    }
    fn bound_to(&self, sudi: &Sudi) -> Self {
        Self {
            udi: sudi.to_string(),
            ..self.clone()
        }
    }
}

impl DeviceBound for AuthorizationData {
    fn udi(&self) -> &str {
        &self.udi
    }
    fn bound_to(&self, sudi: &Sudi) -> Self {
        Self {
            udi: sudi.to_string(),
            ..self.clone()
        }
    }
}

/// A UDI-bound signed file (trust code or SLAC) whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundFile<T> {
    /// The device it is for.
    pub sudi: Sudi,
    /// Its content.
    pub data: T,
    /// The file as a stand-alone document, to relay.
    pub file: String,
}

/// An ACK whose signatures verified, with its parsed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAck {
    /// The acknowledgement.
    pub ack: AckData,
    /// The policy CSSM sent with it, if any.
    pub policy: Option<PolicyData>,
    /// That policy as a stand-alone signed file (what a device gets in `data.policy`).
    pub policy_file: Option<String>,
    /// Trust codes answering the device's trust requests.
    pub trust_codes: Vec<BoundFile<TrustCodeData>>,
}

/// The text form of a UDI in `<udi>` elements: `PID:<pid>,SN:<serial>`. `P:` is accepted too.
pub fn parse_udi(text: &str) -> Option<Sudi> {
    let (pid, serial) = text.trim().split_once(",SN:")?;
    let pid = pid
        .strip_prefix("PID:")
        .or_else(|| pid.strip_prefix("P:"))?;
    let sudi = Sudi::new(pid, serial);
    sudi.validate().ok().map(|()| sudi)
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

/// Builds a signed ACK file, with a policy section when given and the trust code files
/// (from [`build_trust_code`]) as further sections (CSSM simulator side).
pub fn build_ack(
    ack: &AckData,
    policy: Option<&PolicyData>,
    trust_codes: &[String],
    signer: &EcdsaSigner,
) -> Result<String, SignedFileError> {
    let mut out = format!("<{ROOT}>");
    out.push_str(&signed_section(ACK_SECTION, ack, signer)?);
    if let Some(policy) = policy {
        out.push_str(&signed_section(POLICY_SECTION, policy, signer)?);
    }
    for code in trust_codes {
        out.push_str(code);
    }
    out.push_str(&format!("</{ROOT}>"));
    Ok(out)
}

/// A UDI-bound signed file: `<element><udi>..</udi><data>..</data><signature>..</signature>`,
/// the device named inside the signed data too.
fn bound_file<T: Serialize + DeviceBound>(
    element: &str,
    sudi: &Sudi,
    data: &T,
    signer: &EcdsaSigner,
) -> Result<String, SignedFileError> {
    let section = signed_section(element, &data.bound_to(sudi), signer)?;
    let open = format!("<{element}>");
    Ok(section.replacen(
        &open,
        &format!("{open}<udi>{}</udi>", xml::escape(&sudi.to_string())),
        1,
    ))
}

/// Builds a signed trust code for a device (CSSM simulator side).
pub fn build_trust_code(
    sudi: &Sudi,
    data: &TrustCodeData,
    signer: &EcdsaSigner,
) -> Result<String, SignedFileError> {
    bound_file(TRUST_CODE_SECTION, sudi, data, signer)
}

/// Builds a signed authorization code (SLAC) for a device (CSSM simulator side).
pub fn build_authorization(
    sudi: &Sudi,
    data: &AuthorizationData,
    signer: &EcdsaSigner,
) -> Result<String, SignedFileError> {
    bound_file(AUTHORIZATION_ROOT, sudi, data, signer)
}

/// The stand-alone text of a verified section, as a device receives it: the signature covers
/// the unescaped `<data>` text, so escaping it again yields a file that verifies the same.
fn standalone(section: &Element, name: &str) -> String {
    let mut out = format!("<{name}>");
    if let Some(udi) = section.child("udi") {
        out.push_str(&format!("<udi>{}</udi>", xml::escape(udi.text.trim())));
    }
    for part in ["data", "signature"] {
        let text = section
            .child(part)
            .map(|e| e.text.as_str())
            .unwrap_or_default();
        out.push_str(&format!("<{part}>{}</{part}>", xml::escape(text)));
    }
    out.push_str(&format!("</{name}>"));
    out
}

/// Verifies a UDI-bound section and reads its device, which the signed data must name.
fn verify_bound<T: for<'de> Deserialize<'de> + DeviceBound>(
    section: &Element,
    name: &'static str,
    verifier: &SignatureVerifier,
    now: DateTime<Utc>,
) -> Result<BoundFile<T>, SignedFileError> {
    let data = verify_section(section, name, verifier, now)?;
    let udi = section
        .child("udi")
        .ok_or(SignedFileError::Missing("udi"))?;
    let sudi = parse_udi(&udi.text).ok_or_else(|| SignedFileError::Udi {
        section: name,
        udi: udi.text.clone(),
    })?;
    let data: T = data;
    if !parse_udi(data.udi()).is_some_and(|signed| signed.same_device(&sudi)) {
        return Err(SignedFileError::UdiMismatch {
            section: name,
            udi: udi.text.trim().to_owned(),
            signed: data.udi().to_owned(),
        });
    }
    Ok(BoundFile {
        sudi,
        data,
        file: standalone(section, name),
    })
}

/// Parses a file whose root element must be `name`.
fn root_named(file: &str, name: &'static str) -> Result<Element, SignedFileError> {
    let root = xml::parse(file)?;
    if root.name != name {
        return Err(SignedFileError::Missing(name));
    }
    Ok(root)
}

/// Checks the signature of a stand-alone policy file (what a device gets in `data.policy`).
pub fn verify_policy(
    file: &str,
    verifier: &SignatureVerifier,
    now: DateTime<Utc>,
) -> Result<PolicyData, SignedFileError> {
    let root = root_named(file, POLICY_SECTION)?;
    verify_section(&root, POLICY_SECTION, verifier, now)
}

/// Checks the signature of a stand-alone trust code file.
pub fn verify_trust_code(
    file: &str,
    verifier: &SignatureVerifier,
    now: DateTime<Utc>,
) -> Result<BoundFile<TrustCodeData>, SignedFileError> {
    let root = root_named(file, TRUST_CODE_SECTION)?;
    verify_bound(&root, TRUST_CODE_SECTION, verifier, now)
}

/// Checks the signature of an authorization code (SLAC) file and returns its content.
pub fn verify_authorization(
    file: &str,
    verifier: &SignatureVerifier,
    now: DateTime<Utc>,
) -> Result<BoundFile<AuthorizationData>, SignedFileError> {
    let root = root_named(file, AUTHORIZATION_ROOT)?;
    verify_bound(&root, AUTHORIZATION_ROOT, verifier, now)
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
    let root = root_named(file, ROOT)?;
    let ack_section = root
        .child(ACK_SECTION)
        .ok_or(SignedFileError::Missing(ACK_SECTION))?;
    let ack = verify_section(ack_section, ACK_SECTION, verifier, now)?;
    let (policy, policy_file) = match root.child(POLICY_SECTION) {
        Some(section) => (
            Some(verify_section(section, POLICY_SECTION, verifier, now)?),
            Some(standalone(section, POLICY_SECTION)),
        ),
        None => (None, None),
    };
    let trust_codes = root
        .children
        .iter()
        .filter(|c| c.name == TRUST_CODE_SECTION)
        .map(|section| verify_bound(section, TRUST_CODE_SECTION, verifier, now))
        .collect::<Result<_, _>>()?;
    Ok(VerifiedAck {
        ack,
        policy,
        policy_file,
        trust_codes,
    })
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
        let file = build_ack(&sample_ack(), Some(&policy), &[], &signer).unwrap();
        let verified = verify_ack(&file, &verifier, Utc::now()).unwrap();
        assert_eq!(verified.ack, sample_ack());
        assert_eq!(verified.policy, Some(policy.clone()));
        assert!(verified.trust_codes.is_empty());
        // The policy travels on alone to the device and still verifies.
        let alone = verified.policy_file.unwrap();
        assert!(alone.starts_with("<smartLicensePolicy><data>"), "{alone}");
        assert_eq!(
            verify_policy(&alone, &verifier, Utc::now()).unwrap(),
            policy
        );
    }

    #[test]
    fn trust_codes_ride_in_the_ack_and_verify_alone() {
        let pair = generate_signing_certificate("CSSM").unwrap();
        let signer = EcdsaSigner::from_pkcs8_pem(&pair.key_pem).unwrap();
        let verifier = SignatureVerifier::from_certificate_pem(&pair.cert_pem).unwrap();
        let data = TrustCodeData {
            udi: String::new(),
            public_key_pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into(),
            issued: 1_732_700_000_000,
        };
        let members = [
            Sudi::new("C9300-24UX", "FCW1"),
            Sudi::new("C9300-24UX", "FCW2"),
        ];
        let codes: Vec<String> = members
            .iter()
            .map(|m| build_trust_code(m, &data, &signer).unwrap())
            .collect();
        let file = build_ack(&sample_ack(), None, &codes, &signer).unwrap();
        let verified = verify_ack(&file, &verifier, Utc::now()).unwrap();
        assert_eq!(verified.trust_codes.len(), 2);
        for (code, member) in verified.trust_codes.iter().zip(&members) {
            assert_eq!(&code.sudi, member);
            assert_eq!(code.data, data.bound_to(member));
            let alone = verify_trust_code(&code.file, &verifier, Utc::now()).unwrap();
            assert_eq!(&alone.sudi, member);
        }
    }

    #[test]
    fn an_authorization_code_names_its_device_and_verifies() {
        let pair = generate_signing_certificate("CSSM").unwrap();
        let signer = EcdsaSigner::from_pkcs8_pem(&pair.key_pem).unwrap();
        let verifier = SignatureVerifier::from_certificate_pem(&pair.cert_pem).unwrap();
        let data = AuthorizationData {
            udi: String::new(),
            piid: "360b8a0f-7713-4f20-846f-03281350f9d3".into(),
            entitlements: vec![AuthorizedEntitlement {
                tag: "regid.2019-03.com.cisco.DNA_HSEC,1.0_509c41ab".into(),
                count: 1,
                license_type: "PERPETUAL".into(),
            }],
            confirm_code: "5Hq2Zk".into(),
            timestamp: 1_732_700_000_000,
        };
        let sudi = Sudi::new("C9300X-24HX", "FOC2519L8R7");
        let file = build_authorization(&sudi, &data, &signer).unwrap();
        let verified = verify_authorization(&file, &verifier, Utc::now()).unwrap();
        assert_eq!(
            (verified.sudi.clone(), verified.data),
            (sudi.clone(), data.bound_to(&sudi))
        );
        assert_eq!(
            verified.file, file,
            "the stand-alone form is the file itself"
        );
        let tampered = file.replace("\"count\":1", "\"count\":9");
        assert!(verify_authorization(&tampered, &verifier, Utc::now()).is_err());
        assert!(matches!(
            verify_authorization(
                &file.replacen("PID:C9300X-24HX,SN:", "junk", 1),
                &verifier,
                Utc::now()
            ),
            Err(SignedFileError::Udi { .. })
        ));
        // Moved to another device by editing <udi>: the signed data still names the first.
        let moved = file.replacen("SN:FOC2519L8R7</udi>", "SN:FOC0000AAAA</udi>", 1);
        let err = verify_authorization(&moved, &verifier, Utc::now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "<smartLicenseAuthorization> is labelled for PID:C9300X-24HX,SN:FOC0000AAAA but its signed data names PID:C9300X-24HX,SN:FOC2519L8R7: it was moved to another device"
        );
    }

    #[test]
    fn udi_text_takes_both_prefixes() {
        let sudi = Sudi::new("C9300X-24HX", "FOC2519L8R7");
        assert_eq!(
            parse_udi("P:C9300X-24HX,SN:FOC2519L8R7"),
            Some(sudi.clone())
        );
        assert_eq!(parse_udi(" PID:C9300X-24HX,SN:FOC2519L8R7\n"), Some(sudi));
        assert_eq!(parse_udi("C9300X-24HX FOC2519L8R7"), None);
        assert_eq!(parse_udi("PID:,SN:X"), None);
    }

    #[test]
    fn tampered_data_or_wrong_key_is_refused() {
        let pair = generate_signing_certificate("CSSM").unwrap();
        let signer = EcdsaSigner::from_pkcs8_pem(&pair.key_pem).unwrap();
        let verifier = SignatureVerifier::from_certificate_pem(&pair.cert_pem).unwrap();
        let file = build_ack(&sample_ack(), None, &[], &signer).unwrap();
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
