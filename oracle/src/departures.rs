//! `DEPARTURES.md`: the disagreements refwatch keeps on purpose, each with its reason.
//!
//! The file is markdown; its table has a `pattern` column and a `reason` column:
//!
//! ```text
//! | pattern | reason |
//! | --- | --- |
//! | `field=timeout proto=tcp flags=A+data kernel=300` | refwatch does not shorten … |
//! ```
//!
//! A pattern is space-separated `component=glob` pairs over the components of a
//! [`PatternKey`] (`field`, `proto`, `dir`, `flags`, `before`, `kernel`, `refwatch`); `*` in a
//! glob matches any run of characters, and a component left out matches anything. Every row
//! needs a reason.

use crate::compare::PatternKey;
use std::fmt;

const COMPONENTS: [&str; 7] = [
    "field", "proto", "dir", "flags", "before", "kernel", "refwatch",
];

/// One row: a pattern and why the departure is acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departure {
    /// The pattern as written (without backticks).
    pub pattern: String,
    /// `(component, glob)` pairs.
    pub globs: Vec<(String, String)>,
    /// The reason column.
    pub reason: String,
    /// Line number in the file (1-based).
    pub line: usize,
}

/// Why the file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeparturesError {
    /// Line number (1-based).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for DeparturesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DEPARTURES.md line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for DeparturesError {}

/// Whether `glob` (with `*` wildcards) matches all of `text`.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl Departure {
    /// Whether the row covers `key`.
    pub fn matches(&self, key: &PatternKey) -> bool {
        let comps = key.components();
        self.globs.iter().all(|(name, glob)| {
            comps
                .iter()
                .find(|(n, _)| n == name)
                .is_some_and(|(_, v)| glob_match(glob, v))
        })
    }
}

/// Parses a pattern into `(component, glob)` pairs.
pub fn parse_pattern(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut globs = Vec::new();
    for word in text.split_whitespace() {
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| format!("`{word}` is not component=value"))?;
        if !COMPONENTS.contains(&k) {
            return Err(format!(
                "unknown component `{k}` (expected one of {})",
                COMPONENTS.join(", ")
            ));
        }
        if v.is_empty() {
            return Err(format!("component `{k}` has an empty value"));
        }
        if globs.iter().any(|(n, _): &(String, String)| n == k) {
            return Err(format!("component `{k}` given twice"));
        }
        globs.push((k.to_string(), v.to_string()));
    }
    if globs.is_empty() {
        return Err("empty pattern".into());
    }
    Ok(globs)
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<Vec<Departure>, DeparturesError> {
    let mut rows = Vec::new();
    let mut seen_header = false;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let err = |reason: String| DeparturesError {
            line: lineno,
            reason,
        };
        if !line.trim_start().starts_with('|') {
            continue;
        }
        let c = cells(line);
        if c.iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')))
        {
            continue; // separator row
        }
        if !seen_header {
            if c.first().map(|s| s.to_ascii_lowercase()) != Some("pattern".into()) {
                return Err(err("the table's header must start with `pattern`".into()));
            }
            seen_header = true;
            continue;
        }
        if c.len() < 2 {
            return Err(err("a row needs a pattern and a reason".into()));
        }
        let pattern = c[0].trim_matches('`').trim().to_string();
        let reason = c[1..].join(" | ").trim().to_string();
        if reason.is_empty() {
            return Err(err(format!("pattern `{pattern}` has no reason")));
        }
        let globs = parse_pattern(&pattern).map_err(err)?;
        rows.push(Departure {
            pattern,
            globs,
            reason,
            line: lineno,
        });
    }
    Ok(rows)
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    fn key() -> PatternKey {
        PatternKey {
            field: "timeout".into(),
            proto: "tcp".into(),
            dir: "O".into(),
            flags: "A+data".into(),
            before: "ESTABLISHED".into(),
            kernel: "300".into(),
            refwatch: "432000".into(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("A*", "A+data"));
        assert!(glob_match("*data", "A+data"));
        assert!(glob_match("S*A", "SA"));
        assert!(glob_match("*+*", "A+data"));
        assert!(!glob_match("A", "A+data"));
        assert!(!glob_match("A*A", "A"));
        assert!(!glob_match("*x*", "A+data"));
    }

    #[test]
    fn header_only_is_empty() {
        let text = "# Departures\n\nprose\n\n| pattern | reason |\n| --- | --- |\n";
        assert_eq!(parse(text).unwrap(), vec![]);
    }

    #[test]
    fn rows_parse_and_match() {
        let text = "| pattern | reason |\n|---|---|\n\
            | `field=timeout proto=tcp flags=A* kernel=300` | refwatch has no unacked timeout |\n\
            | `field=state before=SYN_SENT` | because |\n";
        let rows = parse(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 3);
        assert!(rows[0].matches(&key()));
        assert!(!rows[1].matches(&key()));
        assert_eq!(rows[0].reason, "refwatch has no unacked timeout");
    }

    #[test]
    fn errors() {
        let bad = [
            "| pat | reason |\n",
            "| pattern | reason |\n| `field=state` |  |\n",
            "| pattern | reason |\n| `colour=red` | x |\n",
            "| pattern | reason |\n| `field` | x |\n",
            "| pattern | reason |\n| `field=a field=b` | x |\n",
            "| pattern | reason |\n| `` | x |\n",
        ];
        for text in bad {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
