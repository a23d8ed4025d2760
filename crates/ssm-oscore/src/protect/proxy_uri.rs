//! The Proxy-Uri decomposition of RFC 8613 §4.1.3.3.
use crate::error::Error;
use ssm_coap::{OptionNumber, OptionWriter};

/// A Proxy-Uri split per §4.1.3.3: the outer `scheme://authority` and the
/// path and query that become inner Uri-Path/Uri-Query options.
#[derive(Clone, Copy)]
pub(super) struct ProxyUri<'a> {
    pub(super) outer: &'a [u8],
    pub(super) path: &'a [u8],
    pub(super) query: &'a [u8],
}

impl<'a> ProxyUri<'a> {
    pub(super) fn split(v: &'a [u8]) -> Result<Self, Error> {
        let sep = v
            .windows(3)
            .position(|w| w == b"://")
            .ok_or(Error::BadProxyUri)?;
        let auth_start = sep + 3;
        let auth_end = v[auth_start..]
            .iter()
            .position(|b| *b == b'/' || *b == b'?' || *b == b'#')
            .map_or(v.len(), |i| auth_start + i);
        if auth_end == auth_start {
            return Err(Error::BadProxyUri);
        }
        let rest = &v[auth_end..];
        let rest = match rest.iter().position(|b| *b == b'#') {
            Some(i) => &rest[..i],
            None => rest,
        };
        let (path, query) = match rest.iter().position(|b| *b == b'?') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        Ok(ProxyUri {
            outer: &v[..auth_end],
            path,
            query,
        })
    }

    pub(super) fn write_path(&self, w: &mut OptionWriter<'_>) -> Result<(), Error> {
        let path = self.path.strip_prefix(b"/").unwrap_or(self.path);
        if path.is_empty() {
            return Ok(());
        }
        for seg in path.split(|b| *b == b'/') {
            write_decoded(w, OptionNumber::URI_PATH, seg)?;
        }
        Ok(())
    }

    pub(super) fn write_query(&self, w: &mut OptionWriter<'_>) -> Result<(), Error> {
        if self.query.is_empty() {
            return Ok(());
        }
        for q in self.query.split(|b| *b == b'&') {
            write_decoded(w, OptionNumber::URI_QUERY, q)?;
        }
        Ok(())
    }
}

/// Percent-decodes one URI component into an option (RFC 7252 §6.4).
fn write_decoded(w: &mut OptionWriter<'_>, n: OptionNumber, s: &[u8]) -> Result<(), Error> {
    let mut buf = [0u8; 255];
    let mut len = 0;
    let mut i = 0;
    while i < s.len() {
        let b = if s[i] == b'%' {
            let hi = s
                .get(i + 1)
                .and_then(|c| (*c as char).to_digit(16))
                .ok_or(Error::BadProxyUri)?;
            let lo = s
                .get(i + 2)
                .and_then(|c| (*c as char).to_digit(16))
                .ok_or(Error::BadProxyUri)?;
            i += 3;
            (hi * 16 + lo) as u8
        } else {
            i += 1;
            s[i - 1]
        };
        *buf.get_mut(len).ok_or(Error::BadProxyUri)? = b;
        len += 1;
    }
    Ok(w.option(n, &buf[..len])?)
}
