//! Names the git commit the binary is built from, for `outpost --version`: the builder's
//! `OUTPOST_GIT_COMMIT` when set (a source tarball has no `.git`), else `git rev-parse`, else
//! `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit).
/// Only files that exist: cargo reruns a build script on every build for a missing one.
fn watch(git_path: &str) {
    if let Some(path) = git(&["rev-parse", "--git-path", git_path])
        && std::path::Path::new(&path).exists()
    {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=OUTPOST_GIT_COMMIT");
    let commit = std::env::var("OUTPOST_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
            watch("HEAD");
            watch("packed-refs");
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watch(&branch);
            }
            Some(commit)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=OUTPOST_GIT_COMMIT={commit}");
}
