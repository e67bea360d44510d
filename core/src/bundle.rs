//! The offline exchange with CSSM (`docs/protocol.md` section 7): the usage bundle Outpost exports
//! ("Export Usage to Cisco") and the ACK bundle it imports ("Import From Cisco").
//!
//! ```text
//! UD_SA_<ts>.tar.gz                 ACK_UD_SA_<ts>.tar.gz  [ours: the outer name]
//!  ├─ manifest.mf                    └─ ACK_UD_VA_<ts>.tar.gz
//!  └─ UD_VA_<ts>.tar.gz                  └─ ACK_dev_<id>_<ts>.txt   (one ACK file each)
//!      └─ dev_<id>_<ts>.txt   (an offline RUM file per product instance)
//! ```
//!
//! The writer streams: each inner archive grows in a temporary file and is appended to the outer
//! one at the end, so memory does not grow with the number of reports. The readers accept only
//! plain files with plain names (no `..`, no absolute paths, no links), bound every member and
//! the total decompressed size, and name the archive and member in every error.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};

use chrono::{DateTime, Duration, Utc};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use tar::{Archive, Builder, EntryType, Header};

/// Name of the manifest in a usage bundle.
pub const MANIFEST: &str = "manifest.mf";
/// Largest text member (a device file, an ACK file) a reader accepts.
pub const MAX_TEXT_MEMBER: u64 = 64 * 1024 * 1024;
/// Most decompressed bytes a reader goes through (a gzip bomb stops here).
pub const MAX_TOTAL_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// Why a bundle was refused; every message names the archive and, where it applies, the member.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not a complete gzip/tar stream.
    #[error("{archive}: the archive is truncated or is not a tar.gz ({message})")]
    Corrupt {
        /// The archive.
        archive: String,
        /// The decoder's complaint.
        message: String,
    },
    /// A member name that could escape a directory or is not plain.
    #[error(
        "{archive}: member name '{member}' is not allowed (absolute, '..' or not a plain name)"
    )]
    UnsafeName {
        /// The archive.
        archive: String,
        /// The name as stored.
        member: String,
    },
    /// A link, directory, device or other non-file member.
    #[error("{archive}: member '{member}' is not a plain file")]
    NotAFile {
        /// The archive.
        archive: String,
        /// The member.
        member: String,
    },
    /// A member or the whole archive is larger than any real bundle.
    #[error("{archive}: member '{member}' is larger than the {limit} bytes accepted")]
    TooLarge {
        /// The archive.
        archive: String,
        /// The member.
        member: String,
        /// The limit.
        limit: u64,
    },
    /// Nothing of what the bundle should hold.
    #[error("{archive}: the archive holds no {what}")]
    Empty {
        /// The archive.
        archive: String,
        /// What is missing.
        what: &'static str,
    },
    /// A member that cannot be read as what it should be.
    #[error("{archive}: member '{member}': {message}")]
    Invalid {
        /// The archive.
        archive: String,
        /// The member.
        member: String,
        /// What is wrong.
        message: String,
    },
    /// Writing failed.
    #[error("writing the bundle: {0}")]
    Io(#[from] io::Error),
}

/// The timestamp in bundle names: `yyMMMdd_HH_MM_SS_mmm`, e.g. `26Nov27_22_45_10_123`.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%y%b%d_%H_%M_%S_%3f").to_string()
}

/// One Virtual Account section of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaSection {
    /// The inner archive, `UD_VA_<ts>.tar.gz`.
    pub file_name: String,
    /// Virtual Account name.
    pub virtual_account: String,
    /// Virtual Account id (empty when not known offline).
    pub virtual_account_id: String,
    /// Set when this VA belongs to another Smart Account than the bundle's [ours].
    pub smart_account: Option<(String, String)>,
}

/// `manifest.mf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Id of this export.
    pub export_uuid: String,
    /// Smart Account name.
    pub smart_account: String,
    /// Smart Account id.
    pub smart_account_id: String,
    /// One section per inner archive.
    pub sections: Vec<VaSection>,
}

impl Manifest {
    /// The manifest text, JAR-manifest style.
    pub fn render(&self) -> String {
        let created_by = serde_json::json!({ "uuid": self.export_uuid }).to_string();
        let mut out = format!(
            "Manifest-Version: 1.0\nCreated-By: {}\nSmart-Account: {}\nSmart-Account-ID: {}\n",
            serde_json::Value::String(created_by),
            self.smart_account,
            self.smart_account_id
        );
        for section in &self.sections {
            out.push_str(&format!(
                "\nName: /{}\nSpecification-VA: {}\nSpecification-VA-ID: {}\n",
                section.file_name, section.virtual_account, section.virtual_account_id
            ));
            if let Some((name, id)) = &section.smart_account {
                out.push_str(&format!("Smart-Account: {name}\nSmart-Account-ID: {id}\n"));
            }
        }
        out
    }

    /// Reads a manifest; `archive` names the bundle in errors.
    pub fn parse(text: &str, archive: &str) -> Result<Self, BundleError> {
        let invalid = |message: String| BundleError::Invalid {
            archive: archive.to_owned(),
            member: MANIFEST.to_owned(),
            message,
        };
        let mut blocks = text.split("\n\n").map(|block| {
            block
                .lines()
                .filter_map(|line| line.split_once(": "))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect::<BTreeMap<String, String>>()
        });
        let main = blocks.next().unwrap_or_default();
        let get = |map: &BTreeMap<String, String>, key: &str| {
            map.get(key)
                .cloned()
                .ok_or_else(|| invalid(format!("{key} is missing")))
        };
        let created_by = get(&main, "Created-By")?;
        let export_uuid = serde_json::from_str::<String>(&created_by)
            .ok()
            .and_then(|inner| serde_json::from_str::<serde_json::Value>(&inner).ok())
            .and_then(|v| v["uuid"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut sections = Vec::new();
        for block in blocks.filter(|b| !b.is_empty()) {
            let name = get(&block, "Name")?;
            let smart_account = match (block.get("Smart-Account"), block.get("Smart-Account-ID")) {
                (Some(name), Some(id)) => Some((name.clone(), id.clone())),
                _ => None,
            };
            sections.push(VaSection {
                file_name: name.trim_start_matches('/').to_owned(),
                virtual_account: get(&block, "Specification-VA")?,
                virtual_account_id: block
                    .get("Specification-VA-ID")
                    .cloned()
                    .unwrap_or_default(),
                smart_account,
            });
        }
        Ok(Self {
            export_uuid,
            smart_account: get(&main, "Smart-Account")?,
            smart_account_id: main.get("Smart-Account-ID").cloned().unwrap_or_default(),
            sections,
        })
    }
}

/// Appends one regular file to a tar.
fn append<W: Write>(
    builder: &mut Builder<W>,
    name: &str,
    size: u64,
    mtime: DateTime<Utc>,
    data: impl Read,
) -> io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(u64::try_from(mtime.timestamp()).unwrap_or(0));
    builder.append_data(&mut header, name, data)
}

/// An inner archive being written to a temporary file.
struct InnerArchive {
    section: VaSection,
    builder: Builder<GzEncoder<File>>,
}

/// Writes a usage bundle (`UD_SA_<ts>.tar.gz`) to `out`, one device file at a time.
pub struct UsageBundleWriter<W: Write> {
    out: W,
    created: DateTime<Utc>,
    export_uuid: String,
    smart_account: (String, String),
    inner: Vec<InnerArchive>,
}

impl<W: Write> UsageBundleWriter<W> {
    /// A bundle for the Smart Account (name, id) of the exporting local account.
    pub fn new(
        out: W,
        smart_account: (&str, &str),
        export_uuid: &str,
        created: DateTime<Utc>,
    ) -> Self {
        Self {
            out,
            created,
            export_uuid: export_uuid.to_owned(),
            smart_account: (smart_account.0.to_owned(), smart_account.1.to_owned()),
            inner: Vec::new(),
        }
    }

    /// The bundle's file name, `UD_SA_<ts>.tar.gz`.
    pub fn file_name(&self) -> String {
        format!("UD_SA_{}.tar.gz", timestamp(self.created))
    }

    /// Index of the inner archive for an SA/VA pair, created on first use.
    pub fn virtual_account(
        &mut self,
        smart_account: (&str, &str),
        virtual_account: (&str, &str),
    ) -> io::Result<usize> {
        let other_sa = (smart_account.0 != self.smart_account.0)
            .then(|| (smart_account.0.to_owned(), smart_account.1.to_owned()));
        if let Some(i) = self.inner.iter().position(|a| {
            a.section.virtual_account == virtual_account.0 && a.section.smart_account == other_sa
        }) {
            return Ok(i);
        }
        // Distinct names for several VAs: their timestamps differ by a millisecond each.
        let offset = Duration::milliseconds(i64::try_from(self.inner.len()).unwrap_or(0));
        let section = VaSection {
            file_name: format!("UD_VA_{}.tar.gz", timestamp(self.created + offset)),
            virtual_account: virtual_account.0.to_owned(),
            virtual_account_id: virtual_account.1.to_owned(),
            smart_account: other_sa,
        };
        let file = tempfile::tempfile()?;
        self.inner.push(InnerArchive {
            section,
            builder: Builder::new(GzEncoder::new(file, Compression::default())),
        });
        Ok(self.inner.len() - 1)
    }

    /// Adds `dev_<device_id>_<ts>.txt` (an offline RUM file) to an inner archive; returns the
    /// member name.
    pub fn add_device_file(
        &mut self,
        archive: usize,
        device_id: &str,
        text: &str,
    ) -> io::Result<String> {
        let name = format!("dev_{device_id}_{}.txt", timestamp(self.created));
        let inner = self
            .inner
            .get_mut(archive)
            .ok_or_else(|| io::Error::other("no such virtual account archive"))?;
        append(
            &mut inner.builder,
            &name,
            text.len() as u64,
            self.created,
            text.as_bytes(),
        )?;
        Ok(name)
    }

    /// How many `UD_VA_...` archives the bundle has so far.
    pub fn archive_count(&self) -> u64 {
        self.inner.len() as u64
    }

    /// Writes the manifest and every inner archive; returns the output.
    pub fn finish(self) -> io::Result<W> {
        let manifest = Manifest {
            export_uuid: self.export_uuid,
            smart_account: self.smart_account.0,
            smart_account_id: self.smart_account.1,
            sections: self.inner.iter().map(|a| a.section.clone()).collect(),
        }
        .render();
        let mut outer = Builder::new(GzEncoder::new(self.out, Compression::default()));
        append(
            &mut outer,
            MANIFEST,
            manifest.len() as u64,
            self.created,
            manifest.as_bytes(),
        )?;
        for archive in self.inner {
            let mut file = archive.builder.into_inner()?.finish()?;
            let size = file.stream_position()?;
            file.rewind()?;
            append(
                &mut outer,
                &archive.section.file_name,
                size,
                self.created,
                file,
            )?;
        }
        outer.into_inner()?.finish()
    }
}

/// Writes an ACK bundle: per Virtual Account, `ACK_UD_VA_<ts>.tar.gz` holding
/// `ACK_dev_<id>_<ts>.txt` files (CSSM simulator side).
pub fn write_ack_bundle<W: Write>(
    out: W,
    virtual_accounts: &[(String, Vec<(String, String)>)],
    created: DateTime<Utc>,
) -> io::Result<W> {
    let mut outer = Builder::new(GzEncoder::new(out, Compression::default()));
    for (i, (va_ts, files)) in virtual_accounts.iter().enumerate() {
        let mut inner = Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        for (device_id, text) in files {
            let name = format!("ACK_dev_{device_id}_{}.txt", timestamp(created));
            append(
                &mut inner,
                &name,
                text.len() as u64,
                created,
                text.as_bytes(),
            )?;
        }
        let bytes = inner.into_inner()?.finish()?;
        let ts = if va_ts.is_empty() {
            timestamp(created + Duration::milliseconds(i64::try_from(i).unwrap_or(0)))
        } else {
            va_ts.clone()
        };
        append(
            &mut outer,
            &format!("ACK_UD_VA_{ts}.tar.gz"),
            bytes.len() as u64,
            created,
            bytes.as_slice(),
        )?;
    }
    outer.into_inner()?.finish()
}

/// A text member read from a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMember {
    /// The inner archive it came from.
    pub archive: String,
    /// Its name.
    pub name: String,
    /// The `<id>` part of `dev_<id>_<ts>.txt` / `ACK_dev_<id>_<ts>.txt`.
    pub device_id: String,
    /// Its content.
    pub text: String,
}

/// A usage bundle as read (CSSM simulator side).
#[derive(Debug, Clone)]
pub struct UsageBundle {
    /// The manifest.
    pub manifest: Manifest,
    /// Every device file.
    pub device_files: Vec<TextMember>,
}

/// Counts decompressed bytes across a whole read, refusing past [`MAX_TOTAL_BYTES`].
struct Budget<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| io::Error::other("more data than any real bundle holds"))?;
        Ok(n)
    }
}

/// A plain member name: no directories, no `..`, nothing absolute (a leading `./` is tolerated).
fn plain_name(raw: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(raw).ok()?;
    let name = name.strip_prefix("./").unwrap_or(name);
    let ok = !name.is_empty()
        && !name.contains('/')
        && !name.contains('\\')
        && name != ".."
        && name != "."
        && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned())
}

/// Walks the members of one (possibly nested) tar.gz, handing each plain file to `visit`.
fn walk<R: Read>(
    reader: R,
    archive: &str,
    mut visit: impl FnMut(&str, &mut dyn Read, u64) -> Result<(), BundleError>,
) -> Result<usize, BundleError> {
    let corrupt = |e: io::Error| BundleError::Corrupt {
        archive: archive.to_owned(),
        message: e.to_string(),
    };
    let mut tar = Archive::new(GzDecoder::new(reader));
    let mut count = 0;
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let name = plain_name(&raw).ok_or_else(|| BundleError::UnsafeName {
            archive: archive.to_owned(),
            member: shown.clone(),
        })?;
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => {}
            // Metadata records of GNU and PAX tar are not members.
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName => continue,
            _ => {
                return Err(BundleError::NotAFile {
                    archive: archive.to_owned(),
                    member: name,
                });
            }
        }
        let size = entry.size();
        visit(&name, &mut entry, size)?;
        count += 1;
    }
    Ok(count)
}

fn read_text(
    reader: &mut dyn Read,
    size: u64,
    archive: &str,
    member: &str,
) -> Result<String, BundleError> {
    if size > MAX_TEXT_MEMBER {
        return Err(BundleError::TooLarge {
            archive: archive.to_owned(),
            member: member.to_owned(),
            limit: MAX_TEXT_MEMBER,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    reader
        .take(MAX_TEXT_MEMBER + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BundleError::Corrupt {
            archive: archive.to_owned(),
            message: e.to_string(),
        })?;
    String::from_utf8(bytes).map_err(|_| BundleError::Invalid {
        archive: archive.to_owned(),
        member: member.to_owned(),
        message: "is not UTF-8 text".into(),
    })
}

/// The `<id>` of `dev_<id>_<ts>.txt` (or `ACK_dev_...`).
fn device_id(name: &str, prefix: &str) -> Option<String> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(".txt")?;
    // The timestamp has four underscores: yyMMMdd_HH_MM_SS_mmm.
    let mut parts: Vec<&str> = rest.rsplitn(6, '_').collect();
    if parts.len() < 6 {
        return None;
    }
    parts.pop().filter(|id| !id.is_empty()).map(str::to_owned)
}

/// Reads the `<prefix><id>_<ts>.txt` files of the inner archive `name` of `archive` into `out`;
/// other members are ignored.
fn read_device_files(
    inner: &mut dyn Read,
    archive: &str,
    name: &str,
    prefix: &str,
    out: &mut Vec<TextMember>,
) -> Result<(), BundleError> {
    let inner_name = format!("{archive}: {name}");
    walk(inner, &inner_name, |member, data, size| {
        let Some(device_id) = device_id(member, prefix) else {
            return Ok(());
        };
        out.push(TextMember {
            archive: name.to_owned(),
            name: member.to_owned(),
            device_id,
            text: read_text(data, size, &inner_name, member)?,
        });
        Ok(())
    })?;
    Ok(())
}

/// Reads an ACK bundle: every `ACK_dev_*.txt` inside every `ACK_UD_VA_*.tar.gz`. Other members
/// are ignored. `archive` names the bundle in errors.
pub fn read_ack_bundle(reader: impl Read, archive: &str) -> Result<Vec<TextMember>, BundleError> {
    let mut acks = Vec::new();
    let mut budget = Budget {
        inner: reader,
        left: MAX_TOTAL_BYTES,
    };
    walk(&mut budget, archive, |name, entry, _| {
        if !(name.starts_with("ACK_UD_VA_") && name.ends_with(".tar.gz")) {
            return Ok(());
        }
        read_device_files(entry, archive, name, "ACK_dev_", &mut acks)
    })?;
    if acks.is_empty() {
        return Err(BundleError::Empty {
            archive: archive.to_owned(),
            what: "ACK_UD_VA_*.tar.gz with ACK_dev_*.txt files",
        });
    }
    Ok(acks)
}

/// Reads a usage bundle (CSSM simulator side).
pub fn read_usage_bundle(reader: impl Read, archive: &str) -> Result<UsageBundle, BundleError> {
    let mut manifest = None;
    let mut device_files = Vec::new();
    let mut budget = Budget {
        inner: reader,
        left: MAX_TOTAL_BYTES,
    };
    walk(&mut budget, archive, |name, entry, size| {
        if name == MANIFEST {
            manifest = Some(Manifest::parse(
                &read_text(entry, size, archive, name)?,
                archive,
            )?);
            return Ok(());
        }
        if !(name.starts_with("UD_VA_") && name.ends_with(".tar.gz")) {
            return Ok(());
        }
        read_device_files(entry, archive, name, "dev_", &mut device_files)
    })?;
    let manifest = manifest.ok_or(BundleError::Empty {
        archive: archive.to_owned(),
        what: MANIFEST,
    })?;
    Ok(UsageBundle {
        manifest,
        device_files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T22:45:10.123Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn timestamps_and_device_ids() {
        assert_eq!(timestamp(at()), "26Nov27_22_45_10_123");
        assert_eq!(
            device_id("dev_0190abc_26Nov27_22_45_10_123.txt", "dev_").as_deref(),
            Some("0190abc")
        );
        assert_eq!(
            device_id("ACK_dev_a_b_26Nov27_22_45_10_123.txt", "ACK_dev_").as_deref(),
            Some("a_b")
        );
        assert_eq!(device_id("dev_26Nov27_22_45_10_123.txt", "dev_"), None);
    }

    #[test]
    fn usage_bundle_round_trips() {
        let mut writer = UsageBundleWriter::new(Vec::new(), ("Acme Corp", "100000"), "e-1", at());
        let campus = writer
            .virtual_account(("Acme Corp", "100000"), ("Campus", "200000"))
            .unwrap();
        let lab = writer
            .virtual_account(("Other SA", "100001"), ("Lab", ""))
            .unwrap();
        assert_eq!(
            writer
                .virtual_account(("Acme Corp", "100000"), ("Campus", "200000"))
                .unwrap(),
            campus
        );
        writer
            .add_device_file(campus, "pi1", "<smartLicense/>")
            .unwrap();
        writer
            .add_device_file(lab, "pi2", "<smartLicense>2</smartLicense>")
            .unwrap();
        let name = writer.file_name();
        let bytes = writer.finish().unwrap();
        assert_eq!(name, "UD_SA_26Nov27_22_45_10_123.tar.gz");

        let bundle = read_usage_bundle(bytes.as_slice(), &name).unwrap();
        assert_eq!(bundle.manifest.smart_account, "Acme Corp");
        assert_eq!(bundle.manifest.export_uuid, "e-1");
        assert_eq!(bundle.manifest.sections.len(), 2);
        assert_eq!(
            bundle.manifest.sections[1].smart_account,
            Some(("Other SA".into(), "100001".into()))
        );
        assert_eq!(bundle.device_files.len(), 2);
        assert_eq!(bundle.device_files[0].device_id, "pi1");
        assert_eq!(
            bundle.device_files[1].text,
            "<smartLicense>2</smartLicense>"
        );
    }

    #[test]
    fn ack_bundle_round_trips_and_empty_is_refused() {
        let bytes = write_ack_bundle(
            Vec::new(),
            &[(String::new(), vec![("pi1".into(), "<ack/>".into())])],
            at(),
        )
        .unwrap();
        let acks = read_ack_bundle(bytes.as_slice(), "ACK.tar.gz").unwrap();
        assert_eq!(
            (acks[0].device_id.as_str(), acks[0].text.as_str()),
            ("pi1", "<ack/>")
        );

        let empty = write_ack_bundle(Vec::new(), &[], at()).unwrap();
        let err = read_ack_bundle(empty.as_slice(), "ACK.tar.gz").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ACK.tar.gz: the archive holds no"),
            "{err}"
        );
    }

    #[test]
    fn truncated_and_hostile_archives_are_refused() {
        let bytes = write_ack_bundle(
            Vec::new(),
            &[(String::new(), vec![("pi1".into(), "<ack/>".into())])],
            at(),
        )
        .unwrap();
        let err = read_ack_bundle(&bytes[..bytes.len() / 2], "cut.tar.gz").unwrap_err();
        assert!(matches!(err, BundleError::Corrupt { .. }), "{err}");
        assert!(matches!(
            read_ack_bundle(&b"not gzip"[..], "x").unwrap_err(),
            BundleError::Corrupt { .. }
        ));

        // A member named ../evil: the tar crate refuses to write such names, so craft the header.
        let mut tar = Vec::new();
        let mut header = Header::new_old();
        header.as_old_mut().name[..7].copy_from_slice(b"../evil");
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(b"x");
        tar.resize(512 * 2, 0);
        tar.resize(512 * 4, 0);
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&tar).unwrap();
        let err = read_ack_bundle(gz.finish().unwrap().as_slice(), "evil.tar.gz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "evil.tar.gz: member name '../evil' is not allowed (absolute, '..' or not a plain name)"
        );
    }
}
