//! The embedded store: what a node needs to restart, in one file in its
//! data directory (`<data_dir>/plexus.redb`).
//!
//! **Why redb.** A pure-Rust embedded key-value store with ACID write
//! transactions, copy-on-write B-trees with a checksum on every page, and a
//! single file: no C library to build (sled is unmaintained; RocksDB and
//! LMDB need C), crash-safe by construction (a commit either happened or
//! not), and a checked open that reports a damaged file as an error rather
//! than trusting it.
//!
//! **What it holds** (see [`records`] for the layout): for each object this
//! node holds, its last whole state (the stable snapshot, the tentative
//! ops, the stability table) and the ops applied since, in the order they
//! were applied; the node id (for nodes without a QUIC identity; a QUIC
//! node's key and certificate are the `node.key` and `node.crt` files
//! beside the store, which `plexus ca issue` writes); the last known
//! peers.
//!
//! **The write-ahead rule.** Every op a node applies is queued for the log
//! under the object's lock, so the log's order is the order of
//! application. A writer thread commits the queue in batches. An op made
//! here is relayed to peers only once its batch is committed, and until
//! then the replica holds back everything that would let a peer depend on
//! it (see [`proto::replica`](crate::proto::replica)'s `hold_until_durable`).
//! So a crash may lose ops that were not acknowledged yet, but never makes
//! replicas diverge.
//!
//! **Compaction.** Every [`StoreConfig::snapshot_every`] ops an object's
//! whole state is written and the ops it covers are deleted, in one
//! transaction: disk use follows the object's state and its tentative
//! log, not its history.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::proto::message::OpFrame;
use crate::proto::{NodeId, ObjectKey};

pub(crate) mod records;
mod writer;

use records::{StateRecord, FORMAT, META, NAMES, OPS, PEERS, STATES};
pub(crate) use writer::{Item, Logged, Waiter};

/// The store's file name inside the data directory.
pub const STORE_FILE: &str = "plexus.redb";

/// When a shout resolves, relative to the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every op is committed and synced to disk in a transaction of its
    /// own; a shout resolves once its own commit is done. The slowest.
    Sync,
    /// Group commit (the default): the ops queued while a commit runs are
    /// committed together, with one sync to disk; a shout resolves once
    /// its batch is on disk. Every acknowledged shout survives a crash of
    /// the process or the machine.
    #[default]
    Group,
    /// A shout resolves as soon as the op is applied here and queued for
    /// the log; the log is still written by group commit. An op still
    /// reaches peers only once it is on disk, so a crash can lose shouts
    /// that resolved `Ok` but can never make replicas diverge.
    None,
}

/// The store's settings ([`NodeConfig::store`](crate::NodeConfig::store)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// When a shout resolves. Default: [`Durability::Group`].
    pub durability: Durability,
    /// Write an object's whole state, and delete the ops it covers, once
    /// this many ops were logged since its last state and its tentative
    /// log is at most half as long (a state carries the tentative log; while
    /// stability lags, the ops are kept instead). Default: 10,000. At
    /// least 1.
    pub snapshot_every: u64,
    /// The most items (ops, states) one commit takes. Default: 16,384.
    pub max_batch: usize,
    /// With [`Durability::None`], a shout waits for the disk anyway while
    /// more than this many items wait to be written, so a fast shouter
    /// cannot grow the queue without bound. Default: 65,536.
    pub max_queued: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Group,
            snapshot_every: 10_000,
            max_batch: 16_384,
            max_queued: 65_536,
        }
    }
}

/// Why the store could not be opened, read or written.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be opened or created (permissions, disk, ...).
    #[error("{path}: cannot open the store: {reason}")]
    Open {
        /// The store's file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Another process (or node) has the store open.
    #[error("{path}: the store is in use by another process or node")]
    Locked {
        /// The store's file.
        path: PathBuf,
    },
    /// The file is damaged: truncated, overwritten, or a record that does
    /// not decode. Nothing was changed; the node does not start on it.
    #[error("{path}: the store is damaged: {what}")]
    Corrupt {
        /// The store's file.
        path: PathBuf,
        /// What is wrong, and where.
        what: String,
    },
    /// The file was written by a build with another layout.
    #[error("{path}: store layout version {found}; this build reads version {expected}")]
    Format {
        /// The store's file.
        path: PathBuf,
        /// The version found.
        found: u8,
        /// The version this build reads.
        expected: u8,
    },
    /// A commit failed (disk full, I/O error). Ops not committed are not
    /// acknowledged and were not relayed; the store takes no more writes.
    #[error("{path}: writing the store failed: {reason}")]
    Write {
        /// The store's file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The store was closed (the node shut down).
    #[error("the store is closed")]
    Closed,
}

/// A node's open store. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Store {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    /// `None` once closed: dropping the database releases the file's lock.
    db: parking_lot::RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    config: StoreConfig,
    queue: Mutex<Option<std::sync::mpsc::Sender<Item>>>,
    /// Items queued and not yet committed.
    queued: AtomicUsize,
    next_object: AtomicU64,
    /// The first write error: once set, writes are refused.
    failed: OnceLock<StoreError>,
    /// Hands committed local ops to the repeater.
    relay: OnceLock<Box<dyn Fn(Vec<OpFrame>) + Send + Sync>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// What the store holds of one object: its last state and the ops logged
/// after it, in order.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) object: u64,
    pub(crate) state: StateRecord,
    pub(crate) ops: Vec<OpFrame>,
    /// The last log position used.
    pub(crate) last_pos: u64,
}

impl Store {
    /// Open (or create) the store in `dir`, check every page and record,
    /// and start its writer thread.
    pub(crate) fn open(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let path = dir.join(STORE_FILE);
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(format!("{}: {e}", dir.display())))?;
        let db = open_db(&path)?;
        let shared = Shared {
            db: parking_lot::RwLock::new(Some(Arc::new(db))),
            path: path.clone(),
            config,
            queue: Mutex::new(None),
            queued: AtomicUsize::new(0),
            next_object: AtomicU64::new(1),
            failed: OnceLock::new(),
            relay: OnceLock::new(),
            writer: Mutex::new(None),
        };
        let next = shared.prepare()?;
        shared.next_object.store(next, Ordering::Relaxed);
        let shared = Arc::new(shared);
        let (tx, rx) = std::sync::mpsc::channel();
        *shared.queue.lock() = Some(tx);
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("plexus-store".into())
            .spawn(move || writer::run(thread_shared, rx))
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;
        *shared.writer.lock() = Some(handle);
        Ok(Self { shared })
    }

    /// The store's file.
    pub(crate) fn path(&self) -> &Path {
        &self.shared.path
    }

    pub(crate) fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// Where committed local ops go (the repeater). Set once.
    pub(crate) fn set_relay(&self, relay: Box<dyn Fn(Vec<OpFrame>) + Send + Sync>) {
        let _ = self.shared.relay.set(relay);
    }

    /// The node id saved by an earlier run, if any.
    pub(crate) fn node_id(&self) -> Result<Option<NodeId>, StoreError> {
        let read = self.shared.read()?;
        let meta = read.open_table(META).map_err(|e| self.shared.corrupt(e))?;
        let Some(value) = meta.get("node_id").map_err(|e| self.shared.corrupt(e))? else {
            return Ok(None);
        };
        let bytes: [u8; 32] = value.value().try_into().map_err(|_| StoreError::Corrupt {
            path: self.shared.path.clone(),
            what: format!("meta/node_id is {} bytes, not 32", value.value().len()),
        })?;
        Ok(Some(NodeId::from_bytes(bytes)))
    }

    /// Save the node id (at the first start).
    pub(crate) fn save_node_id(&self, id: NodeId) -> Result<(), StoreError> {
        self.shared.write_now(|txn| {
            let mut meta = txn.open_table(META)?;
            meta.insert("node_id", id.as_bytes().as_slice())?;
            Ok(())
        })
    }

    /// The peers saved by the last run: `(address, node id)`.
    pub(crate) fn peers(&self) -> Result<Vec<(String, NodeId)>, StoreError> {
        let read = self.shared.read()?;
        let table = read.open_table(PEERS).map_err(|e| self.shared.corrupt(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.shared.corrupt(e))? {
            let (addr, id) = entry.map_err(|e| self.shared.corrupt(e))?;
            let id: [u8; 32] = id.value().try_into().map_err(|_| StoreError::Corrupt {
                path: self.shared.path.clone(),
                what: format!("peers/{}: not a node id", addr.value()),
            })?;
            out.push((addr.value().to_owned(), NodeId::from_bytes(id)));
        }
        Ok(out)
    }

    /// Whether the store holds `key`.
    pub(crate) fn has(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        let read = self.shared.read()?;
        let names = read.open_table(NAMES).map_err(|e| self.shared.corrupt(e))?;
        let found = names
            .get((&*key.tag, &*key.name))
            .map_err(|e| self.shared.corrupt(e))?;
        Ok(found.is_some())
    }

    /// What the store holds of `key`, or `None` if it holds nothing.
    pub(crate) fn load(&self, key: &ObjectKey) -> Result<Option<Stored>, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt {
            path: self.shared.path.clone(),
            what,
        };
        let read = self.shared.read()?;
        let names = read.open_table(NAMES).map_err(|e| self.shared.corrupt(e))?;
        let Some(object) = names
            .get((&*key.tag, &*key.name))
            .map_err(|e| self.shared.corrupt(e))?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let states = read
            .open_table(STATES)
            .map_err(|e| self.shared.corrupt(e))?;
        let Some(state) = states.get(object).map_err(|e| self.shared.corrupt(e))? else {
            return Err(corrupt(format!("object {key} has a number but no state")));
        };
        let state = StateRecord::decode(state.value(), key)
            .map_err(|why| corrupt(format!("the state of {key}: {why}")))?;
        let table = read.open_table(OPS).map_err(|e| self.shared.corrupt(e))?;
        let mut ops = Vec::new();
        let mut last_pos = state.pos;
        let range = (object, state.pos + 1)..=(object, u64::MAX);
        for entry in table.range(range).map_err(|e| self.shared.corrupt(e))? {
            let (k, v) = entry.map_err(|e| self.shared.corrupt(e))?;
            let pos = k.value().1;
            let (id, payload) = records::decode_op(v.value())
                .ok_or_else(|| corrupt(format!("op {pos} of {key}: a truncated record")))?;
            last_pos = pos;
            ops.push(OpFrame {
                object: key.clone(),
                id,
                payload,
            });
        }
        Ok(Some(Stored {
            object,
            state,
            ops,
            last_pos,
        }))
    }

    /// A number for a new object.
    pub(crate) fn allocate(&self) -> u64 {
        self.shared.next_object.fetch_add(1, Ordering::Relaxed)
    }

    /// Fails once a write failed or the store closed.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match self.shared.failed.get() {
            Some(error) => Err(error.clone()),
            None if self.shared.queue.lock().is_none() => Err(StoreError::Closed),
            None => Ok(()),
        }
    }

    /// Queue `item` for the log. Fails once a write failed or the store
    /// closed.
    pub(crate) fn push(&self, item: Item) -> Result<(), StoreError> {
        if let Some(error) = self.shared.failed.get() {
            return Err(error.clone());
        }
        let queue = self.shared.queue.lock();
        let Some(tx) = queue.as_ref() else {
            return Err(StoreError::Closed);
        };
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(item).map_err(|_| StoreError::Closed)
    }

    /// Whether a shout under [`Durability::None`] must wait for the disk
    /// (the queue is full).
    pub(crate) fn must_wait(&self) -> bool {
        self.shared.config.durability != Durability::None
            || self.shared.queued.load(Ordering::Relaxed) > self.shared.config.max_queued
    }

    /// Wait until everything queued so far is committed.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.push(Item::Flush(tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`flush`](Self::flush), blocking the calling thread (not for an
    /// async task's hot path: a join's one commit).
    pub(crate) fn flush_blocking(&self) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.push(Item::FlushBlocking(tx))?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Commit what is queued, stop the writer and wait for it.
    pub(crate) fn close(&self) {
        self.shared.queue.lock().take();
        let handle = self.shared.writer.lock().take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
                // Every item is committed: release the file.
                self.shared.db.write().take();
            }
        }
    }

    /// Bytes the store's file takes on disk.
    pub(crate) fn file_size(&self) -> u64 {
        std::fs::metadata(&self.shared.path).map_or(0, |m| m.len())
    }
}

/// Open the file, checking every page; map redb's errors to ours. A
/// damaged file is an error, never a panic: the check runs under
/// `catch_unwind` too, in case a damaged page trips an assertion.
fn open_db(path: &Path) -> Result<Database, StoreError> {
    let fresh = !path.exists();
    let opened = std::panic::catch_unwind(|| {
        let mut builder = Database::builder();
        builder.set_check_integrity_on_open(!fresh);
        builder.create(path)
    });
    let shown = path.to_path_buf();
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            Err(StoreError::Locked { path: shown })
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))) => match e.kind() {
            // redb reports a file that is not a store, or too short to be
            // one, as bad data.
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                Err(StoreError::Corrupt {
                    path: shown,
                    what: e.to_string(),
                })
            }
            _ => Err(StoreError::Open {
                path: shown,
                reason: e.to_string(),
            }),
        },
        Ok(Err(redb::DatabaseError::UpgradeRequired(v))) => Err(StoreError::Corrupt {
            path: shown,
            what: format!("not a store this build can read (file format {v})"),
        }),
        Ok(Err(e)) => Err(StoreError::Corrupt {
            path: shown,
            what: e.to_string(),
        }),
        Err(_) => Err(StoreError::Corrupt {
            path: shown,
            what: "the file is not a readable store (the check of its pages failed)".into(),
        }),
    }
}

impl Shared {
    fn corrupt(&self, e: impl fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: e.to_string(),
        }
    }

    /// The open database, or `Closed`.
    pub(super) fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db.read().clone().ok_or(StoreError::Closed)
    }

    fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.db()?.begin_read().map_err(|e| self.corrupt(e))
    }

    /// Run `f` in a write transaction and commit it durably, at once (for
    /// set-up, outside the writer's queue).
    fn write_now(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let failed = |e: redb::Error| StoreError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let txn = self.db()?.begin_write().map_err(|e| failed(e.into()))?;
        f(&txn).map_err(failed)?;
        txn.commit().map_err(|e| failed(e.into()))
    }

    /// Create the tables and check the layout version and every record;
    /// returns the next free object number.
    fn prepare(&self) -> Result<u64, StoreError> {
        let path = self.path.clone();
        self.write_now(|txn| {
            let mut meta = txn.open_table(META)?;
            if meta.get("format")?.is_none() {
                meta.insert("format", [FORMAT].as_slice())?;
            }
            txn.open_table(NAMES)?;
            txn.open_table(STATES)?;
            txn.open_table(OPS)?;
            txn.open_table(PEERS)?;
            Ok(())
        })?;
        let read = self.read()?;
        let meta = read.open_table(META).map_err(|e| self.corrupt(e))?;
        let format = meta.get("format").map_err(|e| self.corrupt(e))?;
        match format.as_ref().map(|f| f.value()) {
            Some([FORMAT]) => {}
            Some([found]) => {
                return Err(StoreError::Format {
                    path,
                    found: *found,
                    expected: FORMAT,
                })
            }
            _ => return Err(self.corrupt("meta/format is not one byte")),
        }
        // Every object named has a state that decodes; every op record
        // holds an id. A damaged record is found now, not mid-run.
        let names = read.open_table(NAMES).map_err(|e| self.corrupt(e))?;
        let states = read.open_table(STATES).map_err(|e| self.corrupt(e))?;
        let mut next = 1;
        for entry in names.iter().map_err(|e| self.corrupt(e))? {
            let (name, number) = entry.map_err(|e| self.corrupt(e))?;
            let (tag, name) = name.value();
            let key = ObjectKey::new(tag, name);
            let number = number.value();
            next = next.max(number + 1);
            let state = states
                .get(number)
                .map_err(|e| self.corrupt(e))?
                .ok_or_else(|| self.corrupt(format!("object {key} has no state")))?;
            StateRecord::decode(state.value(), &key)
                .map_err(|why| self.corrupt(format!("the state of {key}: {why}")))?;
        }
        let ops = read.open_table(OPS).map_err(|e| self.corrupt(e))?;
        for entry in ops.iter().map_err(|e| self.corrupt(e))? {
            let (k, v) = entry.map_err(|e| self.corrupt(e))?;
            if records::decode_op(v.value()).is_none() {
                let (object, pos) = k.value();
                return Err(self.corrupt(format!(
                    "op {pos} of object number {object}: a truncated record"
                )));
            }
        }
        Ok(next)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        tracing::debug!(path = %self.path.display(), "store closed");
    }
}
