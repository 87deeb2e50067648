//! Path syntax: checked once, before any lock is taken, so that a bad path is an error that
//! leaves the tree untouched and never a panic.
//!
//! A path is names separated by `/`, with at most one leading `/` (every path starts at the
//! root; `""` and `"/"` are the root). An empty component (`a//b`, a trailing `/`), a NUL
//! byte, a name over [`NAME_MAX`] bytes or a path over [`PATH_MAX`] bytes is an error. `.`
//! and `..` are allowed while walking (`..` above the root is an error, found by the walk);
//! they are not names a file can be created, removed or renamed under.

use super::error::{Error, Result};

/// The longest name, in bytes (Linux's `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The longest path, in bytes (Linux's `PATH_MAX`, without the NUL).
pub const PATH_MAX: usize = 4095;

/// The components of `path`, checked.
pub(crate) fn components(path: &str) -> Result<Vec<&str>> {
    if path.len() > PATH_MAX {
        return Err(Error::NameTooLong);
    }
    if path.contains('\0') {
        return Err(Error::InvalidName);
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|c| match c.len() {
            0 => Err(Error::InvalidName),
            n if n > NAME_MAX => Err(Error::NameTooLong),
            _ => Ok(c),
        })
        .collect()
}

/// `path` split into the directory's components and the final name, checked; `None` for the
/// root, which has no name.
pub(crate) fn parent_and_name(path: &str) -> Result<Option<(Vec<&str>, &str)>> {
    let mut comps = components(path)?;
    match comps.pop() {
        None => Ok(None),
        Some(name) => {
            check_name(name)?;
            Ok(Some((comps, name)))
        }
    }
}

/// Checks that `name` can name a directory entry.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Error::InvalidName);
    }
    Ok(())
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn root_spellings_have_no_components() {
        assert_eq!(components("").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(parent_and_name("/").unwrap(), None);
    }

    #[test]
    fn components_split_on_slash() {
        assert_eq!(components("/a/b/c").unwrap(), ["a", "b", "c"]);
        assert_eq!(components("a/../b").unwrap(), ["a", "..", "b"]);
        assert_eq!(parent_and_name("/a/b").unwrap(), Some((vec!["a"], "b")));
    }

    #[test]
    fn malformed_paths_are_errors() {
        assert_eq!(components("a//b"), Err(Error::InvalidName));
        assert_eq!(components("a/"), Err(Error::InvalidName));
        assert_eq!(components("//a"), Err(Error::InvalidName));
        assert_eq!(components("a\0b"), Err(Error::InvalidName));
        assert_eq!(
            components(&"x".repeat(NAME_MAX + 1)),
            Err(Error::NameTooLong)
        );
        assert!(components(&"x".repeat(NAME_MAX)).is_ok());
        let long = vec!["x"; PATH_MAX / 2 + 2].join("/");
        assert!(long.len() > PATH_MAX);
        assert_eq!(components(&long).map(|c| c.len()), Err(Error::NameTooLong));
    }

    #[test]
    fn dot_names_cannot_be_created() {
        assert_eq!(parent_and_name("a/."), Err(Error::InvalidName));
        assert_eq!(parent_and_name(".."), Err(Error::InvalidName));
        assert_eq!(check_name("a/b"), Err(Error::InvalidName));
        assert_eq!(check_name(""), Err(Error::InvalidName));
    }
}
