//! The datagram feed's wire format (docs/feed-format.md), after MoldUDP64: every datagram
//! carries a 20-byte header (a 10-byte session naming the source, the sequence number of its
//! first message, and a message count) and that many length-prefixed messages, each one record
//! as the bus stores it. A count of 0 is a heartbeat, [`END_OF_SESSION`] the end of the
//! session. Big-endian, as MoldUDP64 is; the records inside keep their own little-endian
//! layout (docs/bus-format.md §4).
//!
//! Every byte that arrives is untrusted: [`parse`] checks lengths and counts and never panics.

use serde::{Deserialize, Serialize};

use crate::plan::Stream;

/// Bytes of a datagram header.
pub const HEADER_LEN: usize = 20;
/// Bytes of a session name.
pub const SESSION_LEN: usize = 10;
/// The message count of an end-of-session datagram (its sequence is the next one that would
/// have been sent).
pub const END_OF_SESSION: u16 = 0xFFFF;
/// Largest datagram the feed sends: a 1500-byte Ethernet MTU less IPv4 and UDP headers.
pub const MAX_DATAGRAM: usize = 1472;

/// A session name: `<6 run characters><3-digit exchange><T|B>`, so that datagrams of another
/// run (or another sender) on the same port are told apart and ignored.
pub fn session(run: &str, exchange: u16, stream: Stream) -> [u8; SESSION_LEN] {
    let mut s = [b' '; SESSION_LEN];
    let tag: Vec<u8> = run.bytes().filter(u8::is_ascii_alphanumeric).collect();
    let tag = &tag[tag.len().saturating_sub(6)..];
    s[..tag.len()].copy_from_slice(tag);
    let digits = format!("{:03}", exchange % 1000);
    s[6..9].copy_from_slice(digits.as_bytes());
    s[9] = match stream {
        Stream::Trades => b'T',
        Stream::Book => b'B',
    };
    s
}

/// How a run's feed is reached and what it carries: written into the run directory as
/// [`FEED_NAME`] for the readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedInfo {
    /// `udp` or `uds`.
    pub kind: String,
    /// UDP: the multicast group readers join, if the feed is multicast (then `port` is its
    /// port); `None`: each reader binds its own port on loopback and says which.
    pub group: Option<String>,
    /// UDP multicast: the group's port.
    pub port: u16,
    /// The sources: (exchange id, stream, session).
    pub sources: Vec<FeedSource>,
    /// How long a reader holds records behind a gap for the missing ones to arrive, ns: 0 on
    /// a path that does not reorder (a gap is a loss at once), more when the sender reorders
    /// or jitters on purpose.
    pub gap_wait_ns: u64,
}

/// One source of a feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSource {
    /// Exchange id.
    pub exchange: u16,
    /// Stream.
    pub stream: Stream,
    /// Its session name (ASCII, [`SESSION_LEN`] bytes).
    pub session: String,
}

/// Name of the feed description in the run directory.
pub const FEED_NAME: &str = "feed.json";

/// Writes a datagram header.
pub fn header(out: &mut [u8], session: &[u8; SESSION_LEN], sequence: u64, count: u16) {
    out[..SESSION_LEN].copy_from_slice(session);
    out[10..18].copy_from_slice(&sequence.to_be_bytes());
    out[18..20].copy_from_slice(&count.to_be_bytes());
}

/// A datagram, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// Messages `sequence..sequence + n` of `session`: `messages` yields each one's bytes.
    Messages {
        /// The session.
        session: &'a [u8],
        /// Sequence of the first message.
        sequence: u64,
        /// The messages' bytes.
        messages: Vec<&'a [u8]>,
    },
    /// A heartbeat: `sequence` is the next message's.
    Heartbeat {
        /// The session.
        session: &'a [u8],
        /// The next sequence.
        sequence: u64,
    },
    /// The session ended: `sequence` is the one after its last message.
    End {
        /// The session.
        session: &'a [u8],
        /// The next sequence.
        sequence: u64,
    },
}

/// Parses `bytes`, or says why they are not a datagram of this format.
pub fn parse(bytes: &[u8]) -> Result<Datagram<'_>, &'static str> {
    if bytes.len() < HEADER_LEN {
        return Err("shorter than a header");
    }
    let session = &bytes[..SESSION_LEN];
    let sequence = u64::from_be_bytes(bytes[10..18].try_into().map_err(|_| "header")?);
    let count = u16::from_be_bytes([bytes[18], bytes[19]]);
    match count {
        _ if sequence == 0 => return Err("sequence 0"),
        0 => return Ok(Datagram::Heartbeat { session, sequence }),
        END_OF_SESSION => return Ok(Datagram::End { session, sequence }),
        _ => {}
    }
    if sequence == 0 || sequence.checked_add(u64::from(count)).is_none() {
        return Err("impossible sequence");
    }
    // Each message takes at least its 2-byte length: no more can be in the datagram.
    let mut messages = Vec::with_capacity(usize::from(count).min(bytes.len() / 2));
    let mut at = HEADER_LEN;
    for _ in 0..count {
        let len = bytes
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or("a message length runs past the end")?;
        let m = bytes
            .get(at + 2..at + 2 + len)
            .ok_or("a message runs past the end")?;
        messages.push(m);
        at += 2 + len;
    }
    if at != bytes.len() {
        return Err("bytes after the last message");
    }
    Ok(Datagram::Messages {
        session,
        sequence,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_round_trip_and_garbage_is_refused() {
        let s = session("run-123-456789", 7, Stream::Book);
        assert_eq!(&s, b"456789007B");
        let mut d = vec![0u8; HEADER_LEN];
        header(&mut d, &s, 41, 2);
        for m in [&b"abc"[..], b"de"] {
            d.extend_from_slice(&(m.len() as u16).to_be_bytes());
            d.extend_from_slice(m);
        }
        assert_eq!(
            parse(&d),
            Ok(Datagram::Messages {
                session: &s,
                sequence: 41,
                messages: vec![b"abc", b"de"]
            })
        );
        assert!(parse(&d[..d.len() - 1]).is_err());
        let mut longer = d.clone();
        longer.push(0);
        assert!(parse(&longer).is_err());
        assert!(parse(b"short").is_err());
        let mut hb = [0u8; HEADER_LEN];
        header(&mut hb, &s, 9, 0);
        assert_eq!(
            parse(&hb),
            Ok(Datagram::Heartbeat {
                session: &s,
                sequence: 9
            })
        );
        header(&mut hb, &s, 9, END_OF_SESSION);
        assert_eq!(
            parse(&hb),
            Ok(Datagram::End {
                session: &s,
                sequence: 9
            })
        );
        let mut zero = d.clone();
        zero[10..18].copy_from_slice(&0u64.to_be_bytes());
        assert!(parse(&zero).is_err());
    }
}
