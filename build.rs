//! Records the commit the binary is built from, for `mha-helper --version`.
//! `MHA_HELPER_COMMIT` in the environment wins (builds from a tarball);
//! else `git rev-parse`, with `-dirty` when tracked files differ from it.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MHA_HELPER_COMMIT");
    // Edited sources make the build dirty.
    for f in ["src", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={f}");
    }
    let commit = std::env::var("MHA_HELPER_COMMIT").ok().or_else(|| {
        // Only this project's own checkout: a source tree unpacked inside
        // some other repository is not that repository's commit.
        let top = git(&["rev-parse", "--show-toplevel"])?;
        let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
        if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(&here).ok()? {
            return None;
        }
        let dir = git(&["rev-parse", "--absolute-git-dir"])?;
        // A new commit or checkout moves HEAD or the ref it names; the index
        // changes when tracked files are staged or checked out.
        for f in ["HEAD", "index", "packed-refs"] {
            println!("cargo:rerun-if-changed={dir}/{f}");
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
        let id = git(&["rev-parse", "--short=12", "HEAD"])?;
        let clean = git(&["diff", "--quiet", "HEAD", "--"]).is_some();
        Some(if clean { id } else { format!("{id}-dirty") })
    });
    println!(
        "cargo:rustc-env=MHA_HELPER_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}
