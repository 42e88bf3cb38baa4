//! What the agent may write where: relative paths checked before anything touches the disk,
//! what is ignored (`.meshignore` in gitignore syntax, editors' temporary files, the agent's
//! own `.feedmesh/`), and the names of conflict copies.

use std::path::{Component, Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::domain::time::Timestamp;

/// The agent's own directory inside the synced folder.
pub const STATE_DIR: &str = ".feedmesh";

/// Temporary files of common editors and systems, never synced.
const DEFAULT_IGNORES: &[&str] = &[
    ".feedmesh/",
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",
    "#*#",
    "*.tmp",
    "~$*",
    ".~lock.*#",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "*.crdownload",
    "*.part",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{0:?} is not a relative path inside the folder")]
    Escapes(String),
    #[error("{0:?} is not a valid file name here")]
    Invalid(String),
    #[error("{0:?} goes through a symbolic link")]
    Symlink(String),
}

/// Checks a path an item names (it came from another device) and returns it under `root`.
/// Refused: absolute paths, `..`, empty or `.` parts, NUL and control characters, backslashes,
/// names over 255 bytes, the agent's own directory, and any part that is a symbolic link.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, PathError> {
    if rel.is_empty() || rel.starts_with('/') || rel.len() > 4096 {
        return Err(PathError::Escapes(rel.to_string()));
    }
    let mut out = root.to_path_buf();
    for part in rel.split('/') {
        match part {
            "" | "." | ".." => return Err(PathError::Escapes(rel.to_string())),
            p if p.len() > 255 || p.chars().any(|c| c.is_control() || c == '\\') => {
                return Err(PathError::Invalid(rel.to_string()));
            }
            p => out.push(p),
        }
    }
    if rel == STATE_DIR || rel.starts_with(&format!("{STATE_DIR}/")) {
        return Err(PathError::Invalid(rel.to_string()));
    }
    // Every existing ancestor (and the file itself) must be a real directory or file.
    let mut at = root.to_path_buf();
    for c in Path::new(rel).components() {
        let Component::Normal(c) = c else {
            return Err(PathError::Escapes(rel.to_string()));
        };
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Err(PathError::Symlink(rel.to_string())),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(out)
}

/// The path of `abs` relative to `root`, with `/` separators; None if it is not valid UTF-8.
pub fn relative(root: &Path, abs: &Path) -> Option<String> {
    let rel = abs.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// What the agent never syncs.
pub struct Ignores(Gitignore);

impl Ignores {
    /// The defaults plus `root/.meshignore`, if there is one.
    pub fn load(root: &Path) -> Ignores {
        let mut b = GitignoreBuilder::new(root);
        for pattern in DEFAULT_IGNORES {
            let _ = b.add_line(None, pattern);
        }
        let file = root.join(".meshignore");
        if file.is_file()
            && let Some(e) = b.add(&file)
        {
            tracing::warn!(error = %e, "part of .meshignore could not be read");
        }
        Ignores(b.build().unwrap_or_else(|_| Gitignore::empty()))
    }

    pub fn ignored(&self, rel: &str, is_dir: bool) -> bool {
        self.0.matched_path_or_any_parents(rel, is_dir).is_ignore()
    }
}

/// `dir/NAME.conflict-DEVICE-DATE.EXT`: where a losing version of `rel` is kept; with a
/// `tag` (`…-DATE-TAG.EXT`) when that name alone would not be unique.
pub fn conflict_copy(rel: &str, by: &str, when: Timestamp, tag: Option<&str>) -> String {
    let (dir, file) = match rel.rsplit_once('/') {
        Some((d, f)) => (format!("{d}/"), f),
        None => (String::new(), rel),
    };
    let (stem, ext) = match file.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (file, String::new()),
    };
    let device: String = by
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let date = when
        .rfc3339()
        .replace(['-', ':'], "")
        .replace('T', "-")
        .trim_end_matches('Z')
        .to_string();
    match tag {
        Some(t) => format!("{dir}{stem}.conflict-{device}-{date}-{t}{ext}"),
        None => format!("{dir}{stem}.conflict-{device}-{date}{ext}"),
    }
}

/// Whether a path is a conflict copy by its name.
pub fn is_conflict_copy(rel: &str) -> bool {
    rel.rsplit('/').next().is_some_and(|f| f.contains(".conflict-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_other_devices_stay_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(resolve(root, "a/b.txt").unwrap(), root.join("a").join("b.txt"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            ".feedmesh/index.db",
            ".feedmesh",
        ] {
            assert!(resolve(root, bad).is_err(), "{bad:?} was accepted");
        }
        assert!(matches!(resolve(root, "a\u{0}b"), Err(PathError::Invalid(_))));
        assert!(matches!(resolve(root, "a\\..\\b"), Err(PathError::Invalid(_))));
        assert!(resolve(root, &"x".repeat(256)).is_err());
        std::os::unix::fs::symlink("/tmp", root.join("out")).unwrap();
        assert!(matches!(resolve(root, "out/file"), Err(PathError::Symlink(_))));
    }

    #[test]
    fn editor_files_and_meshignore_patterns_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".meshignore"), "build/\n*.log\n!keep.log\n").unwrap();
        let ig = Ignores::load(dir.path());
        for (p, is_dir, want) in [
            ("notes.txt.swp", false, true),
            ("draft.md~", false, true),
            (".#notes.txt", false, true),
            ("build", true, true),
            ("build/out.bin", false, true),
            ("debug.log", false, true),
            ("keep.log", false, false),
            ("notes.txt", false, false),
            (".feedmesh/index.db", false, true),
        ] {
            assert_eq!(ig.ignored(p, is_dir), want, "{p}");
        }
    }

    #[test]
    fn conflict_copies_keep_the_extension_and_name_the_device() {
        let when = Timestamp::parse_rfc3339("2026-11-22T10:20:30Z").unwrap();
        assert_eq!(
            conflict_copy("docs/report.txt", "alice/laptop", when, None),
            "docs/report.conflict-alice-laptop-20261122-102030.txt"
        );
        assert_eq!(
            conflict_copy("Makefile", "bob/pc", when, None),
            "Makefile.conflict-bob-pc-20261122-102030"
        );
        assert_eq!(
            conflict_copy(".bashrc", "a/b", when, None),
            ".bashrc.conflict-a-b-20261122-102030"
        );
        assert!(is_conflict_copy(
            "docs/report.conflict-alice-laptop-20261122-102030.txt"
        ));
        assert!(!is_conflict_copy("docs/report.txt"));
    }
}
