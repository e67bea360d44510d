//! Crypto helpers: ECDSA P-256 signing (the CSSM simulator) and verification against a
//! certificate (Outpost, for every ACK and policy file), certificate generation for TLS
//! bootstrap, hashes and random tokens. aws-lc-rs is the one crypto provider in the tree.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};
use chrono::{DateTime, Datelike, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// OID of prime256v1 (secp256r1), the only curve CSSM files are signed with.
const P256_OID: &str = "1.2.840.10045.3.1.7";

/// Why a key, certificate or signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The private key could not be read.
    #[error("private key is not a PKCS#8 ECDSA P-256 key in PEM form: {0}")]
    Key(String),
    /// The certificate could not be read or has the wrong key type.
    #[error("certificate is unusable: {0}")]
    Certificate(String),
    /// The certificate is outside its validity period.
    #[error("certificate {subject} is not valid at {at} (valid {not_before} to {not_after})")]
    CertificateNotValid {
        /// Subject of the certificate.
        subject: String,
        /// When it was checked.
        at: DateTime<Utc>,
        /// Start of validity.
        not_before: DateTime<Utc>,
        /// End of validity.
        not_after: DateTime<Utc>,
    },
    /// The signature does not match the data and key.
    #[error("signature does not verify")]
    BadSignature,
    /// Generating a key or certificate failed.
    #[error("generating key material failed: {0}")]
    Generate(String),
}

/// An ECDSA P-256 private key that signs with SHA-256, giving DER signatures.
pub struct EcdsaSigner {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for EcdsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcdsaSigner(..)")
    }
}

impl EcdsaSigner {
    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CryptoError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| CryptoError::Key(e.to_string()))?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.secret_pkcs8_der())
                .map_err(|e| CryptoError::Key(e.to_string()))?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// Signs `message`; the result is a DER-encoded ECDSA signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.pair
            .sign(&self.rng, message)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|e| CryptoError::Generate(e.to_string()))
    }
}

/// Verifies ECDSA P-256 / SHA-256 signatures with the public key of a certificate.
#[derive(Debug, Clone)]
pub struct SignatureVerifier {
    public_key: Vec<u8>,
    subject: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl SignatureVerifier {
    /// Reads the first certificate of a PEM file and checks it holds a P-256 key.
    pub fn from_certificate_pem(pem: &str) -> Result<Self, CryptoError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| CryptoError::Certificate(format!("no PEM certificate found: {e}")))?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| CryptoError::Certificate(e.to_string()))?;
        let spki = cert.public_key();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|oid| oid.to_id_string());
        if curve.as_deref() != Some(P256_OID) {
            return Err(CryptoError::Certificate(
                "its key is not an ECDSA P-256 key".into(),
            ));
        }
        let validity = cert.validity();
        let time = |t: x509_parser::time::ASN1Time| {
            DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        Ok(Self {
            public_key: spki.subject_public_key.data.to_vec(),
            subject: cert.subject().to_string(),
            not_before: time(validity.not_before),
            not_after: time(validity.not_after),
        })
    }

    /// Subject of the certificate, for messages.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Checks the certificate is valid at `now` and `signature` (DER) signs `message`.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), CryptoError> {
        if now < self.not_before || now > self.not_after {
            return Err(CryptoError::CertificateNotValid {
                subject: self.subject.clone(),
                at: now,
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.public_key)
            .verify(message, signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// Verifies a DER ECDSA P-256 / SHA-256 signature with a public key given as SPKI PEM
/// (`-----BEGIN PUBLIC KEY-----`), for files that carry their signer's key.
pub fn verify_with_public_key_pem(
    public_key_pem: &str,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    use rustls::pki_types::SubjectPublicKeyInfoDer;
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(public_key_pem.as_bytes())
        .map_err(|e| CryptoError::Key(format!("public key: {e}")))?;
    let (_, parsed) = <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<
        x509_parser::error::X509Error,
    >>::from_der(spki.as_ref())
    .map_err(|e| CryptoError::Key(format!("public key: {e}")))?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &parsed.subject_public_key.data)
        .verify(message, signature)
        .map_err(|_| CryptoError::BadSignature)
}

/// Reads the certificate that signs CSSM files from `path`; `None` when `path` is empty.
pub fn load_verifier(path: &str) -> Result<Option<SignatureVerifier>, String> {
    if path.is_empty() {
        return Ok(None);
    }
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    SignatureVerifier::from_certificate_pem(&pem)
        .map(Some)
        .map_err(|e| format!("{path}: {e}"))
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// `-----BEGIN CERTIFICATE-----`.
    pub cert_pem: String,
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8).
    pub key_pem: String,
}

fn generation_error(e: rcgen::Error) -> CryptoError {
    CryptoError::Generate(e.to_string())
}

/// Parameters valid from yesterday for `years`, so clocks a little behind still accept them.
fn params_valid_for(years: i32, names: Vec<String>) -> Result<CertificateParams, CryptoError> {
    let mut params = CertificateParams::new(names).map_err(generation_error)?;
    let from = Utc::now() - chrono::Duration::days(1);
    let month = u8::try_from(from.month()).unwrap_or(1);
    // Day 28 exists in every month, so the end date is always valid.
    let day = u8::try_from(from.day().min(28)).unwrap_or(1);
    params.not_before = rcgen::date_time_ymd(from.year(), month, day);
    params.not_after = rcgen::date_time_ymd(from.year() + years, month, day);
    Ok(params)
}

/// A self-signed P-256 certificate for signing files (not for TLS).
pub fn generate_signing_certificate(common_name: &str) -> Result<CertifiedKey, CryptoError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generation_error)?;
    let mut params = params_valid_for(10, Vec::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).map_err(generation_error)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A private certificate authority for TLS bootstrap: devices and simulators trust its cert.
pub fn generate_ca(common_name: &str) -> Result<CertifiedKey, CryptoError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generation_error)?;
    let mut params = params_valid_for(20, Vec::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).map_err(generation_error)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A TLS server certificate for `hostnames` (DNS names or IP addresses) issued by `ca`.
pub fn issue_server_certificate(
    ca: &CertifiedKey,
    hostnames: &[String],
) -> Result<CertifiedKey, CryptoError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(generation_error)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(generation_error)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generation_error)?;
    let mut params = params_valid_for(5, hostnames.to_vec())?;
    if let Some(first) = hostnames.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).map_err(generation_error)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A fresh P-256 key pair: (PKCS#8 private key PEM, SubjectPublicKeyInfo PEM).
pub fn generate_key_pair() -> Result<(String, String), CryptoError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generation_error)?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// The SubjectPublicKeyInfo PEM of a PKCS#8 private key PEM.
pub fn public_key_pem_of(private_key_pem: &str) -> Result<String, CryptoError> {
    let key = KeyPair::from_pem(private_key_pem).map_err(|e| CryptoError::Key(e.to_string()))?;
    Ok(key.public_key_pem())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lower-case hex HMAC-SHA256 of `message` under `key` (webhook signatures).
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    hex::encode(aws_lc_rs::hmac::sign(&key, message).as_ref())
}

/// A random alphanumeric token (nonces, client secrets).
pub fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    use super::*;

    #[test]
    fn signs_and_verifies_with_a_generated_certificate() {
        let pair = generate_signing_certificate("CSSM test signing").unwrap();
        let signer = EcdsaSigner::from_pkcs8_pem(&pair.key_pem).unwrap();
        let verifier = SignatureVerifier::from_certificate_pem(&pair.cert_pem).unwrap();
        let sig = signer.sign(b"hello").unwrap();
        verifier.verify(b"hello", &sig, Utc::now()).unwrap();
        assert!(matches!(
            verifier.verify(b"hellO", &sig, Utc::now()),
            Err(CryptoError::BadSignature)
        ));

        let other = generate_signing_certificate("another key").unwrap();
        let other = SignatureVerifier::from_certificate_pem(&other.cert_pem).unwrap();
        assert!(matches!(
            other.verify(b"hello", &sig, Utc::now()),
            Err(CryptoError::BadSignature)
        ));
    }

    #[test]
    fn refuses_expired_certificates_and_garbage() {
        let pair = generate_signing_certificate("x").unwrap();
        let verifier = SignatureVerifier::from_certificate_pem(&pair.cert_pem).unwrap();
        let far_future = Utc::now() + chrono::Duration::days(365 * 30);
        let sig = EcdsaSigner::from_pkcs8_pem(&pair.key_pem)
            .unwrap()
            .sign(b"m")
            .unwrap();
        assert!(matches!(
            verifier.verify(b"m", &sig, far_future),
            Err(CryptoError::CertificateNotValid { .. })
        ));
        assert!(SignatureVerifier::from_certificate_pem("not a pem").is_err());
        assert!(EcdsaSigner::from_pkcs8_pem(&pair.cert_pem).is_err());
    }

    #[test]
    fn issues_server_certificates_from_a_ca() {
        let ca = generate_ca("Outpost test CA").unwrap();
        let leaf =
            issue_server_certificate(&ca, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
