//! The data directory: an embedded redb database holding the actor id of the node's
//! current incarnation, its own entries, what it learned from peers (earlier
//! incarnations of this node included), and the watermarks that say how complete that
//! is.
//!
//! Why redb rather than a hand-written fsync'd log plus snapshots: the state is a map
//! from (counter, actor) to `(version, p, n)` that is overwritten in place, not an
//! ever-growing history, so a log would need its own compaction and snapshot logic to
//! stay bounded. redb gives crash-safe copy-on-write B-trees, one fsync per committed
//! transaction, and a file lock that keeps two processes off one data directory.
//!
//! Every commit writes, in one transaction, the entries and watermarks that changed since
//! the previous commit together with the local version. A restart therefore sees a state
//! in which every watermark is backed by the entries it claims.

use std::path::{Path, PathBuf};

use countermesh_core::{ActorId, Changes, Restored, StoredEntry};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Name of the database file inside the data directory.
pub(crate) const DB_FILE: &str = "countermesh.redb";

/// Bumped if the layout or meaning of the tables ever changes.
///
/// Format 2: actor ids with the top bit set are pruning sinks (see the core's
/// `prune.rs`). Format 1 drew node actor ids from all 64 bits, so [`Storage::open`]
/// migrates a format-1 directory by clearing that bit in every actor id it holds (see
/// [`migrate_v1`]).
const FORMAT_VERSION: u64 = 2;

/// The top bit of an actor id, which marks a sink from format 2 on.
const SINK_BIT: u64 = 1 << 63;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const ENTRIES: TableDefinition<'_, (&str, u64), (u64, u64, u64)> = TableDefinition::new("entries");
const WATERMARKS: TableDefinition<'_, u64, u64> = TableDefinition::new("watermarks");

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The directory could not be created or read.
    #[error("data directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another mesh in this process) has the directory open.
    #[error("data directory {0} is in use by another countermesh node")]
    InUse(PathBuf),
    /// The database reported an error (including an I/O error on commit).
    #[error("data directory {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The files were written by an incompatible version of countermesh.
    #[error("data directory {path} has format {found}; this build reads format {FORMAT_VERSION}")]
    Format {
        /// The database file.
        path: PathBuf,
        /// The format found.
        found: u64,
    },
    /// The data directory was closed because the mesh stopped.
    #[error("the data directory has been closed")]
    Closed,
    /// The stored state is not valid (for example a corrupted counter name).
    #[error("data directory {path} holds invalid state: {reason}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The open data directory.
pub(crate) struct Storage {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

impl Storage {
    fn error(&self, source: impl Into<redb::Error>) -> StorageError {
        StorageError::Database {
            path: self.path.clone(),
            source: Box::new(source.into()),
        }
    }

    /// Opens (or creates) the database in `dir`. Returns what it holds, or `None` for a
    /// new, empty directory.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Option<Restored<'static>>), StorageError> {
        create_private_dir(dir).map_err(|source| StorageError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StorageError::InUse(dir.to_owned()),
            other => StorageError::Database {
                path: path.clone(),
                source: Box::new(other.into()),
            },
        })?;
        let storage = Self { db, path };
        storage.migrate_v1()?;
        let restored = storage.load()?;
        Ok((storage, restored))
    }

    fn load(&self) -> Result<Option<Restored<'static>>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let meta = match txn.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let get = |key: &str| -> Result<Option<u64>, StorageError> {
            Ok(meta.get(key).map_err(|e| self.error(e))?.map(|v| v.value()))
        };
        let Some(actor) = get("actor")? else {
            return Ok(None);
        };
        let format = get("format")?.unwrap_or(0);
        if format != FORMAT_VERSION {
            return Err(StorageError::Format {
                path: self.path.clone(),
                found: format,
            });
        }
        let local_version = get("local_version")?.unwrap_or(0);
        let mut entries = Vec::new();
        let table = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
        for row in table.iter().map_err(|e| self.error(e))? {
            let (key, value) = row.map_err(|e| self.error(e))?;
            let (name, actor) = key.value();
            let (version, p, n) = value.value();
            entries.push(StoredEntry {
                name: name.to_owned().into(),
                actor: ActorId::from_u64(actor),
                version,
                p,
                n,
            });
        }
        let mut watermarks = Vec::new();
        let table = txn.open_table(WATERMARKS).map_err(|e| self.error(e))?;
        for row in table.iter().map_err(|e| self.error(e))? {
            let (actor, version) = row.map_err(|e| self.error(e))?;
            watermarks.push((ActorId::from_u64(actor.value()), version.value()));
        }
        Ok(Some(Restored {
            actor: ActorId::from_u64(actor),
            local_version,
            entries,
            watermarks,
        }))
    }

    /// Rewrites a format-1 directory as format 2, in one transaction, by clearing the
    /// top bit of every actor id it holds (its own, its entries' and its watermarks').
    ///
    /// Why this is safe: format 1 goes with wire protocol 1, which format-2 nodes do not
    /// speak, so a fleet upgrades as a whole and every node applies the same mapping to
    /// the same ids; a node's counts keep their owner. Two format-1 ids that differ only
    /// in the top bit would merge into one actor, so the migration refuses that case
    /// (chance about `n² / 2^64` for `n` actors) rather than add two actors' counts
    /// together.
    fn migrate_v1(&self) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.error(e))?;
            let format = meta
                .get("format")
                .map_err(|e| self.error(e))?
                .map(|v| v.value());
            if format != Some(1) {
                // Nothing to migrate; the write transaction is dropped unused.
                return Ok(());
            }
            let actor = meta
                .get("actor")
                .map_err(|e| self.error(e))?
                .map(|v| v.value());
            if let Some(actor) = actor {
                meta.insert("actor", actor & !SINK_BIT)
                    .map_err(|e| self.error(e))?;
            }
            meta.insert("format", FORMAT_VERSION)
                .map_err(|e| self.error(e))?;
            self.migrate_entries(&txn)?;
            self.migrate_watermarks(&txn)?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// The error for two format-1 actor ids that the migration would merge.
    fn collision(&self, actor: u64, mapped: u64) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            reason: format!(
                "format-1 actors {actor:#x} and {mapped:#x} collide when migrating to format {FORMAT_VERSION}"
            ),
        }
    }

    /// Part of [`Storage::migrate_v1`]: re-keys every entry of an actor with the top bit.
    fn migrate_entries(&self, txn: &redb::WriteTransaction) -> Result<(), StorageError> {
        let mut entries = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
        let mut rows = Vec::new();
        for row in entries.iter().map_err(|e| self.error(e))? {
            let (key, value) = row.map_err(|e| self.error(e))?;
            let (name, actor) = key.value();
            rows.push((name.to_owned(), actor, value.value()));
        }
        let held: std::collections::HashSet<(&str, u64)> =
            rows.iter().map(|(n, a, _)| (n.as_str(), *a)).collect();
        for (name, actor, value) in &rows {
            if actor & SINK_BIT == 0 {
                continue;
            }
            let mapped = actor & !SINK_BIT;
            if held.contains(&(name.as_str(), mapped)) {
                return Err(self.collision(*actor, mapped));
            }
            entries
                .remove((name.as_str(), *actor))
                .map_err(|e| self.error(e))?;
            entries
                .insert((name.as_str(), mapped), *value)
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Part of [`Storage::migrate_v1`]: re-keys every watermark of an actor with the
    /// top bit.
    fn migrate_watermarks(&self, txn: &redb::WriteTransaction) -> Result<(), StorageError> {
        let mut watermarks = txn.open_table(WATERMARKS).map_err(|e| self.error(e))?;
        let mut marks = Vec::new();
        for row in watermarks.iter().map_err(|e| self.error(e))? {
            let (actor, version) = row.map_err(|e| self.error(e))?;
            marks.push((actor.value(), version.value()));
        }
        // The table iterates in key order, so `marks` is sorted by actor.
        for &(actor, version) in &marks {
            if actor & SINK_BIT == 0 {
                continue;
            }
            let mapped = actor & !SINK_BIT;
            if marks.binary_search_by_key(&mapped, |&(a, _)| a).is_ok() {
                return Err(self.collision(actor, mapped));
            }
            watermarks.remove(actor).map_err(|e| self.error(e))?;
            watermarks
                .insert(mapped, version)
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Makes `actor` the directory's current incarnation, in one transaction: the
    /// previous incarnation (if any) becomes a peer whose watermark is its committed
    /// local version, and the new one starts at version 0. Called at every start, before
    /// anything of the new actor is committed.
    pub(crate) fn begin_incarnation(
        &self,
        actor: ActorId,
        previous: Option<(ActorId, u64)>,
    ) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.error(e))?;
            meta.insert("format", FORMAT_VERSION)
                .map_err(|e| self.error(e))?;
            meta.insert("actor", actor.as_u64())
                .map_err(|e| self.error(e))?;
            meta.insert("local_version", 0).map_err(|e| self.error(e))?;
            txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
            let mut watermarks = txn.open_table(WATERMARKS).map_err(|e| self.error(e))?;
            if let Some((previous, version)) = previous.filter(|&(_, v)| v > 0) {
                let held = watermarks
                    .get(previous.as_u64())
                    .map_err(|e| self.error(e))?
                    .map_or(0, |v| v.value());
                watermarks
                    .insert(previous.as_u64(), held.max(version))
                    .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Writes one batch of changes durably (one transaction, one fsync).
    pub(crate) fn commit(&self, changes: &Changes) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
            for entry in &changes.entries {
                entries
                    .insert(
                        (entry.name.as_ref(), entry.actor.as_u64()),
                        (entry.version, entry.p, entry.n),
                    )
                    .map_err(|e| self.error(e))?;
            }
            // Removals are written after the entries: within one batch a removal wins,
            // which is what the core's `Changes::absorb` promises for retried batches.
            for (name, actor) in &changes.removed {
                entries
                    .remove((name.as_str(), actor.as_u64()))
                    .map_err(|e| self.error(e))?;
            }
            let mut watermarks = txn.open_table(WATERMARKS).map_err(|e| self.error(e))?;
            for (actor, version) in &changes.watermarks {
                watermarks
                    .insert(actor.as_u64(), *version)
                    .map_err(|e| self.error(e))?;
            }
            // A retired (pruned) actor's watermark goes too: its counts live on in the
            // sink, whose records are the tombstones that refuse late copies of its
            // entries after a restart.
            for actor in &changes.retired {
                watermarks
                    .remove(actor.as_u64())
                    .map_err(|e| self.error(e))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| self.error(e))?;
            meta.insert("local_version", changes.local_version)
                .map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` (and missing parents) readable by its owner only: it holds every count
/// this node knows. An existing directory keeps its permissions.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "countermesh-storage-{tag}-{}-{:x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entry(name: &str, actor: u64, version: u64, p: u64) -> StoredEntry<'static> {
        StoredEntry {
            name: name.to_owned().into(),
            actor: ActorId::from_u64(actor),
            version,
            p,
            n: 0,
        }
    }

    #[test]
    fn removed_entries_and_retired_watermarks_are_deleted() {
        let dir = TempDir::new("removed");
        {
            let (storage, restored) = Storage::open(&dir.0).unwrap();
            assert!(restored.is_none());
            storage
                .begin_incarnation(ActorId::from_u64(7), None)
                .unwrap();
            storage
                .commit(&Changes {
                    entries: vec![
                        entry("a", 9, 1, 5),
                        entry("b", 9, 2, 6),
                        entry("a", 11, 1, 1),
                    ],
                    watermarks: vec![(ActorId::from_u64(9), 2), (ActorId::from_u64(11), 1)],
                    local_version: 0,
                    ..Changes::default()
                })
                .unwrap();
            // One batch that rewrites an entry and removes it: the removal wins.
            storage
                .commit(&Changes {
                    entries: vec![entry("b", 9, 2, 6)],
                    removed: vec![
                        ("a".to_owned(), ActorId::from_u64(9)),
                        ("b".to_owned(), ActorId::from_u64(9)),
                    ],
                    retired: vec![ActorId::from_u64(9)],
                    ..Changes::default()
                })
                .unwrap();
        }
        let (_storage, restored) = Storage::open(&dir.0).unwrap();
        let restored = restored.unwrap();
        let held: Vec<(String, u64)> = restored
            .entries
            .iter()
            .map(|e| (e.name.to_string(), e.actor.as_u64()))
            .collect();
        assert_eq!(held, vec![("a".to_owned(), 11)]);
        assert_eq!(restored.watermarks, vec![(ActorId::from_u64(11), 1)]);
    }

    /// Writes a database the way format 1 left it.
    fn write_v1(
        dir: &Path,
        actor: u64,
        entries: &[(&str, u64, (u64, u64, u64))],
        marks: &[(u64, u64)],
    ) {
        std::fs::create_dir_all(dir).unwrap();
        let db = Database::create(dir.join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("format", 1).unwrap();
            meta.insert("actor", actor).unwrap();
            meta.insert("local_version", 3).unwrap();
            let mut table = txn.open_table(ENTRIES).unwrap();
            for &(name, actor, value) in entries {
                table.insert((name, actor), value).unwrap();
            }
            let mut table = txn.open_table(WATERMARKS).unwrap();
            for &(actor, version) in marks {
                table.insert(actor, version).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    #[test]
    fn format_1_directory_is_migrated_by_clearing_the_sink_bit() {
        let dir = TempDir::new("v1");
        let own = SINK_BIT | 0x51;
        let peer = SINK_BIT | 0x77;
        write_v1(
            &dir.0,
            own,
            &[
                ("hits", own, (3, 10, 1)),
                ("hits", peer, (4, 2, 0)),
                ("hits", 0x99, (1, 1, 0)),
            ],
            &[(peer, 4), (0x99, 1)],
        );
        let (_storage, restored) = Storage::open(&dir.0).unwrap();
        let restored = restored.unwrap();
        assert_eq!(restored.actor, ActorId::from_u64(0x51));
        assert_eq!(restored.local_version, 3);
        let mut held: Vec<(u64, u64, u64)> = restored
            .entries
            .iter()
            .map(|e| (e.actor.as_u64(), e.version, e.p))
            .collect();
        held.sort_unstable();
        assert_eq!(held, vec![(0x51, 3, 10), (0x77, 4, 2), (0x99, 1, 1)]);
        let mut marks = restored.watermarks.clone();
        marks.sort_unstable_by_key(|(a, _)| a.as_u64());
        assert_eq!(
            marks,
            vec![(ActorId::from_u64(0x77), 4), (ActorId::from_u64(0x99), 1)]
        );
        assert!(restored.entries.iter().all(|e| !e.actor.is_sink()));
    }

    #[test]
    fn format_1_ids_that_collide_are_refused_not_merged() {
        let dir = TempDir::new("collide");
        write_v1(
            &dir.0,
            0x5,
            &[
                ("hits", SINK_BIT | 0x77, (1, 2, 0)),
                ("hits", 0x77, (1, 3, 0)),
            ],
            &[],
        );
        let err = Storage::open(&dir.0).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("collide"), "{err}");
    }

    #[test]
    fn a_future_format_is_refused_with_a_clear_error() {
        let dir = TempDir::new("future");
        write_v1(&dir.0, 0x5, &[], &[]);
        {
            let db = Database::create(dir.0.join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("format", 99).unwrap();
            txn.commit().unwrap();
        }
        let err = Storage::open(&dir.0).unwrap_err();
        assert!(
            matches!(err, StorageError::Format { found: 99, .. }),
            "{err}"
        );
    }
}
