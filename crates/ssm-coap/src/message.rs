//! An owned message representation (the smoltcp `Repr` level), for code that
//! builds or inspects messages field by field.
use crate::code::{Code, MessageType};
use crate::error::Error;
use crate::option::{decode_uint, encode_uint, OptionNumber};
use crate::packet::{Packet, Token};
use crate::writer::MessageWriter;
use alloc::string::String;
use alloc::vec::Vec;

/// An owned CoAP message. Options are kept sorted by number; repeated
/// options keep their relative order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// CON/NON/ACK/RST.
    pub ty: MessageType,
    /// Method or response code.
    pub code: Code,
    /// Message ID.
    pub message_id: u16,
    /// Token.
    pub token: Token,
    /// Options, sorted by number.
    pub options: Vec<(OptionNumber, Vec<u8>)>,
    /// Payload (empty for none).
    pub payload: Vec<u8>,
}

impl Message {
    /// A message with no options and no payload.
    pub fn new(ty: MessageType, code: Code, message_id: u16, token: Token) -> Self {
        Message {
            ty,
            code,
            message_id,
            token,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// Parses and copies a message.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_packet(&Packet::new_checked(bytes)?)
    }

    /// Copies a validated view.
    pub fn from_packet<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        Ok(Message {
            ty: p.msg_type(),
            code: p.code(),
            message_id: p.message_id(),
            token: Token::new(p.token())?,
            options: p
                .options()
                .iter()
                .map(|o| (o.number, o.value.to_vec()))
                .collect(),
            payload: p.payload().to_vec(),
        })
    }

    /// Emits into `buf`; returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut w = MessageWriter::new(
            buf,
            self.ty,
            self.code,
            self.message_id,
            self.token.as_bytes(),
        )?;
        for (n, v) in &self.options {
            w.option(*n, v)?;
        }
        w.payload(&self.payload)
    }

    /// The encoded length.
    pub fn encoded_len(&self) -> usize {
        let mut len = 4 + self.token.as_bytes().len();
        let mut last = 0u16;
        for (n, v) in &self.options {
            let d = u32::from(n.0 - last);
            len += 1 + ext_len(d) + ext_len(v.len() as u32) + v.len();
            last = n.0;
        }
        if !self.payload.is_empty() {
            len += 1 + self.payload.len();
        }
        len
    }

    /// Emits into a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = alloc::vec![0u8; self.encoded_len()];
        // encoded_len is exact, and options are sorted by construction.
        let n = self.emit(&mut v).unwrap_or(0);
        v.truncate(n);
        v
    }

    /// Adds an option after any existing ones with the same number.
    pub fn add_option(&mut self, number: OptionNumber, value: impl Into<Vec<u8>>) {
        let at = self.options.partition_point(|(n, _)| *n <= number);
        self.options.insert(at, (number, value.into()));
    }

    /// Adds an integer option.
    pub fn add_option_uint(&mut self, number: OptionNumber, value: u32) {
        self.add_option(number, encode_uint(value).as_bytes());
    }

    /// Replaces every instance of `number` by one with `value`.
    pub fn set_option(&mut self, number: OptionNumber, value: impl Into<Vec<u8>>) {
        self.remove_option(number);
        self.add_option(number, value);
    }

    /// Replaces every instance of `number` by one integer value.
    pub fn set_option_uint(&mut self, number: OptionNumber, value: u32) {
        self.set_option(number, encode_uint(value).as_bytes());
    }

    /// Removes every instance of `number`.
    pub fn remove_option(&mut self, number: OptionNumber) {
        self.options.retain(|(n, _)| *n != number);
    }

    /// The first value of `number`.
    pub fn option(&self, number: OptionNumber) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `number`.
    pub fn options_of(&self, number: OptionNumber) -> impl Iterator<Item = &[u8]> {
        self.options
            .iter()
            .filter(move |(n, _)| *n == number)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `number` as an integer.
    pub fn option_uint(&self, number: OptionNumber) -> Option<u32> {
        self.option(number).and_then(|v| decode_uint(v).ok())
    }

    /// Sets Uri-Path from `/a/b` (one option per segment).
    pub fn set_uri_path(&mut self, path: &str) {
        self.remove_option(OptionNumber::URI_PATH);
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            self.add_option(OptionNumber::URI_PATH, seg.as_bytes());
        }
    }

    /// Uri-Path as `/a/b` (`/` when absent). Invalid UTF-8 is replaced.
    pub fn uri_path(&self) -> String {
        let mut s = String::new();
        for seg in self.options_of(OptionNumber::URI_PATH) {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(seg));
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }

    /// Adds one Uri-Query option per `&`-separated part.
    pub fn set_uri_query(&mut self, query: &str) {
        self.remove_option(OptionNumber::URI_QUERY);
        for q in query.split('&').filter(|s| !s.is_empty()) {
            self.add_option(OptionNumber::URI_QUERY, q.as_bytes());
        }
    }

    /// The Uri-Query options as text.
    pub fn uri_queries(&self) -> impl Iterator<Item = &str> {
        self.options_of(OptionNumber::URI_QUERY)
            .filter_map(|v| core::str::from_utf8(v).ok())
    }

    /// The Content-Format, if any.
    pub fn content_format(&self) -> Option<u16> {
        self.option_uint(OptionNumber::CONTENT_FORMAT)
            .and_then(|v| u16::try_from(v).ok())
    }
}

fn ext_len(v: u32) -> usize {
    match v {
        0..=12 => 0,
        13..=268 => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_roundtrip() {
        let mut m = Message::new(
            MessageType::NonConfirmable,
            Code::POST,
            7,
            Token::new(&[9; 8]).unwrap(),
        );
        m.add_option_uint(OptionNumber::OCF_CONTENT_FORMAT_VERSION, 2048);
        m.add_option_uint(OptionNumber::CONTENT_FORMAT, 10000);
        m.set_uri_path("/oic/sec/cred");
        m.set_uri_query("credid=1&subjectuuid=*");
        m.payload = alloc::vec![0xa0];
        let bytes = m.to_vec();
        assert_eq!(bytes.len(), m.encoded_len());
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.uri_path(), "/oic/sec/cred");
        assert_eq!(
            back.uri_queries().collect::<Vec<_>>(),
            ["credid=1", "subjectuuid=*"]
        );
        assert_eq!(back.content_format(), Some(10000));
    }
}
