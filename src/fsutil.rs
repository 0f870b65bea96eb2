//! Atomic file writes: write to a temporary file beside the target, fsync, rename.
//! Nothing already on disk is damaged when a write fails half way.
//!
//! Guarded reads: `open_regular` / `read_bounded` / `read_text` / `read_regular`, the one way
//! every reader of user files opens them (regular files only, never blocking on a FIFO, sizes
//! bounded before anything is allocated), and `available_memory`.

use crate::error::{Result, input, io_at};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Temporary sibling path used while `path` is being written.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes `path` atomically through a writer callback.
pub fn write_atomic_with(
    path: &Path,
    f: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        f(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(io_at(path))
}

/// Largest JSON or TOML document a reader accepts (manifests, plans, run configs, job results,
/// rankings, run descriptions): 256 MiB. Real ones are kilobytes; a manifest of a thousand
/// sessions of ten thousand trials each is about 50 MB.
pub const MAX_TEXT_BYTES: u64 = 256 << 20;

/// What `path` is when it is not a regular file, for messages.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` (following symlinks) for reading if it is a regular file, and returns it with
/// its length. Every reader of user files goes through here: devices (`/dev/zero`, also behind
/// a symlink), FIFOs, sockets and directories are refused, judged from the metadata of the file
/// actually opened (no race with a rename). The file is opened with `O_NONBLOCK`, so opening a
/// FIFO returns at once instead of waiting for a writer; on a regular file the flag changes
/// nothing.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_at(path))?;
    let meta = file.metadata().map_err(io_at(path))?;
    if !meta.is_file() {
        return Err(input(
            path,
            format!("{}, expected a regular file", kind_of(&meta)),
        ));
    }
    Ok((file, meta.len()))
}

/// Reads the whole regular file at `path`, refusing one of more than `max` bytes (checked
/// before anything is allocated, and again while reading in case the file grows).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    read_open(file, len, max, path)
}

/// Reads `file` (`len` bytes by its metadata) to the end, at most `max` bytes.
fn read_open(file: std::fs::File, len: u64, max: u64, path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let too_big = |n: u64| {
        input(
            path,
            format!("file of {n} bytes, more than the {max} bytes this reader accepts"),
        )
    };
    if len > max {
        return Err(too_big(len));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).map_err(|_| too_big(len))?);
    file.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io_at(path))?;
    if buf.len() as u64 > max {
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

/// Reads a JSON or TOML document of at most [`MAX_TEXT_BYTES`] as UTF-8 text.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read_bounded(path, MAX_TEXT_BYTES)?;
    String::from_utf8(bytes).map_err(|e| {
        input(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Reads a whole regular file of any size (arrays, checkpoints): what is read is bounded by the
/// file's size on disk (a file growing meanwhile is refused), which must fit in the memory
/// available.
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if let Some((avail, from)) = available_memory()
        && len > avail
    {
        return Err(input(
            path,
            format!(
                "file of {len} bytes does not fit in the {avail} bytes of memory available ({from})"
            ),
        ));
    }
    read_open(file, len, len, path)
}

/// Memory this process may still allocate, in bytes, and where the figure comes from: the
/// smaller of `MemAvailable` in `/proc/meminfo` and the room left under the cgroup's limit
/// (v2 `memory.max - memory.current`, v1 `memory.limit_in_bytes - memory.usage_in_bytes`).
/// None where neither can be read.
pub fn available_memory() -> Option<(u64, &'static str)> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let num = |p: &str| read(p).and_then(|s| s.trim().parse::<u64>().ok());
    let mut best: Option<(u64, &'static str)> = None;
    let mut offer = |v: u64, from: &'static str| {
        if best.is_none_or(|(b, _)| v < b) {
            best = Some((v, from));
        }
    };
    if let Some(info) = read("/proc/meminfo") {
        let kb = info
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kb) = kb {
            offer(kb.saturating_mul(1024), "MemAvailable in /proc/meminfo");
        }
    }
    if let (Some(max), Some(cur)) = (
        num("/sys/fs/cgroup/memory.max"),
        num("/sys/fs/cgroup/memory.current"),
    ) {
        offer(max.saturating_sub(cur), "cgroup memory.max");
    }
    if let (Some(max), Some(cur)) = (
        num("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        num("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ) {
        offer(max.saturating_sub(cur), "cgroup memory.limit_in_bytes");
    }
    best
}
