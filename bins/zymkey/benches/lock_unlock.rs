//! Lock + unlock of 32 bytes through production client → drop-in library → zymkey-emu over a
//! unix socket (each call: connect, Hello, request, answer).

use criterion::{Criterion, Throughput, criterion_main};
use zymkey::LockKey;

fn lock_unlock(c: &mut Criterion) {
    let m = zymkey_testkit::Module::start("bench-board", "bench-card");
    let zk = m.open().expect("open");
    let secret = [0x5au8; 32];
    let mut group = c.benchmark_group("zymkey");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lock+unlock 32 bytes", |b| {
        b.iter(|| {
            let blob = zk.lock(&secret, LockKey::OneWay).unwrap();
            let back = zk.unlock(&blob, LockKey::OneWay).unwrap();
            assert_eq!(&back[..], &secret[..]);
        })
    });
    group.finish();
}

/// The generated group function has no doc comment of its own.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::lock_unlock);
}

criterion_main!(group::benches);
