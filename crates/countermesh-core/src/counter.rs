//! [`Counter`]: the cheap handle applications add to and read from.

use std::fmt;
use std::sync::Arc;

use crate::CounterName;
use crate::cell::Cell;

/// A counter's merged value does not fit in an `i64`.
///
/// Values are kept exactly (as `i128`) internally; only the `i64` view can overflow.
/// [`Counter::value_i128`] always succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("counter value {value} does not fit in an i64")]
pub struct ValueOverflow {
    /// The exact value.
    pub value: i128,
}

/// A handle to one named counter of a [`Store`](crate::Store).
///
/// `add` is a lock-free atomic update of this node's pending amount: no map lookup, no
/// lock, no allocation, no I/O. The value is **eventually consistent**: it is this
/// node's own adds plus whatever it has merged from peers so far, and it converges to
/// the exact sum of all adds everywhere once gossip has delivered them.
///
/// Handles are `Clone + Send + Sync`; clones share the same counter.
///
/// ```
/// use countermesh_core::{ActorId, Store};
///
/// let mut store = Store::new(ActorId::from_u64(1), 0);
/// let views = store.counter("page_views")?;
/// views.add(3);
/// views.add(-1);
/// assert_eq!(views.value(), Ok(2));
/// # Ok::<(), countermesh_core::CounterError>(())
/// ```
#[derive(Clone)]
pub struct Counter {
    cell: Arc<Cell>,
}

impl Counter {
    pub(crate) fn new(cell: Arc<Cell>) -> Self {
        Self { cell }
    }

    /// The counter's name.
    pub fn name(&self) -> &CounterName {
        self.cell.name()
    }

    /// Adds `delta` (which may be negative) to the counter.
    ///
    /// This only touches memory local to this node; the amount reaches other nodes when
    /// the store is next flushed and gossiped.
    #[inline]
    pub fn add(&self, delta: i64) {
        self.cell.add(delta);
    }

    /// The merged value: this node's adds plus everything merged from peers so far.
    ///
    /// Returns [`ValueOverflow`] if the exact value does not fit in an `i64`.
    pub fn value(&self) -> Result<i64, ValueOverflow> {
        let value = self.cell.value();
        i64::try_from(value).map_err(|_| ValueOverflow { value })
    }

    /// The exact merged value, which cannot overflow.
    pub fn value_i128(&self) -> i128 {
        self.cell.value()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counter")
            .field("name", self.name())
            .field("value", &self.value_i128())
            .finish()
    }
}
