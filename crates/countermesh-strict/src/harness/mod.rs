//! Real ZooKeeper servers for tests and benchmarks (feature `harness`).
//!
//! [`ZkCluster`] spawns Apache ZooKeeper from Debian's `zookeeper` package
//! (`/usr/share/java/zookeeper.jar`; `scripts/ensure-zookeeper` installs it) as child
//! JVMs on free loopback ports, each in its own temporary directory. It can kill -9 and
//! restart a server, pause and resume one (SIGSTOP / SIGCONT), and find the leader with
//! the `srvr` four-letter command. Dropping the cluster kills every server, waits for
//! the processes and removes the directories. There is no mock: tests talk to the real
//! server over TCP.

mod cluster;
mod four_letter;

pub use cluster::{ClusterConfig, ZkCluster};
pub use four_letter::{Mode, four_letter};
