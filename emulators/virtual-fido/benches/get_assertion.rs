//! getAssertion round trips over the raw CTAPHID socket (client and daemon threads in one
//! process; pin to one core with `taskset -c 0 cargo bench -p virtual-fido`).
//!
//! `memory`: state in memory; `state_dir`: every assertion saves token.json atomically (fsync).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ciborium::Value;
use criterion::{Criterion, Throughput, criterion_main};
use virtual_fido::ctap2::cbor;
use virtual_fido::ctaphid::{EngineConfig, Packet, fragment};
use virtual_fido::state::{DirStore, MemoryStore, Store};
use virtual_fido::token::{Token, TokenConfig};
use virtual_fido::transport::raw_socket::RawSocketServer;

struct Client {
    stream: UnixStream,
    cid: u32,
}

impl Client {
    fn call(&mut self, cid: u32, cmd: u8, payload: &[u8]) -> Vec<u8> {
        for report in fragment(cid, cmd, payload) {
            self.stream.write_all(&report).unwrap();
        }
        let mut out = Vec::new();
        let mut expected = usize::MAX;
        while out.len() < expected {
            let mut report = [0u8; 64];
            self.stream.read_exact(&mut report).unwrap();
            match Packet::parse(&report) {
                Packet::Init { cmd: 0x3B, .. } => continue,
                Packet::Init { bcnt, data, .. } => {
                    expected = usize::from(bcnt);
                    out.extend_from_slice(&data[..expected.min(data.len())]);
                }
                Packet::Cont { data, .. } => {
                    let take = (expected - out.len()).min(data.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
        }
        out
    }
}

fn setup(store: Box<dyn Store>, dir: &std::path::Path) -> (Client, Vec<u8>) {
    let token = Token::open(store, TokenConfig::default()).unwrap();
    let path = dir.join("raw.sock");
    RawSocketServer::bind(&path, token, EngineConfig::default())
        .unwrap()
        .spawn();
    let stream = UnixStream::connect(&path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut client = Client { stream, cid: 0 };
    let init = client.call(0xFFFF_FFFF, 0x06, &[1; 8]);
    client.cid = u32::from_be_bytes(init[8..12].try_into().unwrap());
    let text_map = |e: Vec<(&str, Value)>| cbor::text_map(e);
    let mc = cbor::int_map(vec![
        (1, Value::Bytes(vec![0xCD; 32])),
        (2, text_map(vec![("id", Value::Text("example.org".into()))])),
        (3, text_map(vec![("id", Value::Bytes(b"user".to_vec()))])),
        (
            4,
            Value::Array(vec![text_map(vec![
                ("alg", Value::Integer((-7).into())),
                ("type", Value::Text("public-key".into())),
            ])]),
        ),
    ]);
    let resp = client.call(
        client.cid,
        0x10,
        &[&[0x01][..], &cbor::encode(&mc)].concat(),
    );
    assert_eq!(resp[0], 0);
    let resp = cbor::decode(&resp[1..]).unwrap();
    let auth_data = cbor::Map::from_value(&resp)
        .unwrap()
        .int(2)
        .unwrap()
        .as_bytes()
        .unwrap()
        .clone();
    let id_len = usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]]));
    let id = auth_data[55..55 + id_len].to_vec();
    let ga = cbor::int_map(vec![
        (1, Value::Text("example.org".into())),
        (2, Value::Bytes(vec![0xAB; 32])),
        (
            3,
            Value::Array(vec![text_map(vec![
                ("id", Value::Bytes(id)),
                ("type", Value::Text("public-key".into())),
            ])]),
        ),
    ]);
    (client, [&[0x02][..], &cbor::encode(&ga)].concat())
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_assertion_raw_socket");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(8));
    let tmp = tempfile::tempdir().unwrap();
    let (mut client, request) = setup(Box::new(MemoryStore), tmp.path());
    group.bench_function("memory", |b| {
        b.iter(|| {
            let cid = client.cid;
            let resp = client.call(cid, 0x10, &request);
            assert_eq!(resp[0], 0);
        })
    });
    let tmp2 = tempfile::tempdir().unwrap();
    let store = DirStore(daemon_kit::StateDir::open(tmp2.path().join("state")).unwrap());
    let (mut client, request) = setup(Box::new(store), tmp2.path());
    group.bench_function("state_dir", |b| {
        b.iter(|| {
            let cid = client.cid;
            let resp = client.call(cid, 0x10, &request);
            assert_eq!(resp[0], 0);
        })
    });
    group.finish();
}

#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::bench);
}
use harness::benches;
criterion_main!(benches);
