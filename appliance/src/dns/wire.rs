//! DNS messages at the byte level, for the answer path: read a query's question and
//! EDNS size without allocating a full message, find every TTL of a response so a
//! cached answer is served by patching bytes, and write the small answers the box
//! makes itself (blocked, local, refused).
//!
//! Everything here takes untrusted bytes: every read is bounds-checked and a bad
//! message is an `Err`, never a panic (fuzzed by `fuzz/fuzz_targets/packet.rs`).

use std::net::IpAddr;

use super::inline::InlineBytes;

pub(crate) const HEADER: usize = 12;
pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_SOA: u16 = 6;
pub(crate) const TYPE_AAAA: u16 = 28;
pub(crate) const TYPE_OPT: u16 = 41;
pub(crate) const TYPE_HINFO: u16 = 13;
pub(crate) const TYPE_ANY: u16 = 255;
pub(crate) const CLASS_IN: u16 = 1;

pub(crate) const RCODE_NOERROR: u8 = 0;
pub(crate) const RCODE_FORMERR: u8 = 1;
pub(crate) const RCODE_SERVFAIL: u8 = 2;
pub(crate) const RCODE_NXDOMAIN: u8 = 3;
pub(crate) const RCODE_NOTIMP: u8 = 4;
pub(crate) const RCODE_REFUSED: u8 = 5;

/// The UDP payload we offer and accept (the DNS flag day 2020 value).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;

/// Why bytes are not a usable message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("message shorter than its header")]
    Short,
    #[error("malformed name")]
    BadName,
    #[error("message ends inside a record")]
    Truncated,
    #[error("not exactly one question")]
    QuestionCount,
}

/// Longest name as text (RFC 1035: 255 bytes on the wire, 253 written out).
const MAX_NAME_TEXT: usize = 253;

/// A question's name as text, kept inline when short (most are): the answer path
/// reads every query's name, and a heap allocation (and its free) per query was a
/// tenth of a cached answer's own work. Always printable ASCII (see
/// `read_name_text`).
#[derive(Clone, PartialEq, Eq)]
pub struct QName(InlineBytes<INLINE_QNAME>);

/// Names up to this long stay inline (the enum is then 64 bytes).
const INLINE_QNAME: usize = 62;

/// A name being read, on the stack.
struct NameText {
    len: usize,
    bytes: [u8; MAX_NAME_TEXT],
}

impl NameText {
    /// Appends `b`; false (and nothing appended) past `MAX_NAME_TEXT`.
    fn push(&mut self, b: u8) -> bool {
        let Some(slot) = self.bytes.get_mut(self.len) else {
            return false;
        };
        *slot = b;
        self.len += 1;
        true
    }
}

impl QName {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::ops::Deref for QName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for QName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<&str> for QName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What the answer path needs from a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    /// The name, lower-cased, dot-separated, no trailing dot; "" for the root.
    pub name: QName,
    /// Whether `name` is a usable domain name (what `filter::name::normalize` accepts).
    pub valid: bool,
    pub qtype: u16,
    pub qclass: u16,
    /// End of the question section: bytes `HEADER..question_end` are echoed back.
    pub question_end: usize,
    /// The client's EDNS UDP size, when it sent an OPT record.
    pub edns: Option<u16>,
}

impl Query {
    /// The name as the client wrote it (case kept), read again from its bytes.
    pub fn name_as_sent(&self, query: &[u8]) -> String {
        read_name_text(query, HEADER, false)
            .map(|(n, _, _)| n.as_str().to_string())
            .unwrap_or_default()
    }

    /// Largest response the client accepts over UDP.
    pub fn max_udp(&self) -> usize {
        match self.edns {
            Some(size) => usize::from(size.clamp(512, EDNS_PAYLOAD)),
            None => 512,
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, WireError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(WireError::Truncated)
}

/// Reads only a query's ID, for answering FORMERR to something unparseable.
pub(crate) fn id_of(b: &[u8]) -> Option<u16> {
    (b.len() >= HEADER).then(|| u16::from_be_bytes([b[0], b[1]]))
}

/// Parses a query: header, the one question, and an OPT record if there is one.
pub(crate) fn parse_query(b: &[u8]) -> Result<Query, WireError> {
    if b.len() < HEADER {
        return Err(WireError::Short);
    }
    let id = u16_at(b, 0)?;
    let flags = b[2];
    let qdcount = u16_at(b, 4)?;
    let ancount = u16_at(b, 6)?;
    let nscount = u16_at(b, 8)?;
    let arcount = u16_at(b, 10)?;
    if qdcount != 1 {
        return Err(WireError::QuestionCount);
    }
    let (name, valid, after) = read_name_text(b, HEADER, true)?;
    let qtype = u16_at(b, after)?;
    let qclass = u16_at(b, after + 2)?;
    let question_end = after + 4;
    let mut at = question_end;
    for _ in 0..(usize::from(ancount) + usize::from(nscount)) {
        at = skip_record(b, at)?.next;
    }
    let mut edns = None;
    for _ in 0..arcount {
        let rr = skip_record(b, at)?;
        if rr.rtype == TYPE_OPT {
            edns = Some(rr.class);
        }
        at = rr.next;
    }
    Ok(Query {
        id,
        opcode: (flags >> 3) & 0x0f,
        rd: flags & 0x01 != 0,
        name,
        valid,
        qtype,
        qclass,
        question_end,
        edns,
    })
}

/// Reads an uncompressed question name as text, lower-cased if `lower`; also says
/// whether it is a valid name (letters, digits, `-`, `_`; labels of 1 to 63 bytes).
fn read_name_text(b: &[u8], mut at: usize, lower: bool) -> Result<(QName, bool, usize), WireError> {
    let mut name = NameText {
        len: 0,
        bytes: [0; MAX_NAME_TEXT],
    };
    let mut valid = true;
    loop {
        let len = usize::from(*b.get(at).ok_or(WireError::Truncated)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            // Compression in a question, or a reserved label type: not from a client.
            return Err(WireError::BadName);
        }
        let label = b.get(at..at + len).ok_or(WireError::Truncated)?;
        if name.len != 0 && !name.push(b'.') {
            return Err(WireError::BadName);
        }
        for &c in label {
            valid &= c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
            // Keep names printable; other bytes become `?`, which is not valid.
            let c = crate::filter::name::text_byte(c);
            if !name.push(if lower { c.to_ascii_lowercase() } else { c }) {
                // Longer than a name can be written.
                return Err(WireError::BadName);
            }
        }
        at += len;
    }
    let name = QName(InlineBytes::new(&name.bytes[..name.len]));
    Ok((name, valid, at))
}

/// Skips a (possibly compressed) name; returns where it ends in `b`.
fn skip_name(b: &[u8], mut at: usize) -> Result<usize, WireError> {
    let mut labels = 0;
    loop {
        let len = *b.get(at).ok_or(WireError::Truncated)?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xC0 == 0xC0 => {
                b.get(at + 1).ok_or(WireError::Truncated)?;
                return Ok(at + 2);
            }
            l if l & 0xC0 != 0 => return Err(WireError::BadName),
            l => at += 1 + usize::from(l),
        }
        labels += 1;
        if labels > 127 {
            return Err(WireError::BadName);
        }
    }
}

/// A record's place in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordAt {
    pub rtype: u16,
    pub class: u16,
    /// Offset of its 4-byte TTL.
    pub ttl_at: usize,
    pub ttl: u32,
    pub next: usize,
}

fn skip_record(b: &[u8], at: usize) -> Result<RecordAt, WireError> {
    let at = skip_name(b, at)?;
    let rtype = u16_at(b, at)?;
    let class = u16_at(b, at + 2)?;
    let ttl_bytes = b.get(at + 4..at + 8).ok_or(WireError::Truncated)?;
    let ttl = u32::from_be_bytes([ttl_bytes[0], ttl_bytes[1], ttl_bytes[2], ttl_bytes[3]]);
    let rdlen = usize::from(u16_at(b, at + 8)?);
    let next = at + 10 + rdlen;
    if next > b.len() {
        return Err(WireError::Truncated);
    }
    Ok(RecordAt {
        rtype,
        class,
        ttl_at: at + 4,
        ttl,
        next,
    })
}

/// Every record of a response after its question, in order.
pub(crate) fn records(b: &[u8]) -> Result<Vec<RecordAt>, WireError> {
    if b.len() < HEADER {
        return Err(WireError::Short);
    }
    let qd = u16_at(b, 4)?;
    let total =
        usize::from(u16_at(b, 6)?) + usize::from(u16_at(b, 8)?) + usize::from(u16_at(b, 10)?);
    let mut at = HEADER;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
    }
    let mut out = Vec::with_capacity(total.min(64));
    for _ in 0..total {
        let r = skip_record(b, at)?;
        at = r.next;
        out.push(r);
    }
    Ok(out)
}

/// Starts a response to `q`: its header (ID, opcode, RD kept; QR, RA set) and its
/// question echoed byte for byte.
pub(crate) fn response_head(query: &[u8], q: &Query, rcode: u8, authoritative: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.question_end + 64);
    out.extend_from_slice(&q.id.to_be_bytes());
    let aa = if authoritative { 0x04 } else { 0 };
    out.push(0x80 | (q.opcode << 3) | aa | u8::from(q.rd));
    out.push(0x80 | (rcode & 0x0f));
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&query[HEADER..q.question_end]);
    out
}

/// An error answer (FORMERR, SERVFAIL, REFUSED, NOTIMP, NXDOMAIN) with the question.
pub(crate) fn error_response(query: &[u8], q: &Query, rcode: u8) -> Vec<u8> {
    let mut out = response_head(query, q, rcode, false);
    add_opt(&mut out, q);
    out
}

/// FORMERR for a query too broken to parse: header only, same ID.
pub(crate) fn formerr(id: u16) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&[0x80, 0x80 | RCODE_FORMERR, 0, 0, 0, 0, 0, 0, 0, 0]);
    out
}

/// An answer made of address records for the question's name (pointer to offset 12).
pub(crate) fn address_response(
    query: &[u8],
    q: &Query,
    addrs: &[IpAddr],
    ttl: u32,
    authoritative: bool,
) -> Vec<u8> {
    let mut out = response_head(query, q, RCODE_NOERROR, authoritative);
    let mut count: u16 = 0;
    for addr in addrs {
        let (rtype, bytes): (u16, Vec<u8>) = match addr {
            IpAddr::V4(v4) if q.qtype == TYPE_A => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) if q.qtype == TYPE_AAAA => (TYPE_AAAA, v6.octets().to_vec()),
            _ => continue,
        };
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
        count += 1;
    }
    out[6..8].copy_from_slice(&count.to_be_bytes());
    add_opt(&mut out, q);
    out
}

/// RFC 8482's answer to ANY: one HINFO record, CPU "RFC8482", OS empty.
pub(crate) fn hinfo_response(query: &[u8], q: &Query, ttl: u32) -> Vec<u8> {
    const RDATA: &[u8] = b"\x07RFC8482\x00";
    let mut out = response_head(query, q, RCODE_NOERROR, false);
    out.extend_from_slice(&[0xC0, 0x0C]);
    out.extend_from_slice(&TYPE_HINFO.to_be_bytes());
    out.extend_from_slice(&q.qclass.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(RDATA.len() as u16).to_be_bytes());
    out.extend_from_slice(RDATA);
    out[6..8].copy_from_slice(&1u16.to_be_bytes());
    add_opt(&mut out, q);
    out
}

/// Bytes of the OPT record `add_opt` appends.
pub(crate) const OPT_LEN: usize = 11;

/// Appends an OPT record offering `EDNS_PAYLOAD` when the client sent one.
pub(crate) fn add_opt(out: &mut Vec<u8>, q: &Query) {
    if q.edns.is_none() || out.len() < HEADER {
        return;
    }
    out.push(0); // root name
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // ext rcode, version, flags, rdlen
    let ar = u16::from_be_bytes([out[10], out[11]]).saturating_add(1);
    out[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Cuts `response` to header and question with TC set, for a UDP client whose size
/// it exceeds: the client retries over TCP.
pub(crate) fn truncate(response: &mut Vec<u8>, q: &Query) {
    response.truncate(q.question_end.min(response.len()));
    if response.len() >= HEADER {
        response[2] |= 0x02;
        response[6..12].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode};
    use hickory_proto::rr::{Name, RecordType};

    fn query_bytes(name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            rtype,
        ));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn parses_what_a_client_sends() {
        let b = query_bytes("WwW.Example.COM.", RecordType::AAAA, true);
        let q = parse_query(&b).unwrap();
        assert_eq!(
            (q.id, q.rd, q.qtype, q.qclass),
            (0x1234, true, TYPE_AAAA, CLASS_IN)
        );
        assert_eq!(q.name, "www.example.com");
        assert!(q.valid);
        assert_eq!(q.name_as_sent(&b), "WwW.Example.COM");
        assert_eq!(q.edns, Some(4096));
        assert_eq!(q.max_udp(), 1232);
        let plain = parse_query(&query_bytes("a.b.", RecordType::A, false)).unwrap();
        assert_eq!((plain.edns, plain.max_udp()), (None, 512));
    }

    /// A name of 253 characters written out is read whole; one longer (which no
    /// client builds, but an attacker can send) is malformed, not cut short.
    #[test]
    fn names_are_read_up_to_their_longest() {
        let wire = |labels: &[usize]| {
            let mut b = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for (i, &len) in labels.iter().enumerate() {
                b.push(len as u8);
                b.extend(std::iter::repeat_n(b'a' + i as u8, len));
            }
            b.extend_from_slice(&[0, 0, 1, 0, 1]);
            b
        };
        let longest = parse_query(&wire(&[63, 63, 63, 61])).unwrap();
        assert_eq!(longest.name.len(), 253);
        assert!(longest.valid);
        assert_eq!(longest.name.rsplit('.').next(), Some(&*"d".repeat(61)));
        assert_eq!(
            parse_query(&wire(&[63, 63, 63, 62])).unwrap_err(),
            WireError::BadName
        );
        assert_eq!(
            parse_query(&wire(&[63, 63, 63, 63, 1])).unwrap_err(),
            WireError::BadName
        );
    }

    #[test]
    fn answers_parse_back_with_hickory() {
        let b = query_bytes("blocked.test.", RecordType::A, true);
        let q = parse_query(&b).unwrap();
        let r = address_response(
            &b,
            &q,
            &["0.0.0.0".parse().unwrap(), "::".parse().unwrap()],
            60,
            false,
        );
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.answers.len(), 1, "only the A record for an A question");
        assert_eq!(m.answers[0].ttl, 60);
        assert_eq!(m.answers[0].name.to_ascii(), "blocked.test.");
        assert!(m.edns.is_some());
        let recs = records(&r).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].rtype, recs[0].ttl), (TYPE_A, 60));
        assert_eq!(recs[1].rtype, TYPE_OPT);

        let e = error_response(&b, &q, RCODE_REFUSED);
        let m = Message::from_vec(&e).unwrap();
        assert_eq!(
            u16::from(m.metadata.response_code),
            u16::from(RCODE_REFUSED)
        );
        assert_eq!(m.queries.len(), 1);
    }

    #[test]
    fn truncation_keeps_the_question() {
        let b = query_bytes("big.test.", RecordType::A, false);
        let q = parse_query(&b).unwrap();
        let addrs: Vec<IpAddr> = (0..100)
            .map(|i| IpAddr::from([10, 0, 0, i as u8]))
            .collect();
        let mut r = address_response(&b, &q, &addrs, 60, false);
        assert!(r.len() > 512);
        truncate(&mut r, &q);
        let m = Message::from_vec(&r).unwrap();
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        assert_eq!(m.queries.len(), 1);
    }

    #[test]
    fn broken_queries_are_errors_not_panics() {
        let good = query_bytes("x.test.", RecordType::A, true);
        for cut in 0..good.len() {
            let _ = parse_query(&good[..cut]);
            let _ = records(&good[..cut]);
        }
        assert_eq!(parse_query(&[0; 5]), Err(WireError::Short));
        let mut two = good.clone();
        two[5] = 2;
        assert_eq!(parse_query(&two), Err(WireError::QuestionCount));
        let mut loopy = good.clone();
        loopy[12] = 0xC0;
        loopy[13] = 12;
        assert_eq!(parse_query(&loopy), Err(WireError::BadName));
        assert_eq!(formerr(7)[..2], [0, 7]);
    }
}
