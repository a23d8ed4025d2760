//! The runtime layer of ocf-ssm: everything that touches sockets, clocks,
//! files and randomness, around the sans-IO protocol crates
//! [`ssm_coap`] and [`ssm_oscore`].
//!
//! * [`device`]: the device runtime (unicast, multicast, DTLS and
//!   notification tasks around the sans-IO [`ssm_ocf::device::Device`]).
//! * [`state_dir`]: the file layout of a state directory.
//! * [`store`]: crash-safe files (write-temp, fsync, rename, fsync dir) and
//!   the file-backed [`store::FileSequenceStore`] for OSCORE sequence numbers
//!   kept "K ahead" (RFC 8613 App. B.1.1).
//! * [`responder`]: the OSCORE server decision logic (which error code,
//!   Echo challenges, response protection). It takes bytes and returns bytes;
//!   it has no socket.
//! * [`udp`]: a small tokio UDP endpoint: an OSCORE server loop and a
//!   confirmable OSCORE client with retransmission and Echo retry.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod device;
pub mod discovery;
pub mod dtls_table;
pub mod group_client;
pub mod journal;
pub mod multicast;
pub mod netif;
pub mod obt_reach;
pub mod obt_transport;
pub mod otm;
pub mod owner_session;
pub mod responder;
pub mod state_dir;
pub mod store;
pub mod udp;

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // getrandom only fails where the OS has no entropy source at all; there is
    // no safe fallback, so stop rather than use predictable tokens or keys.
    getrandom::getrandom(&mut b).expect("operating-system random source unavailable");
    b
}
