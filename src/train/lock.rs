//! One writer per run directory: an exclusive lock on `RUN/.ndt.lock` (as the dataset writer
//! holds on a dataset), taken by `train`, `finetune`, `--resume` and every sweep job before they
//! read or write the run. The lock goes with the process, so a killed writer never leaves a
//! stale lock behind; the next holder removes the temporary files such a writer left
//! (`.NAME.tmpPID`, see `fsutil::tmp_path`).

use crate::error::{Result, io_at, usage};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Name of the lock file in a run directory.
pub const LOCK_FILE: &str = ".ndt.lock";

/// Held while the run directory is written; released on drop (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

/// Whether `name` is a temporary file of `fsutil::write_atomic` (`.NAME.tmpDIGITS`).
fn is_leftover(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    match rest.rfind(".tmp") {
        Some(i) if i > 0 => {
            let pid = &rest[i + 4..];
            !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

impl RunLock {
    /// Creates `dir` if needed and takes its lock, or fails (exit status 1) when another process
    /// holds it. Then removes the leftovers of killed writers.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_at(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(usage(format!(
                    "{} is in use by another ndt process (it holds {}); wait for it to finish or stop it",
                    dir.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_at(&path)(e)),
        }
        let entries = std::fs::read_dir(dir).map_err(io_at(dir))?;
        for e in entries.flatten() {
            let name = e.file_name();
            if let Some(n) = name.to_str()
                && is_leftover(n)
                && e.file_type().is_ok_and(|t| t.is_file())
            {
                let p = e.path();
                std::fs::remove_file(&p).map_err(io_at(&p))?;
            }
        }
        Ok(RunLock { _file: file, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names() {
        assert!(is_leftover(".state.safetensors.tmp1234"));
        assert!(is_leftover(".log.jsonl.tmp7"));
        assert!(!is_leftover("state.safetensors"));
        assert!(!is_leftover(".ndt.lock"));
        assert!(!is_leftover(".x.tmp"));
        assert!(!is_leftover(".x.tmp12a"));
        assert!(!is_leftover("..tmp12"));
    }
}
