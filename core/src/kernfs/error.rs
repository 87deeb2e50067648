//! The errors of kernfs operations: one errno-like enum a caller can match and act on.

use std::error::Error as StdError;
use std::fmt;

/// Why a kernfs operation failed. Every failed operation leaves the tree as it was.
///
/// Each variant corresponds to one Linux errno ([`Error::errno`]), so a sandbox kernel can
/// hand the failure straight back to its caller.
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
/// use refwatch::kernfs::Error;
/// assert_eq!(Error::NotFound.errno(), 2);
/// assert_eq!(Error::NotFound.to_string(), "no such file or directory (ENOENT)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// A component of the path does not exist (`ENOENT`).
    NotFound,
    /// A component used as a directory is not one (`ENOTDIR`).
    NotDir,
    /// The operation needs a non-directory, and the path names a directory (`EISDIR`).
    IsDir,
    /// The name to create already exists (`EEXIST`).
    Exists,
    /// The directory to remove or replace has entries (`ENOTEMPTY`).
    NotEmpty,
    /// A path or name is malformed: an empty component, a NUL byte, `.` or `..` as the name
    /// to create, `..` above the root (`EINVAL`).
    InvalidName,
    /// A name is longer than [`NAME_MAX`](super::NAME_MAX) bytes or a path longer than
    /// [`PATH_MAX`](super::PATH_MAX) (`ENAMETOOLONG`).
    NameTooLong,
    /// A directory cannot be renamed into its own subtree (`EINVAL`, as Linux returns).
    IntoOwnSubtree,
    /// The directory does not allow the operation: creating entries in a dynamic directory,
    /// hard-linking a directory (`EPERM`).
    NotPermitted,
    /// The root cannot be removed or renamed (`EBUSY`).
    Busy,
    /// The operation does not apply to this kind of file: reading a symlink's target from a
    /// non-symlink, reading a directory's contents as bytes (`EINVAL`).
    Invalid,
}

impl Error {
    /// The Linux errno for this error.
    pub fn errno(self) -> i32 {
        match self {
            Error::NotFound => 2,
            Error::NotDir => 20,
            Error::IsDir => 21,
            Error::Exists => 17,
            Error::NotEmpty => 39,
            Error::InvalidName | Error::IntoOwnSubtree | Error::Invalid => 22,
            Error::NameTooLong => 36,
            Error::NotPermitted => 1,
            Error::Busy => 16,
        }
    }

    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Error::NotFound => ("no such file or directory", "ENOENT"),
            Error::NotDir => ("not a directory", "ENOTDIR"),
            Error::IsDir => ("is a directory", "EISDIR"),
            Error::Exists => ("file exists", "EEXIST"),
            Error::NotEmpty => ("directory not empty", "ENOTEMPTY"),
            Error::InvalidName => (
                "invalid path or name (empty component, NUL, `.`/`..` where a name is needed, or `..` above the root)",
                "EINVAL",
            ),
            Error::NameTooLong => ("file name or path too long", "ENAMETOOLONG"),
            Error::IntoOwnSubtree => (
                "cannot move a directory into its own subtree",
                "EINVAL",
            ),
            Error::NotPermitted => ("operation not permitted on this directory or file", "EPERM"),
            Error::Busy => ("the root cannot be removed or renamed", "EBUSY"),
            Error::Invalid => ("operation not valid for this kind of file", "EINVAL"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, name) = self.describe();
        write!(f, "{what} ({name})")
    }
}

impl StdError for Error {}

/// The result of a kernfs operation.
pub type Result<T> = std::result::Result<T, Error>;
