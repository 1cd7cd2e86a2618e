//! Operations on one counter and how a batch of them turns a base value into results.
//!
//! This is the sequential specification the whole crate implements: a batch is applied
//! in queue order to the value the counter had right before the batch's write. It is pure
//! so that the result of a batch can be recomputed from the base stored in its receipt
//! when a retry learns that an earlier attempt already committed.

use crate::error::StrictError;

/// What compare-and-set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The counter held the expected value and now holds the new one.
    Swapped,
    /// The counter held `actual`, not the expected value, and was left unchanged.
    Mismatch {
        /// The value the counter held at the linearization point.
        actual: i64,
    },
}

/// One operation queued for a counter's combiner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add(i64),
    Get,
    Set(i64),
    Cas { expected: i64, new: i64 },
}

/// The successful result of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The value right after an add, or the value a get read.
    Value(i64),
    /// A set took effect.
    Set,
    /// What a compare-and-set did.
    Cas(Outcome),
}

impl Op {
    /// Whether the operation may change the counter, and so needs an op-id receipt.
    pub(crate) fn mutates(self) -> bool {
        !matches!(self, Op::Get)
    }

    /// Applies this one operation to `value`: the value afterwards and the operation's
    /// result. A failing add (overflow) leaves the value as it was.
    pub(crate) fn apply_to(self, value: i64) -> (i64, Result<Reply, StrictError>) {
        match self {
            Op::Add(delta) => match value.checked_add(delta) {
                Some(next) => (next, Ok(Reply::Value(next))),
                None => (
                    value,
                    Err(StrictError::Overflow {
                        current: value,
                        delta,
                    }),
                ),
            },
            Op::Get => (value, Ok(Reply::Value(value))),
            Op::Set(new) => (new, Ok(Reply::Set)),
            Op::Cas { expected, new } if value == expected => {
                (new, Ok(Reply::Cas(Outcome::Swapped)))
            }
            Op::Cas { .. } => (value, Ok(Reply::Cas(Outcome::Mismatch { actual: value }))),
        }
    }
}

/// One operation's place in an applied batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The value right before this operation.
    pub(crate) pre: i64,
    /// The operation's result.
    pub(crate) result: Result<Reply, StrictError>,
}

/// Applies `ops` in order to `base`: returns the final value and, per op, the value it
/// saw and its result.
///
/// An add that would overflow fails alone with [`StrictError::Overflow`] and leaves the
/// running value as it was, so the other operations of the batch are unaffected.
pub(crate) fn apply_steps(base: i64, ops: &[Op]) -> (i64, Vec<Step>) {
    let mut value = base;
    let steps = ops
        .iter()
        .map(|op| {
            let pre = value;
            let (next, result) = op.apply_to(value);
            value = next;
            Step { pre, result }
        })
        .collect();
    (value, steps)
}

/// Applies `ops` in order to `base`: returns the final value and one result per op.
pub(crate) fn apply(base: i64, ops: &[Op]) -> (i64, Vec<Result<Reply, StrictError>>) {
    let (end, steps) = apply_steps(base, ops);
    (end, steps.into_iter().map(|step| step.result).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_add_sees_its_own_position() {
        let (end, results) = apply(10, &[Op::Add(1), Op::Add(5), Op::Get, Op::Add(-2)]);
        assert_eq!(end, 14);
        assert_eq!(
            results,
            vec![
                Ok(Reply::Value(11)),
                Ok(Reply::Value(16)),
                Ok(Reply::Value(16)),
                Ok(Reply::Value(14))
            ]
        );
    }

    #[test]
    fn overflow_fails_only_that_add() {
        let (end, results) = apply(i64::MAX - 1, &[Op::Add(1), Op::Add(1), Op::Add(-3)]);
        assert_eq!(end, i64::MAX - 3);
        assert_eq!(
            results[1],
            Err(StrictError::Overflow {
                current: i64::MAX,
                delta: 1
            })
        );
        assert_eq!(results[2], Ok(Reply::Value(i64::MAX - 3)));
    }

    #[test]
    fn cas_and_set_follow_the_running_value() {
        let ops = [
            Op::Cas {
                expected: 0,
                new: 7,
            },
            Op::Cas {
                expected: 0,
                new: 9,
            },
            Op::Set(3),
            Op::Cas {
                expected: 3,
                new: 4,
            },
        ];
        let (end, results) = apply(0, &ops);
        assert_eq!(end, 4);
        assert_eq!(
            results,
            vec![
                Ok(Reply::Cas(Outcome::Swapped)),
                Ok(Reply::Cas(Outcome::Mismatch { actual: 7 })),
                Ok(Reply::Set),
                Ok(Reply::Cas(Outcome::Swapped)),
            ]
        );
    }
}
