//! Loading resources from YAML files and directories.

mod document;
mod kinds;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::debug;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::error::Error;
use crate::resource::{Resource, ResourceSet};

pub use kinds::{IGNORED_KINDS, IgnoredKind};

/// The result of a load: the resources that passed validation, and every diagnostic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// Resources without errors (warnings allowed), in stable order.
    pub resources: ResourceSet,
    /// Resources that were read but have errors, left out of [`Loaded::resources`] (and
    /// so of the mesh): kept for `skiff analyze`, which, as Istio's analyzers do on
    /// what an API server stored, analyzes them too. Never served.
    pub rejected: Vec<Resource>,
    /// All errors and warnings, in file and position order.
    pub diagnostics: Diagnostics,
    /// The files read.
    pub files: Vec<PathBuf>,
    /// Number of non-empty documents read (including rejected and ignored ones).
    pub documents: usize,
}

/// Loads every resource from files and directories.
///
/// Directories are searched recursively for `*.yaml` and `*.yml` files, in sorted
/// order; files named explicitly are read whatever their extension. Each file may hold
/// several documents separated by `---`; empty documents are skipped. Every resource is
/// validated, alone and against the others (duplicates). A resource with an error is
/// left out of [`Loaded::resources`]; its diagnostics say why.
///
/// Fails only when a path cannot be read at all.
pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Loaded, Error> {
    load_cached(paths, &LoadCache::default())
}

/// What [`load_cached`] keeps of the files it parsed: for each, its metadata when it
/// was read, a hash of its text and what it gave. Shared by the loads of one
/// configuration source, so that a reload reads only the files whose metadata changed
/// and parses only those whose text did.
#[derive(Debug, Default)]
pub struct LoadCache {
    files: Mutex<HashMap<PathBuf, Cached>>,
}

#[derive(Debug)]
struct Cached {
    stamp: Option<Stamp>,
    hash: u64,
    load: Arc<document::FileLoad>,
}

/// What says a file is the one read before without reading it: modification time,
/// size, inode and change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: std::time::SystemTime,
    len: u64,
    inode: u64,
    changed: i64,
    changed_ns: i64,
}

/// A file modified this close to when it was read may change again within the same
/// timestamp tick with the same size; such a file is read again on the next load (as
/// git treats "racily clean" files).
const RACY: std::time::Duration = std::time::Duration::from_secs(2);

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        Some(Stamp {
            modified: meta.modified().ok()?,
            len: meta.len(),
            inode: meta.ino(),
            changed: meta.ctime(),
            changed_ns: meta.ctime_nsec(),
        })
    }

    /// Whether a file with this stamp, read at `read_at`, cannot have changed
    /// unseen since.
    fn settled(&self, read_at: std::time::SystemTime) -> bool {
        self.modified + RACY <= read_at
    }
}

/// [`load`], reading again only the files whose metadata (modification and change
/// time, size, inode) differs from when `cache` read them, and parsing only those
/// whose text differs. The result is the same as [`load`]'s.
pub fn load_cached<P: AsRef<Path>>(paths: &[P], cache: &LoadCache) -> Result<Loaded, Error> {
    let _span = tracing::debug_span!("load", paths = paths.len()).entered();
    let mut files = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        if meta.is_dir() {
            let before = files.len();
            collect_yaml(path, &mut files)?;
            if files.len() == before {
                return Err(Error::NoFiles {
                    path: path.to_owned(),
                });
            }
        } else {
            files.push(path.to_owned());
        }
    }
    let mut resources = Vec::new();
    let mut rejected = Vec::new();
    let mut diagnostics = Vec::new();
    let mut documents = 0;
    let mut cached = cache.files.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen = HashMap::with_capacity(files.len());
    let now = std::time::SystemTime::now();
    let mut read = 0usize;
    for file in &files {
        let stamp = std::fs::metadata(file).ok().as_ref().and_then(Stamp::of);
        let before = cached.remove(file);
        let entry = match before {
            Some(before) if stamp.is_some() && before.stamp == stamp => before,
            before => {
                read += 1;
                let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
                    path: file.clone(),
                    source,
                })?;
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                text.hash(&mut hasher);
                let hash = hasher.finish();
                let load = match before {
                    Some(before) if before.hash == hash => before.load,
                    _ => {
                        let _file = tracing::debug_span!("file", file = %file.display()).entered();
                        let load = Arc::new(document::load_file(Arc::from(file.as_path()), &text));
                        debug!(file = %file.display(), resources = load.resources.len(), "loaded file");
                        load
                    }
                };
                Cached {
                    // A file changed too recently to trust its stamp is read again.
                    stamp: stamp.filter(|s| s.settled(now)),
                    hash,
                    load,
                }
            }
        };
        let loaded = &entry.load;
        documents += loaded.documents;
        resources.extend(loaded.resources.iter().cloned());
        rejected.extend(loaded.rejected.iter().cloned());
        diagnostics.extend(loaded.diagnostics.iter().cloned());
        seen.insert(file.clone(), entry);
    }
    debug!(files = files.len(), read, "read the changed files");
    // Files gone since the last load are forgotten.
    *cached = seen;
    Ok(finish(resources, rejected, diagnostics, files, documents))
}

/// Loads the resources in one YAML text, as if read from a file called `name`.
pub fn load_str(name: impl AsRef<Path>, text: &str) -> Loaded {
    let file: Arc<Path> = Arc::from(name.as_ref());
    let loaded = document::load_file(file, text);
    finish(
        loaded.resources,
        loaded.rejected,
        loaded.diagnostics,
        vec![name.as_ref().to_owned()],
        loaded.documents,
    )
}

fn finish(
    resources: Vec<Resource>,
    rejected: Vec<Resource>,
    mut diagnostics: Vec<Diagnostic>,
    files: Vec<PathBuf>,
    documents: usize,
) -> Loaded {
    let set = ResourceSet::new(resources);
    let (set, more) = crate::validate::validate_set(set);
    diagnostics.extend(more);
    let mut diagnostics = Diagnostics(diagnostics);
    diagnostics.sort();
    Loaded {
        resources: set,
        rejected,
        diagnostics,
        files,
        documents,
    }
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let read = |p: &Path| {
        std::fs::read_dir(p).map_err(|source| Error::Read {
            path: p.to_owned(),
            source,
        })
    };
    let mut entries: Vec<PathBuf> = read(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

impl Loaded {
    /// What `skiff analyze` analyzes: the accepted resources and the rejected ones
    /// that do not share kind, namespace and name with an accepted one. Istio's
    /// analyzers see every resource an API server stored, valid or not; a mesh built
    /// from this set is for findings only, never served.
    pub fn for_analysis(&self) -> ResourceSet {
        if self.rejected.is_empty() {
            return self.resources.clone();
        }
        let key = |r: &Resource| (r.kind(), r.namespace().to_owned(), r.name().to_owned());
        let kept: std::collections::HashSet<_> = self.resources.iter().map(key).collect();
        let mut all = self.resources.clone().into_vec();
        all.extend(
            self.rejected
                .iter()
                .filter(|r| !kept.contains(&key(r)))
                .cloned(),
        );
        ResourceSet::new(all)
    }
}
