//! The demo's live table: one row per second with each node's view of the shown
//! counter, and number formatting with thousands separators.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::demo::{Demo, SHOWN};

/// Each node's view of [`SHOWN`], `None` for a node that is down.
pub(crate) async fn views(demo: &Demo) -> Vec<Option<i128>> {
    let mut out = Vec::new();
    for node in &demo.nodes {
        let node = node.lock().await;
        out.push(
            node.mesh
                .as_ref()
                .map(|m| m.value(SHOWN).map_or(0, |v| v.value)),
        );
    }
    out
}

/// One line of the table: time, event, every node's view (`*` when exact), and how
/// many nodes read the exact total.
pub(crate) async fn row(demo: &Demo, elapsed: Duration, event: &str) -> String {
    let expected = i128::from(demo.total.load(Ordering::SeqCst));
    let views = views(demo).await;
    let mut line = format!("{:>6.1}s  {:<13}", elapsed.as_secs_f64(), event);
    let mut exact = 0;
    let mut running = 0;
    for view in &views {
        match view {
            Some(v) => {
                running += 1;
                let mark = if *v == expected {
                    exact += 1;
                    '*'
                } else {
                    ' '
                };
                line.push_str(&format!(" {:>12}{mark}", group_i(*v)));
            }
            None => line.push_str(&format!(" {:>12} ", "down")),
        }
    }
    line.push_str(&format!(
        "  | {exact}/{running} exact (total {})",
        group_i(expected)
    ));
    line
}

/// `1234567` as `1,234,567`.
pub(crate) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// [`group`] for signed values.
pub(crate) fn group_i(n: i128) -> String {
    let body = group(u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX));
    if n < 0 { format!("-{body}") } else { body }
}
