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

/// Bumped if the layout of the tables ever changes.
const FORMAT_VERSION: u64 = 1;

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
            let mut watermarks = txn.open_table(WATERMARKS).map_err(|e| self.error(e))?;
            for (actor, version) in &changes.watermarks {
                watermarks
                    .insert(actor.as_u64(), *version)
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
