//! What a copy or sync did: counts of what it wrote, kept and removed.

/// What a copy or sync did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files written (copied or reflinked).
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
    /// Entries left as they were (sync only).
    pub unchanged: u64,
    /// Entries removed (sync only).
    pub removed: u64,
    /// Entries of the source tree copied or checked, the top directory not
    /// included: for a complete copy or sync, the number of entries in the
    /// source (remembered as the next deploy's progress total).
    pub entries: u64,
}
