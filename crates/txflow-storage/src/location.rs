//! Where inputs and outputs live, and the store that serves each.

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};

/// The folder, beside the inputs, that receives rejected-row files. Listing
/// skips it (and every folder whose name starts with `_` or `.`), so a rerun
/// never reads its own error files back as input.
pub const ERRORS_FOLDER: &str = "_txflow_errors";

/// S3 settings beyond the usual `AWS_*` variables (which are read too:
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// An S3-compatible endpoint, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone)]
enum Kind {
    Local,
    S3 { bucket: String },
}

/// A file, folder or prefix, with the store that holds it.
#[derive(Debug, Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    kind: Kind,
    /// The path inside the store (relative to `/` for local files).
    path: Path,
    /// Whether the location names a folder or prefix rather than a file.
    folder: bool,
}

/// One input file and its size.
#[derive(Debug, Clone)]
pub struct Input {
    pub location: Location,
    pub size: u64,
}

impl Location {
    /// Parses `s3://bucket/key`, `s3://bucket/prefix/`, `file:///abs/path` or
    /// a local path (relative paths are taken from the current directory).
    pub fn parse(input: &str, s3: &S3Options) -> Result<Location> {
        let invalid = |reason: String| Error::InvalidInput {
            input: input.to_owned(),
            reason,
        };
        if let Some(rest) = input.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(
                    "the URL has no bucket; write s3://bucket/key".into(),
                ));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            default_tls_provider();
            let store = builder.build().map_err(|e| invalid(e.to_string()))?;
            let path = Path::parse(key).map_err(|e| invalid(e.to_string()))?;
            return Ok(Location {
                store: Arc::new(store),
                kind: Kind::S3 {
                    bucket: bucket.to_owned(),
                },
                folder: key.is_empty() || key.ends_with('/'),
                path,
            });
        }
        let local: PathBuf = if input.starts_with("file://") {
            url::Url::parse(input)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| invalid("not a file:// URL with an absolute path".into()))?
        } else if input.contains("://") {
            return Err(invalid(
                "unsupported scheme; use a path, file:// or s3://".into(),
            ));
        } else {
            PathBuf::from(input)
        };
        let absolute = canonical(&local).map_err(|e| invalid(e.to_string()))?;
        let folder = absolute.is_dir();
        let path = Path::from_absolute_path(&absolute).map_err(|e| invalid(e.to_string()))?;
        Ok(Location {
            store: Arc::new(LocalFileSystem::new()),
            kind: Kind::Local,
            path,
            folder,
        })
    }

    /// The canonical URL: `s3://bucket/key` or `file:///abs/path`. Derived
    /// transaction ids hash it, so it never depends on the working directory.
    pub fn url(&self) -> String {
        let slash = if self.folder && !self.path.as_ref().is_empty() {
            "/"
        } else {
            ""
        };
        match &self.kind {
            Kind::S3 { bucket } => format!("s3://{bucket}/{}{slash}", self.path),
            Kind::Local => format!("file:///{}{slash}", self.path),
        }
    }

    /// The store that holds the location.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The path inside the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_path(&self, path: Path, folder: bool) -> Location {
        Location {
            store: Arc::clone(&self.store),
            kind: self.kind.clone(),
            path,
            folder,
        }
    }

    /// A file named `name` in this folder (or beside this file).
    pub fn sibling_folder_file(&self, folder: &str, name: &str) -> Location {
        let base = if self.folder {
            self.path.clone()
        } else {
            parent(&self.path)
        };
        self.with_path(base.join(folder).join(name), false)
    }

    /// A file named `name` inside this location, taken as a folder.
    pub fn file_in(&self, name: &str) -> Location {
        self.with_path(self.path.clone().join(name), false)
    }

    /// The whole object (a model file, a labeled file).
    pub async fn read_all(&self) -> Result<bytes::Bytes> {
        let found = self
            .store
            .get(&self.path)
            .await
            .map_err(|e| self.error(e))?;
        found.bytes().await.map_err(|e| self.error(e))
    }

    /// An object store's error about this location: `NotFound` named as
    /// such, any other with the URL.
    fn error(&self, source: object_store::Error) -> Error {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound { url: self.url() },
            source => Error::Store {
                url: self.url(),
                source,
            },
        }
    }

    /// Writes the whole object, replacing it (on a local disk: written
    /// beside it, then renamed over it).
    pub async fn write_all(&self, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// The `.csv` files this location names: itself, or every one under the
    /// folder or prefix, in path order.
    pub async fn inputs(&self) -> Result<Vec<Input>> {
        if !self.folder {
            match self.store.head(&self.path).await {
                Ok(meta) => {
                    return Ok(vec![Input {
                        location: self.clone(),
                        size: meta.size,
                    }]);
                }
                Err(object_store::Error::NotFound { .. })
                    if matches!(self.kind, Kind::S3 { .. }) =>
                {
                    // `s3://bucket/2024` may be a prefix written without its slash.
                }
                Err(e) => {
                    return Err(self.error(e));
                }
            }
        }
        let prefix = (!self.path.as_ref().is_empty()).then_some(&self.path);
        let listing: Vec<_> = self
            .store
            .list(prefix)
            .try_collect()
            .await
            .map_err(|source| Error::Store {
                url: self.url(),
                source,
            })?;
        if listing.is_empty() && !self.folder {
            return Err(Error::NotFound { url: self.url() });
        }
        let mut inputs: Vec<Input> = listing
            .into_iter()
            .filter(|meta| is_csv(&meta.location) && !is_hidden(&meta.location, &self.path))
            .map(|meta| Input {
                location: self.with_path(meta.location, false),
                size: meta.size,
            })
            .collect();
        inputs.sort_by(|a, b| a.location.path.as_ref().cmp(b.location.path.as_ref()));
        Ok(inputs)
    }
}

/// The absolute form of a local path: symlinks resolved when it exists,
/// `.` and `..` removed in any case, so one file always has one URL.
fn canonical(path: &std::path::Path) -> std::io::Result<PathBuf> {
    if let Ok(real) = std::fs::canonicalize(path) {
        return Ok(real);
    }
    let mut out = PathBuf::new();
    for part in std::path::absolute(path)?.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

fn parent(path: &Path) -> Path {
    let parts: Vec<_> = path.parts().collect();
    Path::from_iter(parts[..parts.len().saturating_sub(1)].iter().cloned())
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Whether a listed path sits in a folder named `_…` or `.…` below `root`.
fn is_hidden(path: &Path, root: &Path) -> bool {
    let below = path
        .prefix_match(root)
        .map(|parts| parts.collect::<Vec<_>>())
        .unwrap_or_default();
    let folders = below.len().saturating_sub(1);
    below[..folders]
        .iter()
        .any(|p| p.as_ref().starts_with('_') || p.as_ref().starts_with('.'))
}

/// rustls's process-wide provider, which reqwest uses: *ring*, unless the
/// application installed one first (txflow's binary does the same).
fn default_tls_provider() {
    // Fails only when a provider is installed already: the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_canonical() {
        let s3 = S3Options::default();
        let loc = Location::parse("s3://bank/2024/01.csv", &s3).expect("s3 url");
        assert_eq!(loc.url(), "s3://bank/2024/01.csv");
        let loc = Location::parse("s3://bank/2024/", &s3).expect("s3 prefix");
        assert_eq!(loc.url(), "s3://bank/2024/");
        let loc = Location::parse("/tmp/../tmp/x.csv", &s3).expect("path");
        assert_eq!(loc.url(), "file:///tmp/x.csv");
        let loc = Location::parse("file:///tmp/x.csv", &s3).expect("file url");
        assert_eq!(loc.url(), "file:///tmp/x.csv");
    }

    #[test]
    fn bad_inputs_say_why() {
        let s3 = S3Options::default();
        let err = Location::parse("s3:///key", &s3).expect_err("no bucket");
        assert!(err.to_string().contains("no bucket"), "{err}");
        let err = Location::parse("ftp://host/x.csv", &s3).expect_err("scheme");
        assert!(err.to_string().contains("unsupported scheme"), "{err}");
    }

    #[test]
    fn error_folders_are_not_inputs() {
        let root = Path::from("data");
        assert!(is_hidden(&Path::from("data/_txflow_errors/run.csv"), &root));
        assert!(is_hidden(&Path::from("data/.tmp/a.csv"), &root));
        assert!(!is_hidden(&Path::from("data/2024/a.csv"), &root));
        assert!(
            !is_hidden(&Path::from("data/_a.csv"), &root),
            "only folders are skipped"
        );
    }
}
