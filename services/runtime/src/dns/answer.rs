//! One query: answered from the containers' names, forwarded, or refused.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// Time to live of the answers about containers (dockerd's).
const TTL: u32 = 600;

/// The containers' names as one container sees them.
pub trait Names: Send + Sync {
    /// The IPv4 addresses `name` (lower case, without the final dot) has for container `me`:
    /// the containers sharing a user network with it under that name, alias or short ID, or
    /// `name.network`. `None`: no container is called so.
    fn addresses(&self, me: &str, name: &str) -> Option<Vec<Ipv4Addr>>;
    /// The name (`container.network`) of the container at `address` on one of `me`'s user
    /// networks.
    fn name_of(&self, me: &str, address: Ipv4Addr) -> Option<String>;
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Not a container's name: forward the query as it came.
    Forward,
    /// Send nothing (not a query).
    Drop,
}

/// Decides what to do with `query`, sent by container `me`.
pub fn decide(query: &[u8], me: &str, names: &dyn Names) -> Reply {
    let message = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) if query.len() >= 12 && query[2] & 0x80 == 0 => {
            let id = u16::from_be_bytes([query[0], query[1]]);
            return answer(Message::error_msg(id, OpCode::Query, ResponseCode::FormErr));
        }
        Err(_) => return Reply::Drop,
    };
    let head = message.metadata;
    if head.message_type != MessageType::Query {
        return Reply::Drop;
    }
    let refuse = |code| answer(error(&head, code));
    if head.op_code != OpCode::Query {
        return refuse(ResponseCode::NotImp);
    }
    let [question] = message.queries.as_slice() else {
        return refuse(ResponseCode::FormErr);
    };
    if question.query_class() != DNSClass::IN {
        return Reply::Forward;
    }
    let name = question.name().to_lowercase().to_ascii();
    let name = name.trim_end_matches('.');
    let records: Vec<Record> = match question.query_type() {
        RecordType::A => match names.addresses(me, name) {
            Some(addresses) => addresses
                .into_iter()
                .map(|a| Record::from_rdata(question.name().clone(), TTL, RData::A(A(a))))
                .collect(),
            None => return Reply::Forward,
        },
        // A container without an IPv6 address: the name exists, with no such record.
        RecordType::AAAA => match names.addresses(me, name) {
            Some(_) => Vec::new(),
            None => return Reply::Forward,
        },
        RecordType::PTR => {
            let found = reverse_address(name).and_then(|a| names.name_of(me, a));
            let Some(target) = found.and_then(|n| Name::from_ascii(format!("{n}.")).ok()) else {
                return Reply::Forward;
            };
            vec![Record::from_rdata(
                question.name().clone(),
                TTL,
                RData::PTR(PTR(target)),
            )]
        }
        _ => return Reply::Forward,
    };
    let mut reply = Message::response(head.id, OpCode::Query);
    reply.metadata = Metadata::response_from_request(&head);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    reply.add_answers(records);
    answer(reply)
}

/// SERVFAIL for `query` (no upstream answered), or nothing if it is not a query.
pub fn server_failure(query: &[u8]) -> Option<Vec<u8>> {
    let message = Message::from_vec(query).ok()?;
    let mut reply = error(&message.metadata, ResponseCode::ServFail);
    reply.add_queries(message.queries);
    reply.to_vec().ok()
}

fn error(head: &Metadata, code: ResponseCode) -> Message {
    let mut reply = Message::response(head.id, head.op_code);
    reply.metadata = Metadata::response_from_request(head);
    reply.metadata.recursion_available = true;
    reply.metadata.response_code = code;
    reply
}

fn answer(message: Message) -> Reply {
    match message.to_vec() {
        Ok(bytes) => Reply::Answer(bytes),
        Err(_) => Reply::Drop,
    }
}

/// The address a `d.c.b.a.in-addr.arpa` name stands for.
fn reverse_address(name: &str) -> Option<Ipv4Addr> {
    let digits = name.strip_suffix(".in-addr.arpa")?;
    let octets: Vec<u8> = digits
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [d, c, b, a] = octets[..] else {
        return None;
    };
    Some(Ipv4Addr::new(a, b, c, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    struct Two;

    impl Names for Two {
        fn addresses(&self, me: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
            assert_eq!(me, "me");
            match name {
                "web" | "web.appnet" => Some(vec![Ipv4Addr::new(10, 9, 0, 2)]),
                "db" => Some(vec![Ipv4Addr::new(10, 9, 0, 3), Ipv4Addr::new(10, 9, 0, 4)]),
                _ => None,
            }
        }

        fn name_of(&self, _: &str, address: Ipv4Addr) -> Option<String> {
            (address == Ipv4Addr::new(10, 9, 0, 2)).then(|| "web.appnet".into())
        }
    }

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        m.to_vec().unwrap()
    }

    fn reply(bytes: &[u8]) -> Message {
        match decide(bytes, "me", &Two) {
            Reply::Answer(b) => Message::from_vec(&b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn container_names_are_answered_in_any_case_with_every_address() {
        let m = reply(&query("WEB.", RecordType::A));
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.recursion_desired && m.metadata.authoritative);
        let ips: Vec<_> = m.answers.iter().map(|r| r.data.clone()).collect();
        assert_eq!(ips, vec![RData::A(A(Ipv4Addr::new(10, 9, 0, 2)))]);
        assert_eq!(m.answers[0].ttl, TTL);
        assert_eq!(reply(&query("db", RecordType::A)).answers.len(), 2);
        assert_eq!(reply(&query("web.appnet.", RecordType::A)).answers.len(), 1);
    }

    #[test]
    fn a_container_has_no_aaaa_record_but_its_name_exists() {
        let m = reply(&query("web.", RecordType::AAAA));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }

    #[test]
    fn reverse_lookups_of_container_addresses_name_them() {
        let m = reply(&query("2.0.9.10.in-addr.arpa.", RecordType::PTR));
        assert_eq!(
            m.answers[0].data,
            RData::PTR(PTR(Name::from_ascii("web.appnet.").unwrap()))
        );
        let other = query("5.0.9.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(decide(&other, "me", &Two), Reply::Forward);
    }

    #[test]
    fn other_names_and_types_are_forwarded() {
        for q in [
            query("example.org.", RecordType::A),
            query("web.", RecordType::MX),
        ] {
            assert_eq!(decide(&q, "me", &Two), Reply::Forward);
        }
    }

    #[test]
    fn garbage_gets_formerr_and_responses_get_nothing() {
        let mut bad = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        bad.extend_from_slice(&[0xc0, 0xff, 0xff]);
        let m = reply(&bad);
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(decide(&[1, 2, 3], "me", &Two), Reply::Drop);
        let mut response = query("web.", RecordType::A);
        response[2] |= 0x80;
        assert_eq!(decide(&response, "me", &Two), Reply::Drop);
        let mut update = query("web.", RecordType::A);
        update[2] |= 5 << 3;
        assert_eq!(reply(&update).metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn a_failure_answers_the_question() {
        let q = query("example.org.", RecordType::A);
        let m = Message::from_vec(&server_failure(&q).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.queries.len(), 1);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    struct Any;

    impl Names for Any {
        fn addresses(&self, _: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
            name.len()
                .is_multiple_of(2)
                .then(|| vec![Ipv4Addr::new(10, 0, 0, name.len() as u8)])
        }
        fn name_of(&self, _: &str, a: Ipv4Addr) -> Option<String> {
            a.octets()[3].is_multiple_of(2).then(|| "c.net".into())
        }
    }

    /// A well-formed query for `name` and `kind`, then `noise` flipped into it.
    fn mangled(name: String, kind: u16, noise: Vec<(usize, u8)>, cut: usize) -> Vec<u8> {
        let mut m = Message::query();
        let kind = RecordType::from(kind);
        if let Ok(n) = Name::from_ascii(&name) {
            m.add_query(hickory_proto::op::Query::query(n, kind));
        }
        let mut bytes = m.to_vec().unwrap_or_default();
        for (at, bits) in noise {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= bits;
            }
        }
        bytes.truncate(bytes.len().saturating_sub(cut));
        bytes
    }

    proptest! {
        /// Whatever a container sends, the server decides without a panic; what it sends back
        /// is a response carrying the query's ID, and it answers nothing that claims to be a
        /// response.
        #[test]
        fn any_bytes_get_a_response_with_their_id_or_nothing(
            name in "[a-zA-Z0-9.-]{0,80}|([0-9]{1,3}\\.){4}in-addr\\.arpa",
            kind in prop_oneof![Just(1u16), Just(28), Just(12), Just(15), any::<u16>()],
            noise in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in 0usize..6,
            raw in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            for query in [mangled(name.clone(), kind, noise.clone(), cut), raw.clone()] {
                match decide(&query, "me", &Any) {
                    Reply::Answer(bytes) => {
                        let m = Message::from_vec(&bytes).expect("our answers parse");
                        prop_assert_eq!(m.metadata.message_type, MessageType::Response);
                        prop_assert_eq!(&bytes[..2], &query[..2]);
                        prop_assert!(query[2] & 0x80 == 0, "answered a response");
                    }
                    Reply::Forward => {
                        prop_assert!(Message::from_vec(&query).is_ok());
                    }
                    Reply::Drop => {}
                }
            }
        }
    }
}
