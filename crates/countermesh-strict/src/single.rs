//! Creating and deleting a counter znode exactly once, with a receipt, outside the
//! combiner.
//!
//! Both are writes whose reply can be lost like any other; without a receipt a lost reply
//! followed by an unreachable ZooKeeper could only be reported as "no effect", which
//! might be false. So each is a `multi` of `create(receipts/<op-id>)` and the write, and
//! an unresolved one is reported as [`StrictError::Ambiguous`] with that op-id.

use tokio::time::Instant;
use zookeeper_client as zk;

use crate::backoff::Backoff;
use crate::client::ClientShared;
use crate::encoding::encode;
use crate::error::StrictError;
use crate::receipts::{encode_batch, receipt_path};
use crate::session::{Failure, NoClient, classify};

/// A write of the counter znode itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Single<'a> {
    /// Create the counter at `path` with the value 0 unless it exists.
    Create { path: &'a str },
    /// Delete the counter at `path`, whatever its version, if it exists.
    Delete { path: &'a str },
}

/// What a [`Single`] write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SingleOutcome {
    /// This call created or deleted the counter.
    Applied,
    /// The counter already existed (create) or did not exist (delete).
    AlreadyThere,
}

/// What one attempt's answer means: the outcome, or why it has to be tried again.
fn settle(
    committed: Result<
        Result<Vec<zk::MultiWriteResult>, zk::MultiWriteError>,
        tokio::time::error::Elapsed,
    >,
    write: Single<'_>,
) -> Result<SingleOutcome, Failure> {
    match committed {
        Ok(Ok(_)) => Ok(SingleOutcome::Applied),
        Ok(Err(zk::MultiWriteError::OperationFailed { index, source })) => {
            match (index, source, write) {
                // An earlier attempt committed: its receipt exists.
                (0, zk::Error::NodeExists, _) => Ok(SingleOutcome::Applied),
                (1, zk::Error::NodeExists, Single::Create { .. })
                | (1, zk::Error::NoNode, Single::Delete { .. }) => Ok(SingleOutcome::AlreadyThere),
                (_, other, _) => Err(classify(other)),
            }
        }
        Ok(Err(zk::MultiWriteError::RequestFailed { source })) => Err(classify(source)),
        Err(_elapsed) => Err(Failure::Lost),
    }
}

impl ClientShared {
    /// Runs `write` exactly once before `deadline`.
    pub(crate) async fn write_once(
        &self,
        write: Single<'_>,
        deadline: Instant,
    ) -> Result<SingleOutcome, StrictError> {
        let op_id = self.op_ids.next();
        let op_timeout = self.opts.op_timeout;
        let ambiguous = || StrictError::Ambiguous {
            op_id: op_id.clone(),
            deadline: op_timeout,
        };
        let mut unresolved = false;
        let mut backoff = Backoff::new(0);
        loop {
            let handle = match self.session.client(deadline).await {
                Ok(handle) => handle,
                Err(_) if unresolved => return Err(ambiguous()),
                Err(NoClient::Deadline) => {
                    return Err(StrictError::Unavailable {
                        deadline: op_timeout,
                    });
                }
                Err(NoClient::Expired) => return Err(StrictError::SessionExpired),
            };
            let mut writer = handle.client.new_multi_writer();
            let receipt = encode_batch(0, self.opts.receipt_max_age);
            writer.add_create(&receipt_path(&op_id), &receipt, &self.create_mode)?;
            match write {
                Single::Create { path } => {
                    writer.add_create(path, &encode(0), &self.create_mode)?;
                }
                Single::Delete { path } => writer.add_delete(path, None)?,
            }
            let committed = tokio::time::timeout_at(deadline, writer.commit()).await;
            let failure = match settle(committed, write) {
                Ok(outcome) => {
                    if outcome == SingleOutcome::Applied {
                        self.pending.push(op_id);
                    }
                    return Ok(outcome);
                }
                Err(failure) => failure,
            };
            match failure {
                Failure::Lost => {
                    unresolved = true;
                    backoff.after_failure(deadline).await;
                }
                Failure::Expired => {
                    unresolved = true;
                    self.session.invalidate(handle.generation);
                }
                Failure::Refused => backoff.after_failure(deadline).await,
                Failure::Fatal(_) if unresolved => return Err(ambiguous()),
                Failure::Fatal(err) => return Err(err),
            }
            if Instant::now() >= deadline {
                return Err(if unresolved {
                    ambiguous()
                } else {
                    StrictError::Unavailable {
                        deadline: op_timeout,
                    }
                });
            }
        }
    }
}
