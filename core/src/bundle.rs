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
//! plain files with plain names (no `..`, no absolute paths, no links), and name the archive and
//! member in every error. They count every decompressed byte (outer and inner) and every member
//! as they read, against [`Limits`], and never open an archive nested deeper than the format.

use std::cell::Cell;
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
/// Largest manifest read: about 100 bytes per Virtual Account. Every `key: value` line becomes
/// two strings in a map, about ten times its size, so the manifest gets a cap of its own.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

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
    /// A member is larger than any real one ([`Limits::max_member_bytes`]).
    #[error("{archive}: member '{member}' is larger than the {limit} bytes accepted")]
    TooLarge {
        /// The archive.
        archive: String,
        /// The member.
        member: String,
        /// The limit.
        limit: u64,
    },
    /// The archives decompress to more than any real bundle
    /// ([`Limits::max_decompressed_bytes`]): a gzip bomb, or a bundle bigger than allowed.
    #[error("{archive}: the bundle decompresses to more than the {limit} bytes accepted")]
    TooMuchData {
        /// The archive being read when the limit was reached.
        archive: String,
        /// The limit.
        limit: u64,
    },
    /// More members than any real bundle ([`Limits::max_members`]).
    #[error("{archive}: the bundle holds more than the {limit} members accepted")]
    TooManyMembers {
        /// The archive being read when the limit was reached.
        archive: String,
        /// The limit.
        limit: u64,
    },
    /// An archive inside an inner archive: the format nests once.
    #[error(
        "{archive}: member '{member}' is an archive inside an inner archive, which the format never holds"
    )]
    Nested {
        /// The inner archive.
        archive: String,
        /// The member.
        member: String,
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

/// What a reader goes through before it refuses a bundle. The defaults suit the server: they
/// hold every bundle a site of tens of thousands of devices produces (an ACK file is about 1.5
/// KiB, 2 KiB with its tar header), while what a reader keeps stays far under the 256 MiB a
/// hostile upload may cost. A caller with bigger sites passes its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes read across the outer archive and every inner one, tar headers and
    /// skipped members included (default 128 MiB). Counted as they are read, so a gzip bomb
    /// stops here; it also bounds the text kept, which is part of it.
    pub max_decompressed_bytes: u64,
    /// Largest text member: a device file, an ACK file, the manifest (default 16 MiB).
    pub max_member_bytes: u64,
    /// Most members, tar metadata records included, across all archives (default 100,000).
    pub max_members: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 128 * 1024 * 1024,
            max_member_bytes: 16 * 1024 * 1024,
            max_members: 100_000,
        }
    }
}

/// Largest tar metadata record (GNU long name, PAX header) read: a path is under 4 KiB.
const MAX_METADATA_BYTES: u64 = 4096;

/// The allowance of one read, shared by the outer archive and every inner one.
struct Meter {
    limits: Limits,
    bytes_left: Cell<u64>,
    members: Cell<u64>,
    /// Set when a read was refused for the budget, so the error that tar or gzip wraps it in
    /// is reported as what it is.
    exhausted: Cell<bool>,
}

impl Meter {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            bytes_left: Cell::new(limits.max_decompressed_bytes),
            members: Cell::new(0),
            exhausted: Cell::new(false),
        }
    }

    fn too_much_data(&self, archive: &str) -> BundleError {
        BundleError::TooMuchData {
            archive: archive.to_owned(),
            limit: self.limits.max_decompressed_bytes,
        }
    }

    /// A read error as the caller should see it.
    fn read_error(&self, archive: &str, error: io::Error) -> BundleError {
        if self.exhausted.get() {
            return self.too_much_data(archive);
        }
        BundleError::Corrupt {
            archive: archive.to_owned(),
            message: error.to_string(),
        }
    }

    fn member(&self, archive: &str) -> Result<(), BundleError> {
        let count = self.members.get() + 1;
        self.members.set(count);
        if count > self.limits.max_members {
            return Err(BundleError::TooManyMembers {
                archive: archive.to_owned(),
                limit: self.limits.max_members,
            });
        }
        Ok(())
    }
}

/// Decompressed bytes pass through here and are counted as they are read, not afterwards.
struct Metered<'m, R> {
    inner: R,
    meter: &'m Meter,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.meter.bytes_left.get();
        if left == 0 {
            // One byte more tells a stream that ends exactly at the limit from one that goes on.
            let mut probe = [0u8; 1];
            if buf.is_empty() || self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.meter.exhausted.set(true);
            return Err(io::Error::other("more data than the bundle limit"));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.meter.bytes_left.set(left - n as u64);
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

/// A name that says archive: the format nests exactly once, so one inside an inner archive is
/// refused rather than skipped.
fn archive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".tar.gz", ".tgz", ".gz", ".tar", ".zip"]
        .iter()
        .any(|suffix| lower.ends_with(suffix))
}

/// Reads a tar metadata record (GNU long name or PAX header) and returns the member name it
/// sets, if any. tar's own reader would take such records whole into memory, whatever their
/// size, so entries are read raw and these are read here, bounded.
fn metadata_name(
    entry: &mut dyn Read,
    size: u64,
    pax: bool,
    archive: &str,
    meter: &Meter,
) -> Result<Option<Vec<u8>>, BundleError> {
    if size > MAX_METADATA_BYTES {
        return Err(BundleError::Invalid {
            archive: archive.to_owned(),
            member: "(tar metadata)".into(),
            message: format!("a metadata record is larger than {MAX_METADATA_BYTES} bytes"),
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| meter.read_error(archive, e))?;
    if !pax {
        // A GNU long name is the name, NUL-terminated.
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        bytes.truncate(end);
        return Ok(Some(bytes));
    }
    for record in tar::PaxExtensions::new(&bytes) {
        let Ok(record) = record else {
            return Err(BundleError::Invalid {
                archive: archive.to_owned(),
                member: "(tar metadata)".into(),
                message: "a PAX header is malformed".into(),
            });
        };
        if record.key_bytes() == b"path" {
            return Ok(Some(record.value_bytes().to_vec()));
        }
    }
    Ok(None)
}

/// Walks the members of one tar.gz, handing each plain file to `visit`. Every decompressed
/// byte and every member counts against `meter`.
fn walk<R: Read>(
    reader: R,
    archive: &str,
    meter: &Meter,
    mut visit: impl FnMut(&str, &mut dyn Read, u64) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let mut tar = Archive::new(Metered {
        inner: GzDecoder::new(reader),
        meter,
    });
    let entries = tar
        .entries()
        .map_err(|e| meter.read_error(archive, e))?
        .raw(true);
    let mut long_name: Option<Vec<u8>> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| meter.read_error(archive, e))?;
        meter.member(archive)?;
        let size = entry.size();
        match entry.header().entry_type() {
            EntryType::GNULongName => {
                long_name = metadata_name(&mut entry, size, false, archive, meter)?;
                continue;
            }
            EntryType::XHeader => {
                if let Some(name) = metadata_name(&mut entry, size, true, archive, meter)? {
                    long_name = Some(name);
                }
                continue;
            }
            // Metadata that names no member (link targets, archive-wide PAX records); its
            // bytes are skipped, and counted, like any other.
            EntryType::XGlobalHeader | EntryType::GNULongLink => continue,
            _ => {}
        }
        let raw = match long_name.take() {
            Some(name) => name,
            None => entry.path_bytes().into_owned(),
        };
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let name = plain_name(&raw).ok_or_else(|| BundleError::UnsafeName {
            archive: archive.to_owned(),
            member: shown.clone(),
        })?;
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => {}
            _ => {
                return Err(BundleError::NotAFile {
                    archive: archive.to_owned(),
                    member: name,
                });
            }
        }
        visit(&name, &mut entry, size)?;
    }
    Ok(())
}

fn read_text(
    reader: &mut dyn Read,
    size: u64,
    archive: &str,
    member: &str,
    meter: &Meter,
) -> Result<String, BundleError> {
    let limit = meter.limits.max_member_bytes;
    if size > limit {
        return Err(BundleError::TooLarge {
            archive: archive.to_owned(),
            member: member.to_owned(),
            limit,
        });
    }
    // Refused before anything is allocated for it: a header may claim what the data never
    // delivers.
    if size > meter.bytes_left.get() {
        return Err(meter.too_much_data(archive));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    reader
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| meter.read_error(archive, e))?;
    if bytes.len() as u64 != size {
        return Err(BundleError::Corrupt {
            archive: archive.to_owned(),
            message: format!("member '{member}' is cut short"),
        });
    }
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
/// other members are skipped, except archives, which the format never nests this deep.
fn read_device_files(
    inner: &mut dyn Read,
    archive: &str,
    name: &str,
    prefix: &str,
    meter: &Meter,
    out: &mut Vec<TextMember>,
) -> Result<(), BundleError> {
    let inner_name = format!("{archive}: {name}");
    walk(inner, &inner_name, meter, |member, data, size| {
        if archive_name(member) {
            return Err(BundleError::Nested {
                archive: inner_name.clone(),
                member: member.to_owned(),
            });
        }
        let Some(device_id) = device_id(member, prefix) else {
            return Ok(());
        };
        out.push(TextMember {
            archive: name.to_owned(),
            name: member.to_owned(),
            device_id,
            text: read_text(data, size, &inner_name, member, meter)?,
        });
        Ok(())
    })
}

/// Reads an ACK bundle within the default [`Limits`]: every `ACK_dev_*.txt` inside every
/// `ACK_UD_VA_*.tar.gz`. Other members are ignored. `archive` names the bundle in errors.
pub fn read_ack_bundle(reader: impl Read, archive: &str) -> Result<Vec<TextMember>, BundleError> {
    read_ack_bundle_within(reader, archive, Limits::default())
}

/// [`read_ack_bundle`] within the caller's limits.
pub fn read_ack_bundle_within(
    reader: impl Read,
    archive: &str,
    limits: Limits,
) -> Result<Vec<TextMember>, BundleError> {
    let meter = Meter::new(limits);
    let mut acks = Vec::new();
    walk(reader, archive, &meter, |name, entry, _| {
        if !(name.starts_with("ACK_UD_VA_") && name.ends_with(".tar.gz")) {
            return Ok(());
        }
        read_device_files(entry, archive, name, "ACK_dev_", &meter, &mut acks)
    })?;
    if acks.is_empty() {
        return Err(BundleError::Empty {
            archive: archive.to_owned(),
            what: "ACK_UD_VA_*.tar.gz with ACK_dev_*.txt files",
        });
    }
    Ok(acks)
}

/// Reads a usage bundle within the default [`Limits`] (CSSM simulator side).
pub fn read_usage_bundle(reader: impl Read, archive: &str) -> Result<UsageBundle, BundleError> {
    read_usage_bundle_within(reader, archive, Limits::default())
}

/// [`read_usage_bundle`] within the caller's limits.
pub fn read_usage_bundle_within(
    reader: impl Read,
    archive: &str,
    limits: Limits,
) -> Result<UsageBundle, BundleError> {
    let meter = Meter::new(limits);
    let mut manifest = None;
    let mut device_files = Vec::new();
    walk(reader, archive, &meter, |name, entry, size| {
        if name == MANIFEST {
            if size > MAX_MANIFEST_BYTES {
                return Err(BundleError::TooLarge {
                    archive: archive.to_owned(),
                    member: name.to_owned(),
                    limit: MAX_MANIFEST_BYTES,
                });
            }
            manifest = Some(Manifest::parse(
                &read_text(entry, size, archive, name, &meter)?,
                archive,
            )?);
            return Ok(());
        }
        if !(name.starts_with("UD_VA_") && name.ends_with(".tar.gz")) {
            return Ok(());
        }
        read_device_files(entry, archive, name, "dev_", &meter, &mut device_files)
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

    /// A reader that counts the bytes it hands out.
    struct Counting<'a> {
        data: &'a [u8],
        handed_out: &'a Cell<usize>,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.read(buf)?;
            self.handed_out.set(self.handed_out.get() + n);
            Ok(n)
        }
    }

    /// A tar header for a regular member.
    fn tar_header(name: &str, size: u64) -> Vec<u8> {
        let mut header = Header::new_gnu();
        header.set_path(name).unwrap();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(EntryType::Regular);
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    /// gzip of `prefix`, then 64 KiB and `zero_mib` MiB of zeros: a bomb of 1 GiB in about 1 MiB,
    /// made in milliseconds. One MiB of zeros is compressed once, after 64 KiB of zeros, and its
    /// deflate blocks (sync-flushed, so byte-aligned and not final) are repeated: they only
    /// refer back to zeros, which is all the window ever holds there. Without `crc` the trailer
    /// is left wrong; the readers under test stop long before it.
    fn gzip_of_zeros(prefix: &[u8], zero_mib: usize, crc: bool) -> Vec<u8> {
        use flate2::{Compress, FlushCompress};
        let mut deflate = Compress::new(Compression::best(), false);
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let mut squeeze = |input: &[u8], flush: FlushCompress| {
            let mut chunk = Vec::with_capacity(input.len() + 1024);
            deflate.compress_vec(input, &mut chunk, flush).unwrap();
            chunk
        };
        out.extend(squeeze(prefix, FlushCompress::Sync));
        let warm = vec![0u8; 64 * 1024];
        out.extend(squeeze(&warm, FlushCompress::Sync));
        let mib = squeeze(&vec![0u8; 1024 * 1024], FlushCompress::Sync);
        for _ in 0..zero_mib {
            out.extend_from_slice(&mib);
        }
        out.extend(squeeze(&[], FlushCompress::Finish));
        let mut check = flate2::Crc::new();
        if crc {
            check.update(prefix);
            check.update(&warm);
            let zeros = vec![0u8; 1024 * 1024];
            for _ in 0..zero_mib {
                check.update(&zeros);
            }
        }
        out.extend(check.sum().to_le_bytes());
        let total = prefix.len() + warm.len() + zero_mib * 1024 * 1024;
        out.extend(u32::try_from(total % (1 << 32)).unwrap().to_le_bytes());
        out
    }

    #[test]
    fn the_bomb_builder_makes_valid_gzip() {
        let gz = gzip_of_zeros(b"head", 3, true);
        let mut content = Vec::new();
        GzDecoder::new(gz.as_slice())
            .read_to_end(&mut content)
            .unwrap();
        assert_eq!(content.len(), 4 + 64 * 1024 + 3 * 1024 * 1024);
        assert_eq!(&content[..4], b"head");
        assert!(content[4..].iter().all(|&b| b == 0));
    }

    /// A tar.gz made by the tar crate with the given members.
    fn tar_gz(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (name, data) in members {
            append(&mut builder, name, data.len() as u64, at(), *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_is_refused_after_reading_at_most_the_limit() {
        // 1 GiB of zeros in a member the reader skips, compressed to about 1 MiB.
        let gib = 1024 * 1024 * 1024;
        let bomb = gzip_of_zeros(&tar_header("junk.bin", gib + 64 * 1024), 1024, false);
        assert!(bomb.len() < 2 * 1024 * 1024, "{} bytes", bomb.len());
        let handed_out = Cell::new(0);
        let limits = Limits {
            max_decompressed_bytes: 32 * 1024 * 1024,
            ..Limits::default()
        };
        let reader = Counting {
            data: &bomb,
            handed_out: &handed_out,
        };
        let err = read_ack_bundle_within(reader, "bomb.tar.gz", limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bomb.tar.gz: the bundle decompresses to more than the 33554432 bytes accepted"
        );
        // 32 MiB of the 1,024 decompressed: about a 32nd of the compressed bytes were read.
        let read = handed_out.get();
        assert!(read < bomb.len() / 16, "{read} of {} bytes", bomb.len());

        // The default limit holds too, and the usage reader the same way.
        let err = read_usage_bundle(bomb.as_slice(), "bomb.tar.gz").unwrap_err();
        assert!(matches!(err, BundleError::TooMuchData { limit, .. } if limit == 128 << 20));
    }

    #[test]
    fn a_bomb_inside_an_inner_archive_counts_against_the_same_limit() {
        let gib = 1024 * 1024 * 1024;
        let inner = gzip_of_zeros(&tar_header("junk.bin", gib + 64 * 1024), 1024, false);
        let outer = tar_gz(&[("ACK_UD_VA_x.tar.gz", &inner)]);
        // The inner bomb's repeated blocks compress again: 1 GiB in under 64 KiB.
        assert!(outer.len() < 64 * 1024, "{} bytes", outer.len());
        let limits = Limits {
            max_decompressed_bytes: 16 * 1024 * 1024,
            ..Limits::default()
        };
        let err = read_ack_bundle_within(outer.as_slice(), "b.tar.gz", limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.tar.gz: ACK_UD_VA_x.tar.gz: the bundle decompresses to more than the 16777216 bytes accepted"
        );
        // A text member claiming more than a member may hold, or than the budget has left, is
        // refused on its header, before anything is allocated or read for it.
        for (size, limits, expected) in [
            (
                gib,
                Limits::default(),
                "ACK_dev_x_26Nov27_22_45_10_123.txt' is larger than the 16777216 bytes accepted",
            ),
            (
                8 * 1024 * 1024,
                Limits {
                    max_decompressed_bytes: 4 * 1024 * 1024,
                    ..Limits::default()
                },
                "decompresses to more than the 4194304 bytes accepted",
            ),
        ] {
            let header = tar_header("ACK_dev_x_26Nov27_22_45_10_123.txt", size);
            let inner = gzip_of_zeros(&header, 1, false);
            let outer = tar_gz(&[("ACK_UD_VA_x.tar.gz", &inner)]);
            let err = read_ack_bundle_within(outer.as_slice(), "b", limits).unwrap_err();
            assert!(err.to_string().ends_with(expected), "{err}");
        }
    }

    #[test]
    fn every_decompressed_byte_is_counted_outer_and_inner() {
        let bundle = write_ack_bundle(
            Vec::new(),
            &[(
                String::new(),
                vec![
                    ("pi1".into(), "<ack/>".repeat(1000)),
                    ("pi2".into(), "x".into()),
                ],
            )],
            at(),
        )
        .unwrap();
        let read_with = |max_decompressed_bytes| {
            read_ack_bundle_within(
                bundle.as_slice(),
                "b",
                Limits {
                    max_decompressed_bytes,
                    ..Limits::default()
                },
            )
        };
        // The smallest budget that reads the bundle: everything read, and not a byte more.
        let (mut low, mut high) = (0u64, 1 << 20);
        while low < high {
            let mid = (low + high) / 2;
            if read_with(mid).is_ok() {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        assert!(matches!(
            read_with(low - 1),
            Err(BundleError::TooMuchData { .. })
        ));
        let mut outer = Vec::new();
        GzDecoder::new(bundle.as_slice())
            .read_to_end(&mut outer)
            .unwrap();
        // The outer archive's bytes alone (up to its end marker) do not suffice: the inner
        // archive's decompressed bytes, 6,000 of text among them, are counted too.
        assert!(
            low > outer.len() as u64 - 1024 + 6000,
            "{low} vs {}",
            outer.len()
        );
    }

    #[test]
    fn archives_nested_deeper_than_the_format_are_refused() {
        let deepest = tar_gz(&[("ACK_dev_x_26Nov27_22_45_10_123.txt", b"<ack/>")]);
        let deeper = tar_gz(&[("ACK_UD_VA_y.tar.gz", &deepest)]);
        let outer = tar_gz(&[("ACK_UD_VA_x.tar.gz", &deeper)]);
        let err = read_ack_bundle(outer.as_slice(), "n.tar.gz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "n.tar.gz: ACK_UD_VA_x.tar.gz: member 'ACK_UD_VA_y.tar.gz' is an archive inside an inner archive, which the format never holds"
        );
    }

    #[test]
    fn members_are_counted_across_archives() {
        let files = |id: &str| vec![(id.to_owned(), "<ack/>".to_owned())];
        let bundle = write_ack_bundle(
            Vec::new(),
            &[
                (String::new(), files("a")),
                (String::new(), files("b")),
                (String::new(), files("c")),
            ],
            at(),
        )
        .unwrap();
        let read_with = |max_members| {
            read_ack_bundle_within(
                bundle.as_slice(),
                "m",
                Limits {
                    max_members,
                    ..Limits::default()
                },
            )
        };
        // Three inner archives and one file in each.
        assert_eq!(read_with(6).unwrap().len(), 3);
        let err = read_with(5).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("the bundle holds more than the 5 members accepted"),
            "{err}"
        );
    }

    #[test]
    fn a_manifest_larger_than_any_real_one_is_refused() {
        let lines = "k: v\n".repeat(usize::try_from(MAX_MANIFEST_BYTES).unwrap() / 5 + 1);
        let bundle = tar_gz(&[(MANIFEST, lines.as_bytes())]);
        let err = read_usage_bundle(bundle.as_slice(), "u").unwrap_err();
        assert_eq!(
            err.to_string(),
            "u: member 'manifest.mf' is larger than the 1048576 bytes accepted"
        );
    }

    #[test]
    fn long_names_are_read_and_oversized_metadata_refused() {
        // Over 100 bytes: the tar crate writes a GNU long name record before the member.
        let id = "d".repeat(150);
        let bundle = write_ack_bundle(
            Vec::new(),
            &[(String::new(), vec![(id.clone(), "<ack/>".into())])],
            at(),
        )
        .unwrap();
        let acks = read_ack_bundle(bundle.as_slice(), "l").unwrap();
        assert_eq!(acks[0].device_id, id);

        let mut long = Header::new_gnu();
        long.set_entry_type(EntryType::GNULongName);
        long.set_size(MAX_METADATA_BYTES + 1);
        long.set_path("././@LongLink").unwrap();
        long.set_cksum();
        let gz = gzip_of_zeros(long.as_bytes(), 1, false);
        let err = read_ack_bundle(gz.as_slice(), "l").unwrap_err();
        assert!(
            err.to_string()
                .ends_with("a metadata record is larger than 4096 bytes"),
            "{err}"
        );
    }
}
