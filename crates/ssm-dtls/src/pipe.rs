//! In-memory datagram transport that OpenSSL sees as its BIO.

use std::collections::VecDeque;
use std::io;

/// At most this many datagrams wait in each direction; beyond that the
/// oldest is dropped, which is what a congested UDP path would do anyway.
pub(crate) const MAX_QUEUED_DATAGRAMS: usize = 256;

/// A `Read + Write` type with datagram semantics: every `write` is one
/// outgoing datagram, every `read` returns (at most) one incoming datagram,
/// and `read` reports `WouldBlock` when nothing is queued, which OpenSSL turns
/// into `SSL_ERROR_WANT_READ`.
#[derive(Default)]
pub(crate) struct DatagramPipe {
    pub(crate) incoming: VecDeque<Vec<u8>>,
    pub(crate) outgoing: VecDeque<Vec<u8>>,
}

impl DatagramPipe {
    pub(crate) fn push_incoming(&mut self, d: &[u8]) {
        if self.incoming.len() >= MAX_QUEUED_DATAGRAMS {
            self.incoming.pop_front();
        }
        self.incoming.push_back(d.to_vec());
    }
}

impl io::Read for DatagramPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.incoming.pop_front() {
            // Like recv(2) on a UDP socket: a datagram larger than the buffer
            // is truncated. OpenSSL reads DTLS records into a buffer of at
            // least 16 KiB and we bound incoming datagrams far below that.
            Some(d) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl io::Write for DatagramPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.outgoing.len() >= MAX_QUEUED_DATAGRAMS {
            self.outgoing.pop_front();
        }
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
