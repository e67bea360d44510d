//! Tenant ids and transport URLs (`docs/protocol.md` section 1).

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Characters escaped in a URL path segment (RFC 3986 `pchar` complement, plus `%`).
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// Longest local account name.
pub const MAX_ACCOUNT_NAME_LEN: usize = 64;

/// Path of the device push endpoint, without the tenant.
pub const PUSH_PATH: &str = "/cslu/v1/pi";

/// The tenant id of a local virtual account: `<local account name>-<number>`.
pub fn tenant_id(account_name: &str, lva_number: i32) -> String {
    format!("{account_name}-{lva_number}")
}

/// Splits a tenant id at its last `-` into the account name and the LVA number.
pub fn split_tenant_id(tenant_id: &str) -> Option<(&str, i32)> {
    let (name, number) = tenant_id.rsplit_once('-')?;
    let number: i32 = number.parse().ok()?;
    (!name.is_empty() && number >= 1).then_some((name, number))
}

/// The transport URL a device is configured with (`license smart url cslu <url>`).
pub fn transport_url(public_base_url: &str, tenant_id: &str) -> String {
    format!(
        "{}{PUSH_PATH}/{}",
        public_base_url.trim_end_matches('/'),
        utf8_percent_encode(tenant_id, PATH_SEGMENT)
    )
}

/// Checks a local account name can be part of a tenant id and a URL.
pub fn validate_account_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("name is empty".into());
    }
    if name != name.trim() {
        return Err("name starts or ends with white space".into());
    }
    if name.chars().count() > MAX_ACCOUNT_NAME_LEN {
        return Err(format!(
            "name is longer than {MAX_ACCOUNT_NAME_LEN} characters"
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err("name contains a control character or a slash".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_tenant_segment() {
        let id = tenant_id("Acme Campus", 1);
        assert_eq!(id, "Acme Campus-1");
        assert_eq!(
            transport_url("https://outpost.example/", &id),
            "https://outpost.example/cslu/v1/pi/Acme%20Campus-1"
        );
    }

    #[test]
    fn refuses_unusable_names() {
        assert!(validate_account_name("Acme").is_ok());
        assert!(validate_account_name(" Acme").is_err());
        assert!(validate_account_name("a/b").is_err());
        assert!(validate_account_name("").is_err());
    }
}
