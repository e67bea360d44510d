//! The bombs of issue 16 against the core parsers, in a process of their own so its peak RSS
//! (`VmHWM`) measures them alone: each is refused, and together they leave the peak under 256
//! MiB above where it started.

#![cfg(target_os = "linux")]
#![expect(clippy::unwrap_used, reason = "a test")]

use std::io::Write;

use flate2::{Compress, Compression, FlushCompress};
use outpost_core::bundle::{BundleError, read_ack_bundle};
use outpost_core::device::DeviceRequest;
use outpost_core::offline_file::{self, OfflineFileError};

const MIB: usize = 1024 * 1024;

/// Peak resident set size of this process so far, in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// A gzip stream built from sync-flushed deflate blocks, so a MiB of one byte is compressed
/// once and its blocks repeated (they refer back only to that byte, which is all the window
/// holds there): gigabytes in about a MiB, built in milliseconds. The trailer is left wrong; the
/// readers stop long before it.
struct Bomb {
    deflate: Compress,
    out: Vec<u8>,
}

impl Bomb {
    fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::best(), false),
            out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        let mut chunk = Vec::with_capacity(bytes.len() + 1024);
        self.deflate
            .compress_vec(bytes, &mut chunk, FlushCompress::Sync)
            .unwrap();
        self.out.extend(chunk);
        self
    }

    /// `1 + mib` MiB of `byte`.
    fn fill(&mut self, byte: u8, mib: usize) -> &mut Self {
        let block = vec![byte; MIB];
        self.raw(&block);
        let mut chunk = Vec::with_capacity(MIB);
        self.deflate
            .compress_vec(&block, &mut chunk, FlushCompress::Sync)
            .unwrap();
        for _ in 0..mib {
            self.out.extend_from_slice(&chunk);
        }
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        self.out.extend([0; 8]);
        std::mem::take(&mut self.out)
    }
}

fn tar_header(name: &str, size: usize) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// A tar.gz holding `name` with `data`, compressed normally.
fn tar_gz(name: &str, data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    builder.append_data(&mut header, name, data).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn the_bombs_are_refused_within_256_mib() {
    let start = peak_rss();

    // A gzip bomb: 4 GiB of zeros in a member the reader skips.
    let bomb = Bomb::new()
        .raw(&tar_header("junk.bin", 4097 * MIB))
        .fill(0, 4096)
        .finish();
    let err = read_ack_bundle(bomb.as_slice(), "zeros.tar.gz").unwrap_err();
    assert!(matches!(err, BundleError::TooMuchData { .. }), "{err}");

    // Text the reader keeps: 16 MiB ACK files of 'a' in an inner archive, as many as fit.
    let mut inner = Bomb::new();
    for i in 0..64 {
        inner
            .raw(&tar_header(
                &format!("ACK_dev_{i}_26Nov27_22_45_10_123.txt"),
                16 * MIB,
            ))
            .fill(b'a', 15);
    }
    let inner = inner.finish();
    let outer = tar_gz("ACK_UD_VA_x.tar.gz", &inner);
    let err = read_ack_bundle(outer.as_slice(), "kept.tar.gz").unwrap_err();
    assert!(matches!(err, BundleError::TooMuchData { .. }), "{err}");

    // Archives nested ten deep.
    let mut nested = tar_gz("ACK_dev_x_26Nov27_22_45_10_123.txt", b"<ack/>");
    for _ in 0..10 {
        nested = tar_gz("ACK_UD_VA_x.tar.gz", &nested);
    }
    let err = read_ack_bundle(nested.as_slice(), "nested.tar.gz").unwrap_err();
    assert!(matches!(err, BundleError::Nested { .. }), "{err}");

    // Billion laughs: refused at the DOCTYPE.
    let mut laughs = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        laughs.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    laughs.push_str("]><smartLicense>&lol9;</smartLicense>");
    assert!(matches!(
        offline_file::parse(&laughs),
        Err(OfflineFileError::Xml(_))
    ));

    // A very wide XML document: 16 MiB of empty elements.
    let wide = format!("<smartLicense>{}</smartLicense>", "<a/>".repeat(4 * MIB));
    let err = offline_file::parse(&wide).unwrap_err();
    assert_eq!(err.to_string(), "more than 100000 elements");
    drop(wide);

    // A very wide JSON body: 16 MiB of zeros in a field kept as JSON.
    let mut body = Vec::new();
    write!(
        body,
        r#"{{"message_type":"usage_report","data":{{"trust_requests":[{}0]}}}}"#,
        "0,".repeat(8 * MIB)
    )
    .unwrap();
    assert!(DeviceRequest::from_json(&body).is_err());
    drop(body);

    let grown = peak_rss().saturating_sub(start);
    println!(
        "peak RSS grew by {} MiB (from {} MiB)",
        grown / MIB,
        start / MIB
    );
    assert!(grown < 256 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}
