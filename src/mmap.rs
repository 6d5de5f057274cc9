//! Read-only file mapping: the one place that maps files, and so the one place with that `unsafe`.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;

use memmap2::Mmap;

/// Bytes of a data file: mapped from disk, or owned when the file had to be decompressed into
/// memory because its folder is read-only.
#[derive(Debug)]
pub enum Bytes {
    /// A read-only memory map of a raw file.
    Mapped(Mmap),
    /// Bytes held in memory.
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// Maps `file` read-only.
///
/// An empty file is returned as empty owned bytes (mapping zero bytes fails on some systems).
pub fn map(file: &File) -> io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only, and relumax never writes a file it has mapped: caches are
    // written to a temporary file and renamed into place, which replaces the directory entry
    // but leaves an existing mapping of the old inode intact. Another process truncating the
    // file under us would be undefined behaviour, as for every mmap-based reader (ripgrep makes
    // the same trade); the data folder is ours by convention.
    let map = unsafe { Mmap::map(file)? };
    Ok(Bytes::Mapped(map))
}
