//! A linearizability checker for histories of one counter: the Wing–Gong search with
//! Lowe's memoization (as in Knossos and Porcupine), written for this test suite.
//!
//! A history is a set of operations, each with its invocation and response times and
//! its observed result. It is linearizable if every operation can be given a point in
//! time between its invocation and its response such that applying the operations to a
//! sequential counter in that order produces exactly the observed results. Operations
//! whose outcome is unknown (the client reported `Ambiguous`) respond "at infinity" and
//! may either take effect at some point after their invocation or not at all.

use std::collections::HashSet;

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Add(i64),
    Get,
    Set(i64),
    Cas { expected: i64, new: i64 },
}

/// What the client observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ret {
    /// The post-value of an add, or the value a get returned.
    Value(i64),
    /// A set completed.
    Done,
    /// A compare-and-set swapped.
    Swapped,
    /// A compare-and-set found this value instead.
    Mismatch(i64),
    /// The outcome is unknown: the operation may or may not have taken effect.
    Unknown,
}

/// One operation of a history. Times are in any monotonic unit; `ret` is `u64::MAX`
/// for operations whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Op {
    pub(crate) call: u64,
    pub(crate) ret: u64,
    pub(crate) input: Call,
    pub(crate) output: Ret,
}

/// The checker's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search gave up after the given number of steps.
    GaveUp(u64),
}

/// The sequential counter: the states `op` may lead to from `state` given what was
/// observed (none if the observation is impossible).
fn step(state: i64, op: &Op) -> Vec<i64> {
    match (op.input, op.output) {
        (Call::Add(d), Ret::Value(v)) => state
            .checked_add(d)
            .filter(|n| *n == v)
            .into_iter()
            .collect(),
        (Call::Add(d), Ret::Unknown) => state.checked_add(d).into_iter().chain([state]).collect(),
        (Call::Get, Ret::Value(v)) => (state == v).then_some(state).into_iter().collect(),
        (Call::Get, Ret::Unknown) => vec![state],
        (Call::Set(n), Ret::Done) => vec![n],
        (Call::Set(n), Ret::Unknown) => vec![n, state],
        (Call::Cas { expected, new }, Ret::Swapped) => {
            (state == expected).then_some(new).into_iter().collect()
        }
        (Call::Cas { expected, .. }, Ret::Mismatch(actual)) => (state != expected
            && state == actual)
            .then_some(state)
            .into_iter()
            .collect(),
        (Call::Cas { expected, new }, Ret::Unknown) => {
            if state == expected {
                vec![new, state]
            } else {
                vec![state]
            }
        }
        _ => Vec::new(),
    }
}

/// Checks `ops` against a counter that starts at `init`, giving up after `max_steps`.
pub(crate) fn check(init: i64, ops: &[Op], max_steps: u64) -> Verdict {
    let n = ops.len();
    // Events: node 0 is the head sentinel, node 2n+1 the tail sentinel, and each
    // operation has a call node and a return node in between, sorted by time.
    let head = 0;
    let tail = 2 * n + 1;
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        assert!(
            op.call <= op.ret,
            "operation {i} returns before it is called"
        );
        events.push((op.call, false, i));
        events.push((op.ret, true, i));
    }
    // At equal times calls sort first, treating the two operations as concurrent, so
    // that clock granularity can only make the checker more lenient, never wrong.
    events.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
    let mut is_call = vec![false; tail + 1];
    let mut op_of = vec![usize::MAX; tail + 1];
    let mut partner = vec![usize::MAX; tail + 1];
    let mut call_node = vec![0; n];
    for (k, &(_, is_ret, i)) in events.iter().enumerate() {
        let node = k + 1;
        is_call[node] = !is_ret;
        op_of[node] = i;
        if is_ret {
            partner[call_node[i]] = node;
        } else {
            call_node[i] = node;
        }
    }
    let mut next: Vec<usize> = (1..=tail + 1).collect();
    let mut prev: Vec<usize> = (0..=tail).map(|i| i.wrapping_sub(1)).collect();
    next[tail] = usize::MAX;

    let words = n.div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, i64)> = HashSet::new();
    let mut stack: Vec<(usize, usize, i64)> = Vec::new();
    let mut state = init;
    let mut entry = next[head];
    let mut resume: Option<(usize, usize)> = None;
    let mut steps = 0u64;

    while next[head] != tail {
        steps += 1;
        if steps > max_steps {
            return Verdict::GaveUp(steps);
        }
        if entry != tail && is_call[entry] {
            let i = op_of[entry];
            let start = match resume.take() {
                Some((node, alt)) if node == entry => alt,
                _ => 0,
            };
            let mut chosen = None;
            for (alt, &s) in step(state, &ops[i]).iter().enumerate().skip(start) {
                linearized[i / 64] |= 1 << (i % 64);
                if cache.insert((linearized.clone(), s)) {
                    chosen = Some((alt, s));
                    break;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            match chosen {
                Some((alt, s)) => {
                    stack.push((entry, alt, state));
                    state = s;
                    // Lift the call and its return out of the list.
                    let r = partner[entry];
                    next[prev[entry]] = next[entry];
                    prev[next[entry]] = prev[entry];
                    next[prev[r]] = next[r];
                    prev[next[r]] = prev[r];
                    entry = next[head];
                }
                None => entry = next[entry],
            }
        } else {
            // A response whose operation is not linearized yet: undo the last choice.
            let Some((call, alt, before)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            let i = op_of[call];
            linearized[i / 64] &= !(1 << (i % 64));
            state = before;
            let r = partner[call];
            prev[next[r]] = r;
            next[prev[r]] = r;
            prev[next[call]] = call;
            next[prev[call]] = call;
            resume = Some((call, alt + 1));
            entry = call;
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: u64 = u64::MAX;

    fn op(call: u64, ret: u64, input: Call, output: Ret) -> Op {
        Op {
            call,
            ret,
            input,
            output,
        }
    }

    fn verdict(ops: &[Op]) -> Verdict {
        check(0, ops, 1_000_000)
    }

    #[test]
    fn accepts_a_sequential_history() {
        let h = [
            op(0, 1, Call::Add(1), Ret::Value(1)),
            op(2, 3, Call::Get, Ret::Value(1)),
            op(
                4,
                5,
                Call::Cas {
                    expected: 1,
                    new: 5,
                },
                Ret::Swapped,
            ),
            op(
                6,
                7,
                Call::Cas {
                    expected: 1,
                    new: 9,
                },
                Ret::Mismatch(5),
            ),
            op(8, 9, Call::Set(2), Ret::Done),
            op(10, 11, Call::Add(-3), Ret::Value(-1)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn accepts_concurrent_adds_in_any_consistent_order() {
        // Three overlapping adds whose post-values fix the order c, a, b.
        let h = [
            op(0, 10, Call::Add(1), Ret::Value(3)),
            op(1, 11, Call::Add(1), Ret::Value(4)),
            op(2, 12, Call::Add(2), Ret::Value(2)),
            op(13, 14, Call::Get, Ret::Value(4)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn rejects_a_stale_read() {
        let h = [
            op(0, 10, Call::Add(1), Ret::Value(1)),
            op(20, 30, Call::Get, Ret::Value(0)),
        ];
        assert_eq!(verdict(&h), Verdict::NotLinearizable);
    }

    #[test]
    fn accepts_an_old_value_from_an_overlapping_read() {
        let h = [
            op(0, 10, Call::Add(1), Ret::Value(1)),
            op(5, 30, Call::Get, Ret::Value(0)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn rejects_a_lost_update() {
        // Two adds both claim the post-value 1: one of them was lost.
        let h = [
            op(0, 10, Call::Add(1), Ret::Value(1)),
            op(5, 15, Call::Add(1), Ret::Value(1)),
            op(20, 30, Call::Get, Ret::Value(1)),
        ];
        assert_eq!(verdict(&h), Verdict::NotLinearizable);
    }

    #[test]
    fn rejects_a_double_count() {
        // One add of 1, but the counter later reads 2: applied twice.
        let h = [
            op(0, 10, Call::Add(1), Ret::Value(1)),
            op(20, 30, Call::Get, Ret::Value(2)),
        ];
        assert_eq!(verdict(&h), Verdict::NotLinearizable);
    }

    #[test]
    fn rejects_two_cas_winners() {
        let h = [
            op(
                0,
                10,
                Call::Cas {
                    expected: 0,
                    new: 1,
                },
                Ret::Swapped,
            ),
            op(
                1,
                11,
                Call::Cas {
                    expected: 0,
                    new: 1,
                },
                Ret::Swapped,
            ),
        ];
        assert_eq!(verdict(&h), Verdict::NotLinearizable);
    }

    #[test]
    fn rejects_a_read_from_the_future() {
        // The get completed before the add was even invoked.
        let h = [
            op(0, 5, Call::Get, Ret::Value(1)),
            op(10, 20, Call::Add(1), Ret::Value(1)),
        ];
        assert_eq!(verdict(&h), Verdict::NotLinearizable);
    }

    #[test]
    fn an_unknown_outcome_may_or_may_not_have_happened() {
        let applied = [
            op(0, INF, Call::Add(1), Ret::Unknown),
            op(20, 30, Call::Get, Ret::Value(1)),
        ];
        assert_eq!(verdict(&applied), Verdict::Linearizable);
        let not_applied = [
            op(0, INF, Call::Add(1), Ret::Unknown),
            op(20, 30, Call::Get, Ret::Value(0)),
        ];
        assert_eq!(verdict(&not_applied), Verdict::Linearizable);
        let twice = [
            op(0, INF, Call::Add(1), Ret::Unknown),
            op(20, 30, Call::Get, Ret::Value(2)),
        ];
        assert_eq!(verdict(&twice), Verdict::NotLinearizable);
        // It cannot take effect before it was invoked.
        let early = [
            op(0, 5, Call::Get, Ret::Value(1)),
            op(10, INF, Call::Add(1), Ret::Unknown),
        ];
        assert_eq!(verdict(&early), Verdict::NotLinearizable);
    }

    #[test]
    fn backtracks_out_of_a_wrong_first_choice() {
        // Greedy order a, b fails the get; the only order is b then a.
        let h = [
            op(0, 100, Call::Set(5), Ret::Done),
            op(
                0,
                100,
                Call::Cas {
                    expected: 0,
                    new: 7,
                },
                Ret::Swapped,
            ),
            op(101, 102, Call::Get, Ret::Value(5)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }
}
