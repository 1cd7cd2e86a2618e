//! Real ZooKeeper servers for tests and benchmarks (feature `harness`).
//!
//! [`ZkCluster`] spawns Apache ZooKeeper from Debian's `zookeeper` package
//! (`/usr/share/java/zookeeper.jar`; `scripts/ensure-zookeeper` installs it) as child
//! JVMs on free loopback ports, each in its own temporary directory. It can kill -9 and
//! restart a server, pause and resume one (SIGSTOP / SIGCONT), and find the leader with
//! the `srvr` four-letter command. Dropping the cluster kills every server, waits for
//! the processes and removes the directories. There is no mock: tests talk to the real
//! server over TCP.
//!
//! Servers can also listen on a TLS port with generated certificates ([`TestPki`]),
//! accept SASL users, and start from a crafted tree ([`SeedZnode`]). [`FaultProxy`] sits
//! between a client and a server to lose replies, hold requests or refuse connections.

mod cluster;
mod four_letter;
mod pki;
mod proxy;
mod seed;

pub use cluster::{ClusterConfig, ZkCluster};
pub use four_letter::{Mode, four_letter};
pub use pki::TestPki;
pub use proxy::{FaultProxy, ReleasedReply};
pub use seed::SeedZnode;
