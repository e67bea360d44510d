//! Unique device identifiers (UDI): PID plus serial number (`docs/protocol.md` section 1).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest PID or serial number accepted; real ones are under 40 characters.
const MAX_PART_LEN: usize = 64;
/// Most members an HA set (a stack) is accepted with; real stacks have up to 16.
pub const MAX_HA_MEMBERS: usize = 64;

/// A UDI in its JSON `sudi` form. Optional keys a device adds (`udi_vid`, `uuid`, `suvi`, ...)
/// are kept in `extra` so they travel on unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sudi {
    /// Product id, e.g. `C9300-24UX`.
    pub udi_pid: String,
    /// Serial number, e.g. `FCW2134L00C`.
    pub udi_serial_number: String,
    /// Any other keys the device sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a UDI was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UdiError {
    /// A part is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A part is longer than any real device uses.
    #[error("{0} is longer than {MAX_PART_LEN} characters")]
    TooLong(&'static str),
    /// A part holds a control character or a separator that would make the text form ambiguous.
    #[error("{0} contains a control character, ',' or ':'")]
    BadCharacter(&'static str),
    /// An optional key holds a NUL character.
    #[error("a key of the sudi contains a NUL character")]
    Nul,
}

impl Sudi {
    /// A UDI with no optional keys.
    pub fn new(pid: impl Into<String>, serial: impl Into<String>) -> Self {
        Self {
            udi_pid: pid.into(),
            udi_serial_number: serial.into(),
            extra: Map::new(),
        }
    }

    /// Checks both parts are usable as a key; devices never send anything this refuses.
    pub fn validate(&self) -> Result<(), UdiError> {
        check_part("udi_pid", &self.udi_pid)?;
        check_part("udi_serial_number", &self.udi_serial_number)?;
        if self
            .extra
            .iter()
            .any(|(k, v)| k.contains('\0') || crate::rum::contains_nul(v))
        {
            return Err(UdiError::Nul);
        }
        Ok(())
    }

    /// True when both identify the same device (optional keys ignored).
    pub fn same_device(&self, other: &Sudi) -> bool {
        self.udi_pid == other.udi_pid && self.udi_serial_number == other.udi_serial_number
    }
}

fn check_part(name: &'static str, value: &str) -> Result<(), UdiError> {
    if value.is_empty() {
        return Err(UdiError::Empty(name));
    }
    if value.chars().count() > MAX_PART_LEN {
        return Err(UdiError::TooLong(name));
    }
    if value
        .chars()
        .any(|c| c.is_control() || c == ',' || c == ':')
    {
        return Err(UdiError::BadCharacter(name));
    }
    Ok(())
}

impl fmt::Display for Sudi {
    /// The text form devices print: `PID:C9300-24UX,SN:FCW2134L00C`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PID:{},SN:{}", self.udi_pid, self.udi_serial_number)
    }
}

/// Role of a member of a High Availability set (`ha_udi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HaRole {
    /// The member that reports for the set.
    Active,
    /// The hot standby.
    Standby,
    /// Any other stack member.
    Member,
}

impl HaRole {
    /// The role as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            HaRole::Active => "Active",
            HaRole::Standby => "Standby",
            HaRole::Member => "Member",
        }
    }
}

/// One entry of `ha_udi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaMember {
    /// Its role in the set.
    pub role: HaRole,
    /// Its UDI.
    pub sudi: Sudi,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_optional_keys_and_prints_text_form() {
        let json = r#"{"udi_pid":"C9300-24UX","udi_serial_number":"FCW2134L00C","udi_vid":"V02"}"#;
        let sudi: Sudi = serde_json::from_str(json).unwrap();
        assert_eq!(sudi.to_string(), "PID:C9300-24UX,SN:FCW2134L00C");
        assert_eq!(sudi.extra.get("udi_vid"), Some(&Value::from("V02")));
        let back = serde_json::to_value(&sudi).unwrap();
        assert_eq!(back["udi_vid"], "V02");
    }

    #[test]
    fn refuses_unusable_parts() {
        assert_eq!(
            Sudi::new("", "X").validate(),
            Err(UdiError::Empty("udi_pid"))
        );
        assert_eq!(
            Sudi::new("A", "a,b").validate(),
            Err(UdiError::BadCharacter("udi_serial_number"))
        );
        assert_eq!(
            Sudi::new("A".repeat(65), "X").validate(),
            Err(UdiError::TooLong("udi_pid"))
        );
        assert!(Sudi::new("C9800-CL-K9", "9NTUEA8FIIH").validate().is_ok());
    }
}
