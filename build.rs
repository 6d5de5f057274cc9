//! Build script: fails early and clearly when OpenBLAS is missing, and records build facts
//! (git revision, target CPU features, profile) for reports.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RELUMAX_SKIP_BLAS_CHECK");
    println!("cargo::rerun-if-env-changed=OPENBLAS_LIB_DIR");
    record_build_facts();
    if env::var_os("CARGO_FEATURE_OPENBLAS").is_none()
        && env::var_os("CARGO_FEATURE_EXTERNAL_BLAS").is_none()
    {
        // Without a provider, the link fails much later with a wall of undefined
        // `cblas_sgemm` symbols.
        println!(
            "cargo::error=relumax needs a BLAS: enable its `openblas` feature (the default; \
             with `default-features = false`, add `features = [\"openblas\"]`), or, if your \
             crate links another BLAS and LAPACK itself through blas-src, its `external-blas` \
             feature"
        );
    }
    if env::var_os("CARGO_FEATURE_OPENBLAS").is_some()
        && env::var_os("RELUMAX_SKIP_BLAS_CHECK").is_none()
        && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && !openblas_found()
    {
        println!(
            "cargo::error=OpenBLAS was not found. Install it first: `sudo apt-get install \
             libopenblas-dev pkg-config` (Debian/Ubuntu) or `sudo dnf install openblas-devel` \
             (Fedora), or set OPENBLAS_LIB_DIR to the folder holding libopenblas.so"
        );
    }
}

fn openblas_found() -> bool {
    let pkg_config = Command::new("pkg-config")
        .args(["--exists", "openblas"])
        .status()
        .is_ok_and(|s| s.success());
    if pkg_config {
        return true;
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let mut dirs: Vec<String> = ["OPENBLAS_LIB_DIR", "LIBRARY_PATH", "LD_LIBRARY_PATH"]
        .iter()
        .filter_map(|v| env::var(v).ok())
        .flat_map(|v| v.split(':').map(String::from).collect::<Vec<_>>())
        .collect();
    dirs.extend([
        format!("/usr/lib/{arch}-linux-gnu"),
        "/usr/lib64".into(),
        "/usr/lib".into(),
        "/usr/local/lib".into(),
        "/opt/OpenBLAS/lib".into(),
    ]);
    dirs.iter().any(|d| {
        ["libopenblas.so", "libopenblas.a"]
            .iter()
            .any(|f| !d.is_empty() && Path::new(d).join(f).exists())
    })
}

fn record_build_facts() {
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let git = Path::new(&manifest).join(".git");
    if git.exists() {
        println!("cargo::rerun-if-changed=.git/HEAD");
        println!("cargo::rerun-if-changed=.git/refs");
    }
    let revision = Command::new("git")
        .args(["-C", &manifest, "rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=RELUMAX_GIT_REVISION={revision}");
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    println!("cargo::rustc-env=RELUMAX_TARGET_FEATURES={features}");
    let profile = env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo::rustc-env=RELUMAX_PROFILE={profile}");
}
