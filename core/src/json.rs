//! Bounds on what an untrusted JSON document may build in memory.
//!
//! serde_json already refuses nesting deeper than 128 levels, but not width: `[0,0,0,...]`
//! spends two bytes of input per value and 32 to 64 bytes of memory per `serde_json::Value`
//! (more in objects), so a 4 MiB body could grow to hundreds of MiB. A [`Census`] walks the
//! document first without building anything and refuses it past a number of values; only then
//! is it parsed for real.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Most values (every scalar, array, object and object key) one document may hold. A push of
/// a thousand reports holds about 16,000; a report's payload a few thousand. At this cap even
/// the widest document builds a few tens of MiB at most.
pub const MAX_VALUES: usize = 200_000;

/// A document holds more values than allowed.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("more than {limit} JSON values")]
pub struct TooManyValues {
    /// The limit that was passed.
    pub limit: usize,
}

/// Counts the values of one or more documents against a shared allowance.
#[derive(Debug, Clone)]
pub struct Census {
    limit: usize,
    left: usize,
}

impl Default for Census {
    fn default() -> Self {
        Self::new(MAX_VALUES)
    }
}

impl Census {
    /// An allowance of `limit` values, shared by every document checked with it.
    pub fn new(limit: usize) -> Self {
        Self { limit, left: limit }
    }

    /// Counts `text`'s values against what is left. A document that is not JSON passes: the
    /// real parse that follows reports it with its own, more precise message.
    pub fn check(&mut self, text: &[u8]) -> Result<(), TooManyValues> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let mut count = Count {
            left: &mut self.left,
            exceeded: false,
        };
        let _syntax = (&mut count).deserialize(&mut de);
        if count.exceeded {
            return Err(TooManyValues { limit: self.limit });
        }
        Ok(())
    }
}

/// Checks one document against [`MAX_VALUES`].
pub fn check(text: &[u8]) -> Result<(), TooManyValues> {
    Census::default().check(text)
}

/// The seed and visitor of the census: builds nothing, counts each value and key.
struct Count<'a> {
    left: &'a mut usize,
    exceeded: bool,
}

impl Count<'_> {
    fn one<E: de::Error>(&mut self) -> Result<(), E> {
        match self.left.checked_sub(1) {
            Some(left) => {
                *self.left = left;
                Ok(())
            }
            None => {
                self.exceeded = true;
                Err(E::custom("too many values"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for &mut Count<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.one()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.one()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.one()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.one()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.one()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.one()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.one()?;
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.one()?;
        // A key is a string the parsed document keeps too, so it counts as a value.
        while map.next_key_seed(&mut *self)?.is_some() {
            map.next_value_seed(&mut *self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_value_and_key() {
        // Array, 3 scalars, object, 2 keys, string, null: 9 values.
        let doc = br#"[1, true, "x", {"a": "b", "c": null}]"#;
        assert_eq!(Census::new(9).check(doc), Ok(()));
        assert_eq!(Census::new(8).check(doc), Err(TooManyValues { limit: 8 }));
    }

    #[test]
    fn an_allowance_is_shared_by_the_documents_checked_with_it() {
        let mut census = Census::new(5);
        assert_eq!(census.check(b"[1,2]"), Ok(()));
        assert_eq!(census.check(b"[3,4]"), Err(TooManyValues { limit: 5 }));
    }

    #[test]
    fn a_wide_document_is_refused_and_broken_json_left_to_the_parser() {
        let wide = format!("[{}0]", "0,".repeat(MAX_VALUES));
        let err = check(wide.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "more than 200000 JSON values");
        let fits = format!("[{}0]", "0,".repeat(MAX_VALUES - 2));
        assert_eq!(check(fits.as_bytes()), Ok(()));
        assert_eq!(check(b"{\"a\": [1, 2"), Ok(()));
        assert_eq!(check(b"not json"), Ok(()));
        // Deep nesting stops at serde_json's recursion limit, which the real parse reports.
        assert_eq!(check("[".repeat(10_000).as_bytes()), Ok(()));
    }
}
