//! CoAP wire format, RFC 7252 §3 (message format) and the option numbers of
//! RFC 7641 (Observe), RFC 7959 (Block), RFC 7967 (No-Response), RFC 8613
//! (OSCORE), RFC 9175 (Echo) and OCF (2049/2053).
//!
//! Two levels, as in smoltcp:
//!
//! * [`Packet`] is a zero-copy view over a buffer. [`Packet::new_checked`]
//!   validates the header, token and the whole option sequence once; every
//!   accessor after that is infallible and never panics.
//! * [`MessageWriter`] emits a message into a caller-provided buffer, option
//!   by option, without allocating. With the `alloc` feature, [`Message`] is an
//!   owned representation that parses from and emits to bytes.
//!
//! Above the wire format, two sans-IO state machines every client shares:
//! [`exchange`] (one request: retransmission, matching, the source rule,
//! ACKs; no allocation) and, with `alloc`, [`block`] (RFC 7959 Block2 for
//! servers and its reassembly for clients).
//!
//! Guarantees: parsing never allocates and never panics on any input;
//! malformed input gets a precise [`Error`].
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
pub mod block;
mod code;
mod error;
pub mod exchange;
#[cfg(feature = "alloc")]
mod message;
mod option;
mod packet;
mod writer;

pub use code::{Code, MessageType};
pub use error::Error;
#[cfg(feature = "alloc")]
pub use message::Message;
pub use option::{
    decode_uint, encode_uint, CoapOption, OptionIter, OptionNumber, Options, UintBuf,
};
pub use packet::{Packet, Token, HEADER_LEN, MAX_TOKEN_LEN, PAYLOAD_MARKER};
pub use writer::{MessageWriter, OptionWriter};

/// OCF content format `application/vnd.ocf+cbor`.
pub const CONTENT_FORMAT_OCF_CBOR: u16 = 10000;
/// `application/oscore` (RFC 8613 §13.5).
pub const CONTENT_FORMAT_OSCORE: u16 = 10001;
/// `application/cbor` (RFC 7049), used by OIC 1.1 peers.
pub const CONTENT_FORMAT_CBOR: u16 = 60;
/// OCF version 1.0.0 as carried in options 2049/2053 (`major<<11 | minor<<6 | sub`).
pub const OCF_VERSION_1_0_0: u16 = 2048;
