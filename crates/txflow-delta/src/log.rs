//! The Delta log: the actions txflow writes and reads, a table's state
//! replayed from its commits, and a commit put only if its version is free.
//!
//! What of the protocol (PROTOCOL.md of delta-io/delta) this covers:
//! reader version 1 and writer version 2 tables (no table features, no
//! deletion vectors, no column mapping); the `protocol`, `metaData`, `add`,
//! `remove`, `txn` and `commitInfo` actions; commits as
//! `_delta_log/<version, 20 digits>.json`, put with "create if absent" so
//! that two writers cannot both take a version. A table written by other
//! tools that needs more is refused, named, rather than misread.

use std::collections::{BTreeMap, HashMap};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{Error, checkpoint};

/// The log's folder under the table's root.
pub const LOG: &str = "_delta_log";

/// The reader and writer versions txflow writes and can write to.
pub const READER_VERSION: i32 = 1;
pub const WRITER_VERSION: i32 = 2;

/// A map of strings as the protocol writes it (a JSON object, values may
/// be null), kept as a list of pairs: a file's partition values are one
/// pair, and the maps of a hundred thousand files stay small (a `BTreeMap`
/// allocates a node of eleven slots for one entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(Vec<(String, Option<String>)>);

impl Pairs {
    /// The value of `key`, if it is there and not null.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Sets `key`, replacing its value if it has one.
    pub fn insert(&mut self, key: String, value: Option<String>) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }
}

impl FromIterator<(String, Option<String>)> for Pairs {
    fn from_iter<I: IntoIterator<Item = (String, Option<String>)>>(pairs: I) -> Pairs {
        let mut map = Pairs::default();
        for (k, v) in pairs {
            map.insert(k, v);
        }
        map
    }
}

impl Serialize for Pairs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pairs, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Pairs, A::Error> {
                let mut map = Pairs::default();
                while let Some((k, v)) = access.next_entry::<String, Option<String>>()? {
                    map.insert(k, v);
                }
                Ok(map)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A data file added to the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Relative to the table's root, URL-encoded.
    pub path: String,
    pub partition_values: Pairs,
    pub size: i64,
    pub modification_time: i64,
    pub data_change: bool,
    /// JSON: `numRecords`, `minValues`, `maxValues`, `nullCount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

impl Add {
    /// The file's row count from its statistics, when they say.
    pub fn num_records(&self) -> Option<i64> {
        let stats: serde_json::Value = serde_json::from_str(self.stats.as_deref()?).ok()?;
        stats.get("numRecords")?.as_i64()
    }
}

/// A data file removed from the table (kept as a tombstone until vacuum).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<i64>,
    pub data_change: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_file_metadata: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_values: Option<Pairs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

/// An application's progress, kept in the table with the data it wrote
/// (the protocol's "set transaction").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Txn {
    pub app_id: String,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Format {
    pub provider: String,
    #[serde(default)]
    pub options: Pairs,
}

/// The table's identity, schema and partition columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub format: Format,
    pub schema_string: String,
    pub partition_columns: Vec<String>,
    #[serde(default)]
    pub configuration: Pairs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    pub min_reader_version: i32,
    pub min_writer_version: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_features: Option<Vec<String>>,
}

/// One line of a commit: one action. Other actions (`cdc`,
/// `domainMetadata`, ...) are read as empty lines; the protocol check
/// refuses the tables that would need them understood.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "metaData")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Add>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Remove>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<Txn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_info: Option<serde_json::Value>,
}

impl Action {
    pub fn add(add: Add) -> Action {
        Action {
            add: Some(add),
            ..Action::default()
        }
    }

    pub fn remove(remove: Remove) -> Action {
        Action {
            remove: Some(remove),
            ..Action::default()
        }
    }

    pub fn txn(txn: Txn) -> Action {
        Action {
            txn: Some(txn),
            ..Action::default()
        }
    }

    pub fn metadata(metadata: Metadata) -> Action {
        Action {
            metadata: Some(metadata),
            ..Action::default()
        }
    }

    pub fn commit_info(info: serde_json::Value) -> Action {
        Action {
            commit_info: Some(info),
            ..Action::default()
        }
    }
}

/// A table as of one version: what a reader of that version sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: i64,
    pub protocol: Protocol,
    pub metadata: Metadata,
    /// Each application's last version (`txn`).
    pub txns: HashMap<String, i64>,
    /// The table's data files by path.
    pub files: BTreeMap<String, Add>,
    /// Files removed and not yet vacuumed, by path.
    pub tombstones: BTreeMap<String, Remove>,
}

impl Snapshot {
    /// The rows of the version, from the files' statistics.
    pub fn num_records(&self) -> i64 {
        self.files.values().filter_map(Add::num_records).sum()
    }
}

/// A table's log in a store.
#[derive(Debug, Clone)]
pub struct Log {
    store: std::sync::Arc<dyn ObjectStore>,
    root: Path,
    /// The table's URL, for messages.
    url: String,
}

/// The file that names the latest checkpoint.
pub const LAST_CHECKPOINT: &str = "_last_checkpoint";

/// What the log's folder holds.
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) commits: Vec<i64>,
    /// Single-file Parquet checkpoints (others are not read).
    pub(crate) checkpoints: Vec<i64>,
}

fn checkpoint_name(version: i64) -> String {
    format!("{version:020}.checkpoint.parquet")
}

/// The version of a single-file checkpoint's name.
fn checkpoint_version(name: &str) -> Option<i64> {
    version_before(name, ".checkpoint.parquet")
}

/// The version in a log file's name: twenty digits, then `suffix`.
fn version_before(name: &str, suffix: &str) -> Option<i64> {
    let digits = name.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The path of commit `version`.
fn commit_name(version: i64) -> String {
    format!("{version:020}.json")
}

/// The version of a commit file's name, or `None` for another file.
fn commit_version(name: &str) -> Option<i64> {
    version_before(name, ".json")
}

impl Log {
    pub fn new(store: std::sync::Arc<dyn ObjectStore>, root: Path, url: String) -> Log {
        Log { store, root, url }
    }

    pub fn store(&self) -> &std::sync::Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The location of a data file named by its path relative to the root.
    pub fn data_path(&self, relative: &str) -> Result<Path, Error> {
        let root = self.root.as_ref();
        let joined = if root.is_empty() {
            relative.to_owned()
        } else {
            format!("{root}/{relative}")
        };
        Path::parse(&joined).map_err(|e| Error::Corrupt {
            table: self.url.clone(),
            what: format!("the data file path {relative:?} is not valid: {e}"),
        })
    }

    fn log_path(&self) -> Path {
        self.root.clone().join(LOG)
    }

    fn commit_path(&self, version: i64) -> Path {
        self.log_path().join(commit_name(version))
    }

    /// The commit versions after `after` (all when `None`), in order.
    pub async fn versions_after(&self, after: Option<i64>) -> Result<Vec<i64>, Error> {
        Ok(self.list_log(after).await?.commits)
    }

    /// The commits and checkpoints after `after` (all when `None`).
    pub(crate) async fn list_log(&self, after: Option<i64>) -> Result<Listing, Error> {
        let folder = self.log_path();
        let listed: Vec<_> = match after {
            Some(v) => {
                let offset = folder.clone().join(commit_name(v));
                self.store
                    .list_with_offset(Some(&folder), &offset)
                    .try_collect()
                    .await?
            }
            None => self.store.list(Some(&folder)).try_collect().await?,
        };
        let after_it = |v: &i64| after.is_none_or(|a| *v > a);
        let names = || listed.iter().filter_map(|m| m.location.filename());
        let mut commits: Vec<i64> = names()
            .filter_map(commit_version)
            .filter(after_it)
            .collect();
        commits.sort_unstable();
        let mut checkpoints: Vec<i64> = names()
            .filter_map(checkpoint_version)
            .filter(after_it)
            .collect();
        checkpoints.sort_unstable();
        Ok(Listing {
            commits,
            checkpoints,
        })
    }

    /// The actions of commit `version`.
    pub async fn read_commit(&self, version: i64) -> Result<Vec<Action>, Error> {
        let path = self.commit_path(version);
        let bytes = self.store.get(&path).await?.bytes().await?;
        let mut actions = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let action = serde_json::from_slice(line).map_err(|e| Error::Corrupt {
                table: self.url.clone(),
                what: format!("{path}, line {}: {e}", i + 1),
            })?;
            actions.push(action);
        }
        Ok(actions)
    }

    /// The table at its latest version, or `None` when there is no table.
    pub async fn snapshot(&self) -> Result<Option<Snapshot>, Error> {
        self.snapshot_at(None).await
    }

    /// The table as of `version` (the latest when `None`): from the latest
    /// checkpoint at or before it, then the commits after that.
    pub async fn snapshot_at(&self, version: Option<i64>) -> Result<Option<Snapshot>, Error> {
        let Listing {
            mut commits,
            mut checkpoints,
        } = self.list_log(None).await?;
        let Some(latest) = commits.last().copied().max(checkpoints.last().copied()) else {
            return Ok(None);
        };
        let target = version.unwrap_or(latest);
        commits.retain(|v| *v <= target);
        checkpoints.retain(|v| *v <= target);
        if version.is_some()
            && commits.last() != Some(&target)
            && checkpoints.last() != Some(&target)
        {
            return Err(Error::NoSuchVersion {
                table: self.url.clone(),
                version: target,
            });
        }
        let (mut snapshot, from) = match checkpoints.last() {
            Some(&cp) => (self.read_checkpoint(cp).await?, cp + 1),
            None => {
                if commits.first() != Some(&0) {
                    return Err(Error::Unsupported {
                        table: self.url.clone(),
                        what: format!(
                            "its log starts at version {} without a checkpoint txflow reads (a single-file Parquet checkpoint)",
                            commits.first().copied().unwrap_or_default()
                        ),
                    });
                }
                (self.first_version().await?, 1)
            }
        };
        for v in commits.into_iter().filter(|v| *v >= from) {
            self.apply_next(&mut snapshot, v).await?;
        }
        Ok(Some(snapshot))
    }

    /// The table as of version 0: the protocol and metadata it was made
    /// with, and whatever else that commit holds.
    async fn first_version(&self) -> Result<Snapshot, Error> {
        let actions = self.read_commit(0).await?;
        let corrupt = |what: &str| Error::Corrupt {
            table: self.url.clone(),
            what: format!("its first commit has no {what} action"),
        };
        let mut snapshot = Snapshot {
            version: 0,
            protocol: actions
                .iter()
                .find_map(|a| a.protocol.clone())
                .ok_or_else(|| corrupt("protocol"))?,
            metadata: actions
                .iter()
                .find_map(|a| a.metadata.clone())
                .ok_or_else(|| corrupt("metaData"))?,
            txns: HashMap::new(),
            files: BTreeMap::new(),
            tombstones: BTreeMap::new(),
        };
        apply(&mut snapshot, &actions);
        check_protocol(&snapshot.protocol, &self.url)?;
        Ok(snapshot)
    }

    /// Applies commit `version`, which must follow `snapshot`'s; returns
    /// its actions.
    async fn apply_next(
        &self,
        snapshot: &mut Snapshot,
        version: i64,
    ) -> Result<Vec<Action>, Error> {
        if version != snapshot.version + 1 {
            return Err(Error::Corrupt {
                table: self.url.clone(),
                what: format!(
                    "commit {} is missing before {version}",
                    snapshot.version + 1
                ),
            });
        }
        let actions = self.read_commit(version).await?;
        apply(snapshot, &actions);
        snapshot.version = version;
        check_protocol(&snapshot.protocol, &self.url)?;
        Ok(actions)
    }

    pub(crate) async fn read_checkpoint(&self, version: i64) -> Result<Snapshot, Error> {
        let path = self.log_path().join(checkpoint_name(version));
        let bytes = self.store.get(&path).await?.bytes().await?;
        let snapshot = checkpoint::decode(bytes, version).map_err(|what| Error::Corrupt {
            table: self.url.clone(),
            what: format!("the checkpoint {path}: {what}"),
        })?;
        check_protocol(&snapshot.protocol, &self.url)?;
        Ok(snapshot)
    }

    /// Writes `snapshot` as a checkpoint and points `_last_checkpoint` at it.
    pub async fn write_checkpoint(&self, snapshot: &Snapshot) -> Result<(), Error> {
        let (bytes, size) = checkpoint::encode(snapshot).map_err(|e| Error::Corrupt {
            table: self.url.clone(),
            what: format!(
                "version {} could not be encoded as a checkpoint: {e}",
                snapshot.version
            ),
        })?;
        let path = self.log_path().join(checkpoint_name(snapshot.version));
        self.store.put(&path, PutPayload::from(bytes)).await?;
        let last = serde_json::json!({ "version": snapshot.version, "size": size });
        self.store
            .put(
                &self.log_path().join(LAST_CHECKPOINT),
                PutPayload::from(last.to_string().into_bytes()),
            )
            .await?;
        Ok(())
    }

    /// Brings `snapshot` to the latest version; returns the commits read.
    pub async fn update(&self, snapshot: &mut Snapshot) -> Result<Vec<(i64, Vec<Action>)>, Error> {
        let mut read = Vec::new();
        for v in self.versions_after(Some(snapshot.version)).await? {
            let actions = self.apply_next(snapshot, v).await?;
            read.push((v, actions));
        }
        Ok(read)
    }

    /// Puts `actions` as commit `version` if no writer took it first.
    /// Returns false when one did (the caller reads it and tries the next).
    pub async fn try_commit(&self, version: i64, actions: &[Action]) -> Result<bool, Error> {
        let mut body = Vec::with_capacity(256 * actions.len());
        for action in actions {
            serde_json::to_writer(&mut body, action).map_err(|e| Error::Corrupt {
                table: self.url.clone(),
                what: format!("an action could not be encoded: {e}"),
            })?;
            body.push(b'\n');
        }
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.commit_path(version), PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Applies one commit's actions to a snapshot.
pub fn apply(snapshot: &mut Snapshot, actions: &[Action]) {
    for action in actions {
        if let Some(p) = &action.protocol {
            snapshot.protocol = p.clone();
        }
        if let Some(m) = &action.metadata {
            snapshot.metadata = m.clone();
        }
        if let Some(add) = &action.add {
            snapshot.tombstones.remove(&add.path);
            snapshot.files.insert(add.path.clone(), add.clone());
        }
        if let Some(remove) = &action.remove {
            snapshot.files.remove(&remove.path);
            snapshot
                .tombstones
                .insert(remove.path.clone(), remove.clone());
        }
        if let Some(txn) = &action.txn {
            snapshot.txns.insert(txn.app_id.clone(), txn.version);
        }
    }
}

/// Refuses a table whose protocol asks for what txflow does not do.
fn check_protocol(protocol: &Protocol, url: &str) -> Result<(), Error> {
    if protocol.min_reader_version > READER_VERSION || protocol.min_writer_version > WRITER_VERSION
    {
        return Err(Error::Unsupported {
            table: url.to_owned(),
            what: format!(
                "it needs reader version {} and writer version {} (txflow reads {READER_VERSION} and writes {WRITER_VERSION}: no table features, deletion vectors or column mapping); write to a new table",
                protocol.min_reader_version, protocol.min_writer_version
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_names_are_twenty_digits_and_nothing_else_is_a_commit() {
        assert_eq!(commit_name(7), "00000000000000000007.json");
        assert_eq!(commit_version("00000000000000000007.json"), Some(7));
        assert_eq!(
            commit_version("00000000000000000007.checkpoint.parquet"),
            None
        );
        assert_eq!(commit_version("_last_checkpoint"), None);
        assert_eq!(commit_version("7.json"), None);
    }

    #[test]
    fn actions_are_written_as_the_protocol_names_them() {
        let line = serde_json::to_string(&Action::txn(Txn {
            app_id: "g/t/0".into(),
            version: 41,
            last_updated: Some(1),
        }))
        .expect("encoded");
        assert_eq!(
            line,
            r#"{"txn":{"appId":"g/t/0","version":41,"lastUpdated":1}}"#
        );
        let read: Action = serde_json::from_str(
            r#"{"add":{"path":"a.parquet","partitionValues":{"date":"2023-11-28"},"size":10,"modificationTime":5,"dataChange":true,"stats":"{\"numRecords\":3}","tags":{"x":"y"}}}"#,
        )
        .expect("decoded");
        let add = read.add.expect("an add");
        assert_eq!(add.num_records(), Some(3));
        assert_eq!(add.partition_values.get("date"), Some("2023-11-28"));
        let pairs: Pairs =
            serde_json::from_str(r#"{"date":"2023-11-28","empty":null,"date":"2023-11-29"}"#)
                .expect("decoded");
        assert_eq!(
            serde_json::to_string(&pairs).expect("encoded"),
            r#"{"date":"2023-11-29","empty":null}"#,
            "an object both ways, the last of a repeated key kept"
        );
        assert_eq!(pairs.get("empty"), None);
        let other: Action =
            serde_json::from_str(r#"{"domainMetadata":{"domain":"d"}}"#).expect("decoded");
        assert_eq!(other, Action::default());
    }
}
