//! Output folders that are complete or absent: files are written into a hidden temporary
//! folder beside the target, which is renamed into place only when everything is written.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tempfile::TempDir;

/// Files every run folder holds: a folder without them is not one, and is never replaced.
const RUN_FILES: [&str; 2] = ["config.json", "model.safetensors"];

/// Refuses, before any training, a `target` that replacing would destroy something else: the
/// current folder or one holding it, or an existing folder that is not a run folder.
fn refuse_to_replace(target: &Path) -> anyhow::Result<()> {
    let Ok(resolved) = target.canonicalize() else {
        return Ok(());
    };
    if let Ok(cwd) = std::env::current_dir().and_then(|d| d.canonicalize())
        && cwd.starts_with(&resolved)
    {
        anyhow::bail!(
            "cannot write {}: it is the current folder or holds it; choose a new folder for --out",
            target.display()
        );
    }
    let empty = std::fs::read_dir(&resolved).is_ok_and(|mut d| d.next().is_none());
    let a_run = RUN_FILES.iter().all(|f| resolved.join(f).is_file());
    if !empty && !a_run {
        anyhow::bail!(
            "cannot write {}: it is a folder that is not a relumax run (no {}); choose a new folder for --out",
            target.display(),
            RUN_FILES.join(" or ")
        );
    }
    Ok(())
}

/// Refuses, before any training, an output location whose file system has less than `needed`
/// bytes free (where the free space can be read).
fn check_room(parent: &Path, target: &Path, needed: u64) -> anyhow::Result<()> {
    #[cfg(unix)]
    if let Ok(stats) = rustix::fs::statvfs(parent) {
        let free = stats.f_bavail.saturating_mul(stats.f_frsize);
        if free < needed {
            anyhow::bail!(
                "cannot write {}: the run needs about {} MiB, and its file system has {} MiB free",
                target.display(),
                needed.div_ceil(1 << 20),
                free >> 20
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (parent, target, needed);
    Ok(())
}

/// A run folder being written.
pub struct RunDir {
    tmp: TempDir,
    target: PathBuf,
}

impl RunDir {
    /// Starts writing the folder `target` (its parent is created if needed), whose files and
    /// checkpoints take about `needed` bytes, after the checks of [`RunDir::check`].
    pub fn new(target: &Path, needed: u64) -> anyhow::Result<RunDir> {
        let parent = RunDir::check(target, needed)?;
        let name = target
            .file_name()
            .map_or("run".into(), |n| n.to_string_lossy().into_owned());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempdir_in(&parent)
            .with_context(|| format!("cannot write in {}", parent.display()))?;
        Ok(RunDir {
            tmp,
            target: target.to_path_buf(),
        })
    }

    /// Whether the folder `target` can be written, before a run trains (which leaves nothing on
    /// disk, so that a run stopped at once has nothing to clean up): its parent is a folder
    /// (created if needed) with room for `needed` bytes, and `target` is absent, empty or an
    /// earlier run. Returns the parent.
    pub fn check(target: &Path, needed: u64) -> anyhow::Result<PathBuf> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if parent.exists() && !parent.is_dir() {
            anyhow::bail!(
                "cannot write {}: {} is not a folder",
                target.display(),
                parent.display()
            );
        }
        if target.exists() && !target.is_dir() {
            anyhow::bail!(
                "cannot write {}: it exists and is not a folder",
                target.display()
            );
        }
        refuse_to_replace(target)?;
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        check_room(&parent, target, needed)?;
        Ok(parent)
    }

    /// The path a file named `name` gets while the folder is being written.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes one file into the folder.
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        relumax::fs::write_atomic(&self.file(name), bytes)
            .with_context(|| format!("while writing {}", self.target.display()))
    }

    /// Moves the finished folder into place, replacing an older one, and returns its path.
    pub fn commit(self) -> anyhow::Result<PathBuf> {
        let RunDir { tmp, target } = self;
        let written = tmp.keep();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&written, std::fs::Permissions::from_mode(0o755));
        }
        let old = target.exists().then(|| {
            let mut name = target.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".old-{}", std::process::id()));
            target.with_file_name(name)
        });
        let result = (|| {
            if let Some(old) = &old {
                std::fs::rename(&target, old)?;
            }
            std::fs::rename(&written, &target)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&written);
            return Err(e).with_context(|| format!("cannot write {}", target.display()));
        }
        if let Some(old) = old {
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(target)
    }
}
