//! The files of one session folder as the ONE API lays them out.
//!
//! ```text
//! SESSION/alf/_ibl_trials.table.pqt                 collection "alf"
//! SESSION/alf/task_00/_ibl_trials.stimOn_times.npy  collection "alf/task_00"
//! SESSION/alf/probe00/pykilosort/spikes.times.npy   collection "alf/probe00/pykilosort"
//! SESSION/alf/probe00/pykilosort/#2024-05-06#/spikes.times.npy   the same, revision 2024-05-06
//! ```
//!
//! A file name is `[_namespace_]object.attribute[.extra...].extension` (ONE's local cache may add
//! the dataset's UUID as an extra part). A revision folder `#REV#` is the last folder of a path;
//! among files of one collection, object, attribute and extension, the newest revision wins
//! (revisions are ISO dates, so the newest sorts last), and a file outside any revision folder is
//! the oldest.

use crate::error::{Result, input, io_at};
use std::path::{Path, PathBuf};

/// One ALF file of the session.
#[derive(Clone, Debug)]
pub struct AlfFile {
    pub path: PathBuf,
    /// Folders from the session root to the file, revision folder excepted: `alf/probe00/pykilosort`.
    pub collection: String,
    /// The revision without its `#` marks.
    pub revision: Option<String>,
    pub object: String,
    pub attribute: String,
    pub extension: String,
}

/// Every ALF file under `SESSION/alf`.
pub struct Layout {
    pub root: PathBuf,
    pub files: Vec<AlfFile>,
}

/// Deepest folder nesting searched below `alf/` (alf/probe00/pykilosort/#rev# is 3).
const MAX_DEPTH: usize = 6;

impl Layout {
    /// Lists `root/alf` recursively. Errors when `root` is not a folder or holds no `alf/`.
    pub fn scan(root: &Path) -> Result<Layout> {
        let meta = std::fs::metadata(root).map_err(io_at(root))?;
        if !meta.is_dir() {
            return Err(input(
                root,
                "is not a folder: give a session folder (SUBJECT/YYYY-MM-DD/NNN) holding alf/",
            ));
        }
        let alf = root.join("alf");
        if !alf.is_dir() {
            return Err(input(
                root,
                "holds no alf/ folder: not a session folder as ONE downloads it",
            ));
        }
        let mut files = Vec::new();
        walk(&alf, &["alf".to_string()], &mut files, 0)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Layout {
            root: root.to_path_buf(),
            files,
        })
    }

    /// The file of `collection` named `object.attribute.<ext>` for one of `extensions`, newest
    /// revision first. Errors when the newest revision holds more than one such file.
    pub fn find(
        &self,
        collection: &str,
        object: &str,
        attribute: &str,
        extensions: &[&str],
    ) -> Result<Option<&AlfFile>> {
        let matching: Vec<&AlfFile> = self
            .files
            .iter()
            .filter(|f| {
                f.collection == collection
                    && f.object == object
                    && f.attribute == attribute
                    && extensions.contains(&f.extension.as_str())
            })
            .collect();
        let Some(newest) = matching.iter().map(|f| &f.revision).max() else {
            return Ok(None);
        };
        let at: Vec<&AlfFile> = matching
            .iter()
            .copied()
            .filter(|f| &f.revision == newest)
            .collect();
        if at.len() > 1 {
            let names: Vec<String> = at.iter().map(|f| f.path.display().to_string()).collect();
            return Err(input(
                &self.root,
                format!(
                    "{object}.{attribute} is given twice in {collection}{}: {}",
                    newest
                        .as_ref()
                        .map(|r| format!(" revision #{r}#"))
                        .unwrap_or_default(),
                    names.join(", ")
                ),
            ));
        }
        Ok(at.first().copied())
    }

    /// Distinct collections holding a file of `object.attribute`, sorted.
    pub fn collections_with(&self, object: &str, attribute: &str) -> Vec<String> {
        let mut c: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.object == object && f.attribute == attribute)
            .map(|f| f.collection.clone())
            .collect();
        c.sort();
        c.dedup();
        c
    }
}

fn walk(dir: &Path, folders: &[String], out: &mut Vec<AlfFile>, depth: usize) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_at(dir))?
        .map(|e| e.map(|e| e.path()).map_err(io_at(dir)))
        .collect::<Result<_>>()?;
    entries.sort();
    for path in entries {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if path.is_dir() {
            if depth < MAX_DEPTH && !name.starts_with('.') {
                let mut f = folders.to_vec();
                f.push(name);
                walk(&path, &f, out, depth + 1)?;
            }
            continue;
        }
        let (revision, coll): (Option<String>, &[String]) = match folders.split_last() {
            Some((last, rest)) if is_revision(last) => {
                (Some(last[1..last.len() - 1].to_string()), rest)
            }
            _ => (None, folders),
        };
        // A revision folder must be the last folder: `#rev#/x/file` is not ALF.
        if coll.iter().any(|f| is_revision(f)) {
            continue;
        }
        let Some((object, attribute, extension)) = parse_name(&name) else {
            continue;
        };
        out.push(AlfFile {
            path,
            collection: coll.join("/"),
            revision,
            object,
            attribute,
            extension,
        });
    }
    Ok(())
}

fn is_revision(folder: &str) -> bool {
    folder.len() > 2 && folder.starts_with('#') && folder.ends_with('#')
}

/// `[_ns_]object.attribute[.extra...].ext` into (object, attribute, ext).
pub fn parse_name(name: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() < 3 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut object = parts[0];
    if let Some(rest) = object.strip_prefix('_') {
        // `_ibl_trials`: namespace `ibl`, object `trials`.
        let (_ns, obj) = rest.split_once('_')?;
        object = obj;
    }
    if object.is_empty() {
        return None;
    }
    Some((
        object.to_string(),
        parts[1].to_string(),
        parts[parts.len() - 1].to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn names() {
        let p = |s: &str| parse_name(s).map(|(o, a, e)| format!("{o}|{a}|{e}"));
        assert_eq!(
            p("_ibl_trials.table.pqt").as_deref(),
            Some("trials|table|pqt")
        );
        assert_eq!(p("spikes.times.npy").as_deref(), Some("spikes|times|npy"));
        assert_eq!(
            p("spikes.times.0a1b2c3d-0000-4000-8000-000000000000.npy").as_deref(),
            Some("spikes|times|npy")
        );
        assert_eq!(
            p("channels.brainLocationIds_ccf_2017.npy").as_deref(),
            Some("channels|brainLocationIds_ccf_2017|npy")
        );
        assert_eq!(p("README.md"), None);
        assert_eq!(p("_x.a.b").as_deref(), None);
        assert_eq!(p("a..npy"), None);
    }
}
