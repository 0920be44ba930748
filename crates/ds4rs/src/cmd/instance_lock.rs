//! The single-instance guard of spec §10.5: two processes mapping an
//! 80-150 GB model exhaust memory, so `ds4rs serve` takes an exclusive
//! `flock` on ds4's lock file (`/tmp/ds4.lock`, or `$DS4_LOCK_FILE`) — the
//! same file, so ds4 and ds4rs also exclude each other — and writes its pid
//! there for the message the next one prints.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Held for the life of the process; the lock goes with the file handle.
pub struct InstanceLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another ds4 process is already running (pid {0}); refusing to start")]
    Held(String),
    #[error("lock file {0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// ds4's lock path.
pub fn lock_path() -> PathBuf {
    std::env::var_os("DS4_LOCK_FILE").map_or_else(|| PathBuf::from("/tmp/ds4.lock"), PathBuf::from)
}

/// Takes the lock without waiting.
pub fn acquire() -> Result<InstanceLock, LockError> {
    let path = lock_path();
    let io = |e| LockError::Io(path.display().to_string(), e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held(
                if pid.is_empty() { "unknown" } else { pid }.to_string(),
            ));
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(InstanceLock { _file: file })
}
