//! Typed errors. Every error a user can cause names the file (or flag) it is about;
//! `exit_code` maps them onto the command line contract (1 = user error, 2 = internal).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input data: the file and what is wrong with it.
    #[error("{}: {msg}", path.display())]
    Input { path: PathBuf, msg: String },
    /// An I/O failure on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bad flags or a config that does not fit (no file involved).
    #[error("{0}")]
    Usage(String),
    /// Training produced a NaN/Inf loss.
    #[error("training stopped: {0}")]
    Diverged(String),
    /// Stopped by a signal (SIGTERM, SIGUSR1) with its progress saved; running it again resumes.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// CUDA driver, NVRTC or kernel failure (the message names the kernel file).
    #[error("cuda: {0}")]
    Cuda(String),
    /// A bug or an unexpected internal state.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Process exit status for this error (SPEC §10): 1 for user errors, 2 for internal failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. }
            | Error::Io { .. }
            | Error::Usage(_)
            | Error::Diverged(_)
            | Error::Interrupted(_) => 1,
            Error::Cuda(_) | Error::Internal(_) => 2,
        }
    }
}

/// Bad-input error about `path`.
pub fn input(path: impl AsRef<Path>, msg: impl Into<String>) -> Error {
    Error::Input {
        path: path.as_ref().to_path_buf(),
        msg: msg.into(),
    }
}

/// Wraps an `io::Error` with the path it happened on.
pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
    Error::Io {
        path: path.as_ref().to_path_buf(),
        source,
    }
}

/// `result.map_err(io_at(path))`
pub fn io_at(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Error {
    let p = path.as_ref().to_path_buf();
    move |e| Error::Io { path: p, source: e }
}

pub fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

pub fn internal(msg: impl Into<String>) -> Error {
    Error::Internal(msg.into())
}
